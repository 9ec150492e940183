"""SQLite plumbing: WAL checkpoints run whatever way an engine begins its transactions."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from features.sql import checkpoint


def _engine(path, begin_immediate: bool) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _wal(dbapi_conn, _record) -> None:
        if begin_immediate:  # as the case store's writer: the driver's own transactions off
            dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")

    if begin_immediate:
        sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


@pytest.mark.parametrize("begin_immediate", [False, True], ids=["driver transactions", "BEGIN IMMEDIATE"])
def test_a_checkpoint_copies_every_frame_of_the_wal(tmp_path, begin_immediate):
    engine = _engine(tmp_path / "t.db", begin_immediate)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES " + ",".join(f"({i})" for i in range(5_000)))
    busy, frames, copied = checkpoint(engine)
    assert busy == 0 and frames > 0 and copied == frames
    engine.dispose()

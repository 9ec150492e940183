"""The decision log: what was acknowledged was committed, and every SQLite commit is synced (WAL, synchronous=FULL)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from serving.decision_log import Decision, DecisionLog, DecisionLogError, input_hash


def _decision(i: int) -> Decision:
    return Decision(
        claim_id=f"C{i}",
        input_hash=input_hash({"claim_id": f"C{i}", "amount": i}),
        route="standard",
        scores={"fraud": 0.01 * i, "fast_track": 0.5},
        features={"claimed_amount": float(i), "channel": "web", "missing": None},
        rules=["early_claim"] if i % 2 else [],
        reasons={"fraud": [{"feature": "claimed_amount"}]},
        versions={"fraud": "3", "policy": "abc"},
        key_id="k1",
    )


def test_decisions_round_trip(tmp_path):
    log = DecisionLog(f"sqlite:///{tmp_path / 'd.db'}")
    ids = log.write([_decision(1), _decision(2)])
    assert ids == [1, 2] and log.count() == 2
    row = log.read("C1")[0]
    assert row["scores"] == {"fraud": 0.01, "fast_track": 0.5} and row["rules"] == ["early_claim"]
    assert row["features"]["missing"] is None and row["versions"]["policy"] == "abc"


def test_input_hash_ignores_key_order_only():
    assert input_hash({"a": 1, "b": 2}) == input_hash({"b": 2, "a": 1}) != input_hash({"a": 1, "b": 3})


def test_decisions_acknowledged_before_the_writer_is_killed_are_all_stored(tmp_path):
    """``write`` returns only after its commit: a writer killed with SIGKILL loses nothing it acknowledged.

    This proves commit-before-acknowledge, not durability against power loss (a killed process leaves
    its writes in the OS page cache); see the synchronous=FULL test below for that."""
    db, err = tmp_path / "d.db", tmp_path / "writer.err"
    writer = textwrap.dedent(f"""
        from serving.decision_log import Decision, DecisionLog
        log = DecisionLog("sqlite:///{db}")
        i = 0
        while True:
            ids = log.write([Decision(claim_id=f"C{{i}}-{{j}}", input_hash="h", route="standard",
                                      scores={{"fraud": 0.1}}) for j in range(3)])
            print(*ids, flush=True)   # acknowledged only after the commit
            i += 1
    """)
    lines: queue.Queue[str | None] = queue.Queue()
    with err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, stderr=stderr, text=True)

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)  # end of output: the writer died

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    acknowledged: list[int] = []
    deadline = time.monotonic() + 60
    try:
        while len(acknowledged) < 300:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                pytest.fail(
                    f"the writer acknowledged {len(acknowledged)} decisions in 60 s; stderr:\n{err.read_text()[-2000:]}"
                )
            if line is None:
                pytest.fail(f"the writer died (exit code {proc.wait(timeout=10)}); stderr:\n{err.read_text()[-2000:]}")
            acknowledged += [int(x) for x in line.split()]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        reader.join(timeout=10)  # the pipe ends with the writer
        proc.stdout.close()
    log = DecisionLog(f"sqlite:///{db}")
    stored = {row["id"] for row in log.read()}
    log.close()
    assert set(acknowledged) <= stored


def test_every_sqlite_connection_of_the_log_commits_with_synchronous_full_in_wal(tmp_path, monkeypatch):
    """WAL with ``synchronous=FULL`` syncs the WAL file at every commit: an acknowledged decision survives
    power loss. Builds of SQLite differ in their defaults (this one may already default to FULL), so every
    new connection starts here as a lax build's would, with synchronous OFF; a new database file starts
    with a rollback journal (WAL, once set, is a property of the file)."""
    import sqlite3

    import sqlalchemy as sa

    real_connect = sqlite3.connect

    def lax_connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        conn.execute("PRAGMA synchronous=OFF")
        return conn

    monkeypatch.setattr(sqlite3, "connect", lax_connect)
    monkeypatch.setattr(sqlite3.dbapi2, "connect", lax_connect)
    log = DecisionLog(f"sqlite:///{tmp_path / 'd.db'}")

    def pragmas(conn) -> tuple:
        return (
            conn.exec_driver_sql("PRAGMA synchronous").scalar_one(),
            conn.exec_driver_sql("PRAGMA journal_mode").scalar_one(),
        )

    with log.engine.connect() as a, log.engine.connect() as b, log.engine.connect() as c:
        assert [pragmas(conn) for conn in (a, b, c)] == [(2, "wal")] * 3  # 2 = FULL
    log.write([_decision(1)])
    log.engine.dispose()  # connections opened after a reset are set up again
    with log.engine.connect() as conn:
        assert pragmas(conn) == (2, "wal")
    with sa.create_engine(f"sqlite:///{tmp_path / 'd.db'}").connect() as other:  # the lax start is real
        assert pragmas(other)[0] == 0
    log.close()


def test_an_unwritable_log_is_one_readable_error(tmp_path):
    with pytest.raises(DecisionLogError, match="decision log"):
        DecisionLog(f"sqlite:///{tmp_path / 'missing-dir' / 'sub' / 'd.db'}").write([_decision(1)])


@pytest.mark.postgres
def test_decisions_round_trip_on_postgresql():
    import sqlalchemy as sa

    url = "postgresql://postgres@127.0.0.1:5432/test"
    try:
        from features.sql import with_installed_driver

        engine = sa.create_engine(with_installed_driver(sa.engine.make_url(url)), connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
    except Exception:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    schema = f"dl_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        log = DecisionLog(f"{url}?options=-csearch_path%3D{schema}")
        assert log.write([_decision(5), _decision(6)]) == [1, 2]
        assert log.read("C6")[0]["scores"]["fraud"] == pytest.approx(0.06)
        log.close()
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


def _open_every_store(url: str) -> str:
    from features.store.history import HistoryStore
    from serving.cases import CaseStore
    from serving.sessions import Sessions

    try:
        log = DecisionLog(url)
        CaseStore(url)
        Sessions(log.engine)
        HistoryStore(url).close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


@pytest.mark.postgres
def test_workers_starting_at_once_on_a_new_postgresql_database_all_start(postgres_url):
    """Each worker creates the tables at start; two at once on a fresh PostgreSQL database failed
    one of them (a duplicate in pg_type), which the fault tests saw as a worker restarting."""
    import multiprocessing

    import sqlalchemy as sa

    from features.sql import with_installed_driver

    admin = sa.create_engine(with_installed_driver(sa.engine.make_url(postgres_url)), isolation_level="AUTOCOMMIT")
    name = f"cs_race_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.engine.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        with multiprocessing.get_context("spawn").Pool(6) as pool:
            errors = pool.map(_open_every_store, [url] * 6)
        assert errors == [""] * 6, errors
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()

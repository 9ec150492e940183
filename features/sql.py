"""SQL stores' plumbing: the installed PostgreSQL driver, readable errors, a URL safe to print, and
SQLite WAL checkpoints off the request path.

The history store, the decision log and SQL sources share these. SQLite files the service writes on
every batch need their checkpoints moved off the request path. SQLite copies its write-ahead log
back into the database file when a commit takes the log past 1,000 pages ("automatic
checkpoint"): that commit then also writes and fsyncs megabytes, inside whichever request made it,
so a service that commits on every batch would answer some of its batches that much later.
:func:`checkpoint_in_background` turns the automatic checkpoint off on an engine's connections and
runs a passive checkpoint from a daemon thread instead (which never blocks writers; SQLite releases
the GIL while it runs).
"""

from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa

log = logging.getLogger(__name__)

EVERY_S = 1.0


def checkpoint_in_background(engine: sa.Engine, every_s: float = EVERY_S) -> threading.Thread | None:
    """For a SQLite engine: automatic checkpoints off, a passive checkpoint every ``every_s``
    seconds from a daemon thread (returned); other databases: nothing (None)."""
    if engine.dialect.name != "sqlite":
        return None
    sa.event.listen(engine, "connect", _no_autocheckpoint)
    engine.dispose()  # connections already pooled reopen with the setting

    def run() -> None:
        while True:
            time.sleep(every_s)
            try:
                checkpoint(engine)
            except sa.exc.SQLAlchemyError as exc:  # the next round tries again
                log.warning("WAL checkpoint of %s failed: %s", engine.url, exc)

    thread = threading.Thread(target=run, name=f"wal-checkpoint-{engine.url.database}", daemon=True)
    thread.start()
    return thread


def checkpoint(engine: sa.Engine) -> tuple[int, int, int]:
    """One passive WAL checkpoint: (busy, WAL frames, frames checkpointed), as SQLite reports it.

    Run on the driver's connection, outside any transaction: an engine that begins its
    transactions itself (the case store's writer: ``BEGIN IMMEDIATE``) would otherwise run the
    checkpoint inside one, where SQLite refuses it ("database table is locked")."""
    with engine.connect() as conn:
        try:
            row = conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except Exception as exc:  # the driver's own error, as SQLAlchemy's
            raise sa.exc.OperationalError("PRAGMA wal_checkpoint(PASSIVE)", None, exc) from None
    return tuple(row)


def _no_autocheckpoint(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.close()


def describe(url: str) -> str:
    """How to name a database URL in messages (without its password)."""
    try:
        return sa.engine.make_url(str(url)).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unreadable database URL>"


def with_installed_driver(url: sa.engine.URL) -> sa.engine.URL:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; fall back to psycopg2 when only it is installed."""
    import importlib.util

    if (
        url.drivername == "postgresql"
        and importlib.util.find_spec("psycopg") is None
        and importlib.util.find_spec("psycopg2") is not None
    ):
        return url.set(drivername="postgresql+psycopg2")
    return url


def db_error(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return first_line(orig if orig is not None else exc)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

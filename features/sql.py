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


CREATE_LOCK = 7_352_001
"""The PostgreSQL advisory lock that table creation holds (any number: the same for every store)."""


def create_tables(metadata: sa.MetaData, engine: sa.Engine, then: list[str] | tuple[str, ...] = ()) -> None:
    """``metadata.create_all``, safe when several processes start at once on a new database.

    Each worker of the service creates the tables it needs at start. On PostgreSQL two
    simultaneous ``CREATE TABLE`` of the same name fail one of them (a duplicate in ``pg_type``),
    which stopped a worker's start on a fresh database: there, creation runs under a transaction's
    advisory lock. Elsewhere (SQLite: the file's lock serialises writers, but the check for a
    table and its creation are two steps) a creation that fails because the table appeared in the
    meantime is tried once more, which then finds every table. ``then``: statements run after
    the tables are made (triggers), under the same lock."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CREATE_LOCK})")
            metadata.create_all(conn)
            for statement in then:
                conn.exec_driver_sql(statement)
        return
    try:
        metadata.create_all(engine)
    except sa.exc.OperationalError:
        time.sleep(0.1)
        metadata.create_all(engine)
    if then:
        with engine.begin() as conn:
            for statement in then:
                conn.exec_driver_sql(statement)

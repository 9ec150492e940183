"""Sign-in sessions for the pages: found while live, gone when signed out or expired, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from features.sql import with_installed_driver
from serving.sessions import Sessions


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def made(request, tmp_path):
    clock = Clock()
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'cases.db'}")
    else:
        engine = sa.create_engine(with_installed_driver(sa.engine.make_url(request.getfixturevalue("postgres_url"))))
    sessions = Sessions(engine, hours=8, table=f"s{uuid.uuid4().hex[:10]}", clock=clock)
    yield sessions, clock
    sessions.drop()
    engine.dispose()


def test_a_session_is_found_by_its_token_until_it_expires(made):
    sessions, clock = made
    token, session = sessions.start("key-1")
    found = sessions.find(token)
    assert found is not None and found.key_id == "key-1" and found.csrf == session.csrf
    clock.now += timedelta(hours=7, minutes=59)
    assert sessions.find(token) is not None
    clock.now += timedelta(minutes=1)
    assert sessions.find(token) is None


def test_signing_out_ends_only_that_session(made):
    sessions, _ = made
    first, _ = sessions.start("key-1")
    second, _ = sessions.start("key-1")
    sessions.end(first)
    assert sessions.find(first) is None and sessions.find(second) is not None


def test_the_table_holds_no_token(made):
    sessions, _ = made
    token, _ = sessions.start("key-1")
    with sessions.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.select(sessions.table))]
    assert rows and not any(token in str(v) for row in rows for v in row)


def test_unknown_and_oversized_tokens_find_nothing(made):
    sessions, _ = made
    sessions.start("key-1")
    assert sessions.find("not-a-token") is None
    assert sessions.find("") is None and sessions.find(None) is None
    assert sessions.find("x" * 10_000) is None


def test_the_csrf_token_must_match_exactly(made):
    sessions, _ = made
    _, session = sessions.start("key-1")
    assert session.csrf_ok(session.csrf)
    assert not session.csrf_ok(session.csrf[:-1]) and not session.csrf_ok("") and not session.csrf_ok(None)
    assert sessions.start("key-1")[1].csrf != session.csrf


def test_expired_sessions_are_cleared_when_another_starts(made):
    sessions, clock = made
    sessions.start("key-1")
    clock.now += timedelta(hours=9)
    sessions.start("key-2")
    with sessions.engine.connect() as conn:
        assert [r.key_id for r in conn.execute(sa.select(sessions.table.c.key_id))] == ["key-2"]

"""Sign-in sessions for the investigators' pages: an API key entered once buys a session cookie.

A session is a random 256-bit token held by the browser in an HttpOnly, SameSite=Strict cookie
(:data:`COOKIE`) that expires; the server keeps only the token's SHA-256 hash, the key it was
bought with, its expiry and its CSRF token, in a table beside the cases (the service's workers share
it, so a session works on whichever worker answers and signing out ends it on all of them). Every
form carries the session's CSRF token (:data:`CSRF_FIELD`), checked on every POST; SameSite=Strict
already keeps other sites' forms from sending the cookie, the token is the second lock.

A session lasts as long as its key: a revoked key's sessions stop working at the next request
(the service checks the key on every request, session or not).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from features.errors import ClaimScoreError
from features.sql import create_tables, db_error

COOKIE = "claimscore_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
TABLE = "ui_sessions"


class SessionError(ClaimScoreError):
    """The session table cannot be read or written."""


@dataclass(frozen=True)
class Session:
    key_id: str
    expires_at: datetime
    csrf: str

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf, str(token))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Sessions:
    """Sessions in the table :data:`TABLE` of the database behind ``engine`` (the case store's)."""

    def __init__(
        self, engine: sa.Engine, hours: float = 8.0, table: str = TABLE, clock: Callable[[], datetime] | None = None
    ):
        self.engine = engine
        self.lifetime = timedelta(hours=hours)
        self._clock = clock or (lambda: datetime.now(UTC))
        meta = sa.MetaData()
        self.table = sa.Table(
            table,
            meta,
            sa.Column("token_hash", sa.String(64), primary_key=True),
            sa.Column("key_id", sa.String(64), nullable=False),
            sa.Column("csrf", sa.String(64), nullable=False),
            sa.Column("expires_at", sa.DateTime, nullable=False),
            sa.Index(f"ix_{table}_expires_at", "expires_at"),
        )
        try:
            create_tables(meta, engine)
        except sa.exc.SQLAlchemyError as exc:
            raise SessionError(f"cannot create the session table ({db_error(exc)})") from None

    def start(self, key_id: str) -> tuple[str, Session]:
        """A new session for ``key_id``: the token (the cookie's value, never stored) and the session.
        Expired sessions are cleared on the way."""
        token, now = secrets.token_urlsafe(32), self._now()
        session = Session(key_id, now + self.lifetime, secrets.token_urlsafe(24))
        row = {"token_hash": _hash(token), "key_id": key_id, "csrf": session.csrf, "expires_at": session.expires_at}
        with self._begin("start a session") as conn:
            conn.execute(sa.delete(self.table).where(self.table.c.expires_at < now))
            conn.execute(sa.insert(self.table), [row])
        return token, session

    def find(self, token: str | None) -> Session | None:
        """The live session a cookie's token belongs to, or None (unknown, expired or signed out)."""
        if not token or len(token) > 128:
            return None
        t = self.table.c
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    sa.select(t.key_id, t.csrf, t.expires_at).where(t.token_hash == _hash(token))
                ).first()
        except sa.exc.SQLAlchemyError as exc:
            raise SessionError(f"cannot read sessions ({db_error(exc)})") from None
        if row is None or row.expires_at <= self._now():
            return None
        return Session(row.key_id, row.expires_at.replace(tzinfo=UTC), row.csrf)

    def end(self, token: str | None) -> None:
        """Sign out: the session stops working at once, on every worker."""
        if token:
            with self._begin("end a session") as conn:
                conn.execute(sa.delete(self.table).where(self.table.c.token_hash == _hash(token)))

    def drop(self) -> None:
        """Drop the table (tests)."""
        self.table.drop(self.engine, checkfirst=True)

    def _now(self) -> datetime:
        """Naive UTC, as the table holds it."""
        return self._clock().astimezone(UTC).replace(tzinfo=None)

    @contextmanager
    def _begin(self, what: str) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise SessionError(f"cannot {what} ({db_error(exc)})") from None

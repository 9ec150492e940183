"""The durable decision log: every answer the service gave, written before the answer leaves.

Per decision: the claim id, a hash of the input, the features, the scores, the route, the rules
fired, the reasons, the model and policy versions, who asked (key id) and when. ``write`` returns only
after the transaction has committed, so a decision that was answered survives the process being
killed right after. SQLite by default (WAL journal, ``synchronous=FULL``), any SQLAlchemy URL (e.g.
PostgreSQL) by configuration. Several decisions are written in one transaction when they arrive
together (``write`` takes a list), which keeps the cost per decision low under load.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from features.errors import ClaimScoreError
from features.sql import create_tables, db_error, describe, with_installed_driver

TABLE = "decisions"


class DecisionLogError(ClaimScoreError):
    """The decision log cannot be opened or written."""


@dataclass
class Decision:
    claim_id: str
    input_hash: str
    route: str
    scores: dict[str, float]
    features: dict[str, Any] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)
    reasons: dict[str, list] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    key_id: str = ""
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))
    shadow: dict[str, Any] = field(default_factory=dict)
    """What the shadow (``Settings.shadow``) would have decided: ``route``, ``scores``, ``version``."""


def input_hash(payload: bytes | str | dict) -> str:
    """SHA-256 of the request as received (canonical JSON for a dict)."""
    if isinstance(payload, dict):
        payload = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


class DecisionLog:
    def __init__(self, url: str):
        self.shown = describe(url)
        self.failed_at: float | None = None
        """When a write last failed (``time.monotonic()``), until one succeeds: a log that answers
        reads but refuses writes (a full disk) is not ready either."""
        try:
            self.engine = sa.create_engine(with_installed_driver(sa.engine.make_url(url)))
        except Exception as exc:
            raise DecisionLogError(f"decision log {self.shown}: cannot open ({db_error(exc)})") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_durable)
        meta = sa.MetaData()
        self.table = sa.Table(
            TABLE,
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("claim_id", sa.String(128), nullable=False, index=True),
            sa.Column("input_hash", sa.String(64), nullable=False),
            sa.Column("decided_at", sa.String(40), nullable=False, index=True),
            sa.Column("route", sa.String(32), nullable=False),
            sa.Column("scores", sa.Text, nullable=False),
            sa.Column("rules", sa.Text, nullable=False),
            sa.Column("reasons", sa.Text, nullable=False),
            sa.Column("features", sa.Text, nullable=False),
            sa.Column("versions", sa.Text, nullable=False),
            sa.Column("key_id", sa.String(32), nullable=False),
            sa.Column("shadow", sa.Text, nullable=False, server_default="{}"),
        )
        try:
            create_tables(meta, self.engine)
            self._add_missing_columns()
        except sa.exc.SQLAlchemyError as exc:
            raise DecisionLogError(f"decision log {self.shown}: cannot create its table ({db_error(exc)})") from None

    def _add_missing_columns(self) -> None:
        """Columns added since a log was created (``shadow``), added to it in place."""
        have = {c["name"] for c in sa.inspect(self.engine).get_columns(TABLE)}
        if "shadow" not in have:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {TABLE} ADD COLUMN shadow TEXT NOT NULL DEFAULT '{{}}'")

    def write(self, decisions: Sequence[Decision]) -> list[int]:
        """Write decisions in one committed transaction; their ids, in order."""
        rows = [_row(d) for d in decisions]
        if not rows:
            return []
        try:
            with self.engine.begin() as conn:  # one statement for all rows (RETURNING, in order)
                result = conn.execute(
                    self.table.insert().returning(self.table.c.id, sort_by_parameter_order=True), rows
                )
                ids = [r[0] for r in result]
        except sa.exc.SQLAlchemyError as exc:
            self.failed_at = time.monotonic()
            raise DecisionLogError(f"decision log {self.shown}: cannot write ({db_error(exc)})") from None
        self.failed_at = None
        return ids

    def read(self, claim_id: str | None = None, limit: int | None = None) -> list[dict]:
        query = sa.select(self.table).order_by(self.table.c.id)
        if claim_id is not None:
            query = query.where(self.table.c.claim_id == claim_id)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_decode(dict(r._mapping)) for r in conn.execute(query)]

    def claim_ids(self, since: datetime | None = None, until: datetime | None = None) -> set[str]:
        """The claims decided at or after ``since`` and before ``until``."""
        query = self._within(sa.select(self.table.c.claim_id).distinct(), since, until)
        try:
            with self.engine.connect() as conn:
                return set(conn.execute(query).scalars())
        except sa.exc.SQLAlchemyError as exc:
            raise DecisionLogError(f"decision log {self.shown}: cannot read ({db_error(exc)})") from None

    def read_window(self, since: datetime | None = None, until: datetime | None = None) -> dict[str, list]:
        """Decisions made at or after ``since`` and before ``until`` (aware or UTC datetimes), in log
        order, as columns of what monitoring reads: ``claim_id``, ``decided_at``, ``route``, and
        ``scores``, ``rules``, ``features`` and ``shadow`` as their stored JSON text (``features`` as UTF-8 bytes
        from SQLite, which saves decoding a gigabyte of text only to encode it again), decoded in
        bulk by the reader: a million rows' features decode many times faster in batches."""
        c = self.table.c
        features = sa.cast(c.features, sa.LargeBinary) if self.engine.dialect.name == "sqlite" else c.features
        query = sa.select(c.claim_id, c.decided_at, c.route, c.scores, c.rules, features, c.shadow).order_by(c.id)
        query = self._within(query, since, until)
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
        except sa.exc.SQLAlchemyError as exc:
            raise DecisionLogError(f"decision log {self.shown}: cannot read ({db_error(exc)})") from None
        names = ("claim_id", "decided_at", "route", "scores", "rules", "features", "shadow")
        columns = list(zip(*rows)) if rows else [()] * len(names)
        return {name: list(values) for name, values in zip(names, columns)}

    def _within(self, query: sa.Select, since: datetime | None, until: datetime | None) -> sa.Select:
        if since is not None:
            query = query.where(self.table.c.decided_at >= _stamp(since))
        if until is not None:
            query = query.where(self.table.c.decided_at < _stamp(until))
        return query

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one())

    def close(self) -> None:
        self.engine.dispose()


_JSON = ("scores", "rules", "reasons", "features", "versions", "shadow")


def _row(d: Decision) -> dict:
    row = {
        "claim_id": d.claim_id,
        "input_hash": d.input_hash,
        "decided_at": d.decided_at,
        "route": d.route,
        "key_id": d.key_id,
    }
    for name in _JSON:
        row[name] = json.dumps(getattr(d, name), default=_plain, allow_nan=True)
    return row


def _stamp(t: datetime) -> str:
    """A time as ``decided_at`` is written (UTC ISO text, which sorts as time does)."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.isoformat(timespec="microseconds")


def _decode(row: dict) -> dict:
    for name in _JSON:
        row[name] = json.loads(row[name])
    return row


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    return str(v)


def _sqlite_durable(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()

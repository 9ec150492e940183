"""The investigators' case store: one case per referred claim, and an append-only audit trail.

A claim routed to ``siu_referral`` (or ``specialist``, its own queue) becomes a case: queue, status
(open, in_review, closed, reopened), assignee, priority (the fraud score), SLA due date, region,
amount, disposition, amount saved, and a ``version`` for optimistic locking. Every change, every note
and every view of a claim is an audit event (who, when, action, field, previous and new value),
written in the same transaction as the change; the store exposes no way to update or delete one (and
the database refuses to). :func:`outcome_for` turns a disposition into the history store's label.

A SQLite file by default (``cases_url`` in :mod:`features.config`), any SQLAlchemy URL (tested on
PostgreSQL). On SQLite, writes run in ``BEGIN IMMEDIATE`` transactions (one writer at a time,
waiting its turn); on PostgreSQL, concurrent writers are kept apart by conditional updates on
``version`` and retried, and ``take_next`` locks the case it hands out (``SKIP LOCKED``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from features.errors import ClaimScoreError
from features.sql import checkpoint_in_background, create_tables, db_error, describe, with_installed_driver
from serving.request import SPACE

QUEUES = ("siu_referral", "specialist")
"""The routes that open a case; the queue is named after its route."""
DEFAULT_SLA_DAYS: Mapping[str, float] = {"siu_referral": 14.0, "specialist": 7.0}
"""Calendar days from opening (or reopening) to a case's due date, per queue."""
STATUSES = ("open", "in_review", "closed", "reopened")
WAITING = ("open", "reopened")
"""Statuses whose unassigned cases ``take_next`` hands out."""
TRANSITIONS: Mapping[str, tuple[str, ...]] = {
    "open": ("in_review",),
    "in_review": ("open",),
    "reopened": ("in_review",),
    "closed": (),
}
"""What :meth:`CaseStore.set_status` may do; closing is :meth:`~CaseStore.record_disposition`'s
(from any status but closed), reopening :meth:`~CaseStore.reopen`'s (from closed only)."""
DISPOSITIONS = ("confirmed_fraud", "not_proven", "not_fraud", "duplicate", "withdrawn")
NEEDS_REASON = ("not_fraud",)
"""Dispositions that must say why (a false positive's reason is what the next model learns from)."""
_LABELS: Mapping[str, bool | None] = {
    "confirmed_fraud": True,
    "not_proven": False,
    "not_fraud": False,
    "duplicate": None,
    "withdrawn": None,
}
SORTS: Mapping[str, str] = {
    "score": "priority",
    "age": "opened_at",
    "due": "due_at",
    "status": "status",
    "assignee": "assignee",
    "region": "region",
    "amount": "amount",
}
"""Sort keys of :meth:`CaseStore.list_cases` -> columns (``-key`` sorts descending)."""
MAX_PAGE = 1_000
ANALYZE_FROM = 1_000
"""Cases from which a SQLite store keeps planner statistics (see :meth:`CaseStore._analyze`)."""
_RETRIES = 50
_CHUNK = 5_000


class CaseError(ClaimScoreError):
    """The case store cannot be opened or written, or was asked something it cannot do.
    ``field`` names the input at fault (for a 4xx body), when there is one."""

    field: str | None = None

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        if field is not None:
            self.field = field


class CaseNotFound(CaseError):
    """No case for the claim asked for (a 404 to callers: the message names the claim, not the store)."""

    field = "claim_id"


class StaleVersion(CaseError):
    """The case changed since the caller read it (optimistic locking)."""

    field = "version"


class InvalidTransition(CaseError):
    field = "status"


class InvalidDisposition(CaseError):
    field = "disposition"


class _Lost(Exception):
    """A conditional update found the case changed by a concurrent writer (retried)."""


class InvalidQuery(CaseError):
    """A filter, sort or page of :meth:`CaseStore.list_cases` is wrong."""


@dataclass(frozen=True)
class Referral:
    """What opening a case needs of a decision."""

    claim_id: str
    route: str
    score: float | None
    region: str | None = None
    amount: float | None = None

    @classmethod
    def of_decision(cls, decision: Any, region: str | None = None, amount: float | None = None) -> Referral:
        """From a :class:`serving.decision_log.Decision` or a row of ``DecisionLog.read``."""
        get = decision.get if isinstance(decision, Mapping) else lambda k: getattr(decision, k)
        return cls(str(get("claim_id")), str(get("route")), (get("scores") or {}).get("fraud"), region, amount)


@dataclass(frozen=True)
class Case:
    claim_id: str
    queue: str
    status: str
    assignee: str | None
    priority: float | None
    opened_at: datetime
    due_at: datetime
    region: str | None
    amount: float | None
    disposition: str | None
    disposition_reason: str | None
    amount_saved: float | None
    closed_at: datetime | None
    version: int
    overdue: bool = False
    """Still to decide (not closed) after its due date, at the time it was read."""


@dataclass(frozen=True)
class CasePage:
    cases: list[Case]
    total: int
    """Cases matching the filters, over all pages."""


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    claim_id: str
    at: datetime
    who: str
    action: str
    field: str | None
    previous: str | None
    new: str | None

    def line(self) -> str:
        """One readable line: time, who, action, field: previous -> new."""
        head = f"{self.at:%Y-%m-%d %H:%M:%S}Z  {self.who}  {self.action}"
        if self.field:
            return f"{head}  {self.field}: {_shown(self.previous)} -> {_shown(self.new)}"
        return f"{head}  {self.new}" if self.new else head


_CASE_FIELDS = tuple(f.name for f in fields(Case) if f.name != "overdue")


def outcome_for(disposition: str, decided_at: datetime | str) -> dict[str, object]:
    """The keyword arguments of :meth:`features.store.history.HistoryStore.record_outcome` that a
    disposition decided at ``decided_at`` amounts to; empty for a disposition that is no label
    (duplicate, withdrawn): record nothing then."""
    _check_disposition(disposition)
    label = _LABELS[disposition]
    if label is None:
        return {}
    return {"investigated": True, "fraud_confirmed": label, "investigation_closed_date": decided_at}


class CaseStore:
    """Cases and their audit trail in two SQL tables, ``{prefix}cases`` and ``{prefix}case_events``.

    ``sla_days`` overrides :data:`DEFAULT_SLA_DAYS` per queue; ``clock`` returns the current UTC time
    (tests); ``checkpoint`` moves SQLite's WAL checkpoints to a background thread (the service).
    """

    def __init__(
        self,
        url: str,
        prefix: str = "",
        sla_days: Mapping[str, float] | None = None,
        clock: Callable[[], datetime] | None = None,
        checkpoint: bool = False,
    ):
        self.shown = describe(url)
        self.sla_days = {**DEFAULT_SLA_DAYS, **(sla_days or {})}
        self._clock = clock or (lambda: datetime.now(UTC))
        try:
            engine_url = with_installed_driver(sa.engine.make_url(url))
            self.engine = sa.create_engine(engine_url)
            self._writer = sa.create_engine(engine_url) if engine_url.get_backend_name() == "sqlite" else self.engine
        except Exception as exc:
            raise CaseError(f"case store {self.shown}: cannot open ({db_error(exc)})") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self._writer, "connect", _sqlite_writer)
            sa.event.listen(self._writer, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        self.cases, self.events = _tables(prefix, sa.MetaData())
        try:
            create_tables(
                self.cases.metadata, self._writer, _append_only_ddl(self.events.name, self.engine.dialect.name)
            )
        except sa.exc.SQLAlchemyError as exc:
            raise CaseError(f"case store {self.shown}: cannot create its tables ({db_error(exc)})") from None
        if checkpoint:
            checkpoint_in_background(self._writer)
        self._analyzed = 0
        self._opened_since = 0
        self._analyze()

    def _analyze(self) -> None:
        """Give SQLite's query planner the tables' statistics once they are worth having (again when
        the cases have doubled). Without them it reads a queue filtered by status through the status
        index, row by row, at 6x the cost of a scan (165 against 27 ms for 30,000 cases).
        PostgreSQL's autovacuum keeps its own statistics."""
        if self.engine.dialect.name != "sqlite":
            return
        with self._read("count cases") as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(self.cases)).scalar_one()
        if count >= max(ANALYZE_FROM, 2 * self._analyzed):
            with self._write("analyze the tables") as conn:
                conn.exec_driver_sql(f'ANALYZE "{self.cases.name}"')
                conn.exec_driver_sql(f'ANALYZE "{self.events.name}"')
            self._analyzed = count
        self._opened_since = 0

    def __repr__(self) -> str:
        return f"CaseStore({self.shown!r}, table={self.cases.name!r})"

    def close(self) -> None:
        self.engine.dispose()
        self._writer.dispose()

    def drop(self) -> None:
        """Drop both tables (tests and re-builds)."""
        with self._writer.begin() as conn:
            self.cases.metadata.drop_all(conn, checkfirst=True)
            if self.engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f'DROP FUNCTION IF EXISTS "{self.events.name}_append_only"()')

    # --- opening ------------------------------------------------------------------------------

    def open_cases(self, referrals: Iterable[Referral], user: str = "system") -> list[Case]:
        """Open a case per referred claim (routes in :data:`QUEUES`; others are skipped). A claim
        that already has a case keeps it as it is: opening again is harmless. Returns the cases opened."""
        _check_user(user)
        now = self._now()
        rows: dict[str, dict] = {}
        for r in referrals:
            if r.route not in QUEUES or r.claim_id in rows:
                continue
            rows[r.claim_id] = {
                "claim_id": str(r.claim_id),
                "queue": r.route,
                "status": "open",
                "assignee": None,
                "priority": None if r.score is None else float(r.score),
                "opened_at": now,
                "due_at": now + timedelta(days=self.sla_days[r.route]),
                "region": r.region,
                "amount": None if r.amount is None else float(r.amount),
                "version": 1,
            }
        if not rows:
            return []
        insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[self.engine.dialect.name]
        stmt = insert(self.cases).on_conflict_do_nothing(index_elements=["claim_id"]).returning(self.cases.c.claim_id)
        with self._write("open cases") as conn:
            opened = {row[0] for row in conn.execute(stmt, list(rows.values()))}
            events = [
                _event(cid, now, user, "open", None, None, f"{row['queue']}, score {_shown(_text(row['priority']))}")
                for cid, row in rows.items()
                if cid in opened
            ]
            if events:
                conn.execute(sa.insert(self.events), events)
        self._opened_since += len(opened)
        if self._opened_since >= max(ANALYZE_FROM, self._analyzed):
            self._analyze()
        return [self._case(rows[cid] | _CLOSED_NOTHING) for cid in rows if cid in opened]

    # --- reading ------------------------------------------------------------------------------

    def get(self, claim_id: str) -> Case:
        with self._read("read a case") as conn:
            row = conn.execute(sa.select(self.cases).where(self.cases.c.claim_id == str(claim_id))).first()
        if row is None:
            raise CaseNotFound(f"no case for claim '{claim_id}'")
        return self._case(row._mapping)

    def list_cases(
        self,
        *,
        queue: str | None = None,
        status: str | Sequence[str] | None = None,
        assignee: str | None = None,
        unassigned: bool = False,
        region: str | None = None,
        min_score: float | None = None,
        min_amount: float | None = None,
        max_amount: float | None = None,
        older_than_days: float | None = None,
        overdue: bool | None = None,
        sort: str = "-score",
        limit: int = 50,
        offset: int = 0,
    ) -> CasePage:
        """One page of cases matching every filter given, sorted by ``sort`` (a key of :data:`SORTS`,
        ``-`` first for descending; ties in opening order), and how many match in all."""
        c = self.cases.c
        now = self._now()
        where: list = []
        if queue is not None:
            where.append(c.queue == _one_of(queue, QUEUES, "queue"))
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            where.append(c.status.in_([_one_of(s, STATUSES, "status") for s in wanted]))
        if assignee is not None:
            where.append(c.assignee == assignee)
        if unassigned:
            where.append(c.assignee.is_(None))
        if region is not None:
            where.append(c.region == region)
        if min_score is not None:
            where.append(c.priority >= min_score)
        if min_amount is not None:
            where.append(c.amount >= min_amount)
        if max_amount is not None:
            where.append(c.amount <= max_amount)
        if older_than_days is not None:
            where.append(c.opened_at <= now - timedelta(days=older_than_days))
        if overdue is not None:
            late = sa.and_(c.status != "closed", c.due_at < now)
            where.append(late if overdue else sa.not_(late))
        key = sort.removeprefix("-")
        if key not in SORTS:
            raise InvalidQuery(f"sort '{sort}' is not one of {', '.join(SORTS)} (- first for descending)", "sort")
        column = c[SORTS[key]]
        order = column.desc().nulls_last() if sort.startswith("-") else column.asc().nulls_last()
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidQuery(f"limit {limit} must be between 1 and {MAX_PAGE}", "limit")
        if offset < 0:
            raise InvalidQuery(f"offset {offset} must not be negative", "offset")
        query = sa.select(self.cases).where(*where).order_by(order, c.id).limit(limit).offset(offset)
        with self._read("list cases") as conn:
            rows = conn.execute(query).all()
            total = conn.execute(sa.select(sa.func.count()).select_from(self.cases).where(*where)).scalar_one()
        return CasePage([self._case(r._mapping, now) for r in rows], int(total))

    def cases_for(self, claim_ids: Iterable[str]) -> list[Case]:
        """The cases of these claims (those that have one), ``overdue`` as of now."""
        ids = sorted(set(map(str, claim_ids)))
        now = self._now()
        out: list[Case] = []
        with self._read("read cases") as conn:
            for i in range(0, len(ids), _CHUNK):
                query = sa.select(self.cases).where(self.cases.c.claim_id.in_(ids[i : i + _CHUNK]))
                out += [self._case(r._mapping, now) for r in conn.execute(query)]
        return out

    def trail(self, claim_id: str) -> list[AuditEvent]:
        """Every audit event of a claim, oldest first; :class:`CaseNotFound` when it has none."""
        e = self.events.c
        with self._read("read the audit trail") as conn:
            rows = conn.execute(sa.select(self.events).where(e.claim_id == str(claim_id)).order_by(e.seq)).all()
        if not rows:
            raise CaseNotFound(f"no case or audit event for claim '{claim_id}'")
        return [AuditEvent(**{**r._mapping, "at": _utc(r.at)}) for r in rows]

    # --- changing -----------------------------------------------------------------------------

    def take_next(self, user: str, queue: str | None = None) -> Case | None:
        """Assign the highest-priority unassigned waiting case to ``user`` and put it in review;
        None when there is none. Two callers never get the same case."""
        _check_user(user)
        c = self.cases.c
        where = [c.status.in_(WAITING), c.assignee.is_(None)]
        if queue is not None:
            where.append(c.queue == _one_of(queue, QUEUES, "queue"))
        query = sa.select(self.cases).where(*where).order_by(c.priority.desc().nulls_last(), c.id).limit(1)
        # PostgreSQL: each caller locks the best case nobody else holds, so concurrent callers take
        # different cases instead of racing for the same one (SQLite writes one at a time anyway)
        query = query.with_for_update(skip_locked=True)
        for _ in range(_RETRIES):
            with self._write("take the next case") as conn:
                row = conn.execute(query).first()
                if row is None:
                    return None
                case = self._case(row._mapping)
                taken = self._update(
                    conn, case, user, "take_next", {"assignee": user, "status": "in_review"}, c.assignee.is_(None)
                )
                if taken is not None:
                    return taken
        raise CaseError(f"case store {self.shown}: take_next lost {_RETRIES} races in a row; try again")

    def assign(
        self, claim_ids: str | Sequence[str], assignee: str | None, user: str, version: int | None = None
    ) -> list[Case]:
        """Assign cases (None: unassign), all or none; ``version`` checks a single case."""
        _check_user(user)
        ids = [claim_ids] if isinstance(claim_ids, str) else list(claim_ids)

        def change(case: Case) -> dict:
            if case.status == "closed":
                raise InvalidTransition(f"case {case.claim_id} is closed; reopen it before assigning it")
            return {"assignee": assignee}

        return self._change(ids, user, "assign", change, version)

    def set_status(self, claim_id: str, status: str, user: str, version: int | None = None) -> Case:
        """Move a case along :data:`TRANSITIONS` (open <-> in_review, reopened -> in_review)."""
        _check_user(user)
        _one_of(status, STATUSES, "status")

        def change(case: Case) -> dict:
            if status != case.status and status not in TRANSITIONS[case.status]:
                how = {"closed": " (record a disposition to close)", "reopened": " (reopen a closed case)"}
                raise InvalidTransition(
                    f"case {case.claim_id}: cannot go from {case.status} to {status}{how.get(status, '')}"
                )
            return {"status": status}

        return self._change([claim_id], user, "status", change, version)[0]

    def record_disposition(
        self,
        claim_id: str,
        user: str,
        disposition: str,
        reason: str | None = None,
        amount_saved: float | None = None,
        note: str | None = None,
        version: int | None = None,
    ) -> Case:
        """Close a case with what the investigation found (``reason`` required for not_fraud)."""
        _check_user(user)
        _check_disposition(disposition)
        reason = (reason or "").strip(SPACE) or None
        if disposition in NEEDS_REASON and reason is None:
            raise InvalidDisposition(
                f"disposition {disposition} needs a reason: why the referral was a false positive", "reason"
            )
        if amount_saved is not None and not (
            isinstance(amount_saved, int | float) and 0 <= amount_saved < float("inf")
        ):
            raise InvalidDisposition(f"amount_saved {amount_saved!r} must be a non-negative number", "amount_saved")
        now = self._now()

        def change(case: Case) -> dict:
            if case.status == "closed":
                raise InvalidTransition(f"case {claim_id} is already closed ({case.disposition}); reopen it first")
            return {
                "status": "closed",
                "disposition": disposition,
                "disposition_reason": reason,
                "amount_saved": None if amount_saved is None else float(amount_saved),
                "closed_at": now,
            }

        return self._change([claim_id], user, "disposition", change, version, note=note)[0]

    def reopen(self, claim_id: str, user: str, reason: str | None = None, version: int | None = None) -> Case:
        """Reopen a closed case: its disposition is cleared and a new due date set (the audit trail
        keeps the old ones)."""
        _check_user(user)
        now = self._now()

        def change(case: Case) -> dict:
            if case.status != "closed":
                raise InvalidTransition(f"case {claim_id} is {case.status}, not closed: nothing to reopen")
            return {
                "status": "reopened",
                "disposition": None,
                "disposition_reason": None,
                "amount_saved": None,
                "closed_at": None,
                "due_at": now + timedelta(days=self.sla_days.get(case.queue, 0.0)),
            }

        return self._change([claim_id], user, "reopen", change, version, note=reason)[0]

    def add_note(self, claim_id: str, user: str, text: str) -> AuditEvent:
        _check_user(user)
        if not (text or "").strip():
            raise CaseError("a note needs some text", "note")
        now = self._now()
        with self._write("add a note") as conn:
            if conn.execute(sa.select(self.cases.c.id).where(self.cases.c.claim_id == str(claim_id))).first() is None:
                raise CaseNotFound(f"no case for claim '{claim_id}'")
            return self._append(conn, [_event(str(claim_id), now, user, "note", None, None, text.strip())])[0]

    def record_view(self, user: str, claim_id: str, what: str) -> AuditEvent:
        """Record that ``user`` looked at a claim (``what``: e.g. ``claim_page``, ``explain``); any
        claim, referred or not."""
        _check_user(user)
        with self._write("record a view") as conn:
            return self._append(conn, [_event(str(claim_id), self._now(), user, "view", None, None, what)])[0]

    # --- internals ----------------------------------------------------------------------------

    def _change(
        self,
        claim_ids: list[str],
        user: str,
        action: str,
        change: Callable[[Case], dict],
        version: int | None,
        note: str | None = None,
    ) -> list[Case]:
        """Apply ``change`` to each case in one transaction, each update conditional on the version
        read (retried when a concurrent writer got there first, unless ``version`` was given)."""
        if version is not None and len(claim_ids) != 1:
            raise InvalidQuery("version checks one case at a time", "version")
        for _ in range(_RETRIES):
            try:
                with self._write(action) as conn:
                    out = []
                    for case in self._read_for_change(conn, claim_ids):
                        if version is not None and case.version != version:
                            raise _stale(case, version)
                        updated = self._update(conn, case, user, action, change(case))
                        if updated is None:  # a concurrent writer got there first: roll back, again
                            raise _stale(case, case.version) if version is not None else _Lost
                        out.append(updated)
                    if note and note.strip():
                        now = self._now()
                        self._append(
                            conn, [_event(c.claim_id, now, user, "note", None, None, note.strip()) for c in out]
                        )
                    return out
            except _Lost:
                continue
        raise CaseError(f"case store {self.shown}: {action} lost {_RETRIES} races in a row; try again")

    def _read_for_change(self, conn: sa.Connection, claim_ids: list[str]) -> list[Case]:
        found: dict[str, Case] = {}
        for ids in _chunks(sorted(set(map(str, claim_ids)))):
            for row in conn.execute(sa.select(self.cases).where(self.cases.c.claim_id.in_(ids))):
                found[row.claim_id] = self._case(row._mapping)
        missing = [c for c in claim_ids if str(c) not in found]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise CaseNotFound(f"no case for claim '{missing[0]}'{more}")
        return [found[str(c)] for c in claim_ids]

    def _update(self, conn: sa.Connection, case: Case, user: str, action: str, values: dict, *also) -> Case | None:
        """Write the changed ``values`` and their audit events if the case is still at its version;
        the case as written, or None when another writer changed it first."""
        changed = {k: v for k, v in values.items() if getattr(case, k) != v}
        if not changed:
            return case
        c = self.cases.c
        stmt = (
            sa.update(self.cases)
            .where(c.claim_id == case.claim_id, c.version == case.version, *also)
            .values(**changed, version=case.version + 1)
        )
        if conn.execute(stmt).rowcount != 1:
            return None
        now = self._now()
        self._append(
            conn,
            [
                _event(case.claim_id, now, user, action, k, _text(getattr(case, k)), _text(v))
                for k, v in changed.items()
            ],
        )
        fresh = {f: getattr(case, f) for f in _CASE_FIELDS} | changed | {"version": case.version + 1}
        return self._case(fresh)

    def _append(self, conn: sa.Connection, events: list[dict]) -> list[AuditEvent]:
        result = conn.execute(sa.insert(self.events).returning(self.events.c.seq, sort_by_parameter_order=True), events)
        return [AuditEvent(seq=r[0], **{**e, "at": _utc(e["at"])}) for r, e in zip(result, events)]

    def _case(self, row: Mapping, now: datetime | None = None) -> Case:
        values = {f: row[f] for f in _CASE_FIELDS}
        for f in ("opened_at", "due_at", "closed_at"):
            values[f] = _utc(values[f])
        late = values["status"] != "closed" and values["due_at"] < (now or self._now()).replace(tzinfo=UTC)
        return Case(**values, overdue=late)

    def _now(self) -> datetime:
        """The current time as stored: naive UTC (what both SQLite and a PostgreSQL TIMESTAMP hold)."""
        now = self._clock()
        return (now.astimezone(UTC) if now.tzinfo else now).replace(tzinfo=None)

    @contextmanager
    def _write(self, what: str) -> Iterator[sa.Connection]:
        try:
            with self._writer.begin() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise CaseError(f"case store {self.shown}: cannot {what} ({db_error(exc)})") from None

    @contextmanager
    def _read(self, what: str) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise CaseError(f"case store {self.shown}: cannot {what} ({db_error(exc)})") from None


_CLOSED_NOTHING = {"disposition": None, "disposition_reason": None, "amount_saved": None, "closed_at": None}


def _tables(prefix: str, meta: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    name = f"{prefix}cases"
    cases = sa.Table(
        name,
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("claim_id", sa.String(128), nullable=False, unique=True),
        sa.Column("queue", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(128)),
        sa.Column("priority", sa.Double),
        sa.Column("opened_at", sa.DateTime, nullable=False),
        sa.Column("due_at", sa.DateTime, nullable=False),
        sa.Column("region", sa.String(64)),
        sa.Column("amount", sa.Double),
        sa.Column("disposition", sa.String(32)),
        sa.Column("disposition_reason", sa.Text),
        sa.Column("amount_saved", sa.Double),
        sa.Column("closed_at", sa.DateTime),
        sa.Column("version", sa.Integer, nullable=False),
    )
    # the queue page filters by status / assignee and sorts by score; take_next reads the
    # unassigned waiting cases by score: each answered from an index, never a table scan
    sa.Index(f"ix_{name}_status_priority", cases.c.status, cases.c.priority)
    sa.Index(f"ix_{name}_assignee_priority", cases.c.assignee, cases.c.priority)
    for col in ("opened_at", "due_at", "region", "amount"):
        sa.Index(f"ix_{name}_{col}", cases.c[col])
    events = sa.Table(
        f"{prefix}case_events",
        meta,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("claim_id", sa.String(128), nullable=False, index=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("who", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("field", sa.String(64)),
        sa.Column("previous", sa.Text),
        sa.Column("new", sa.Text),
    )
    return cases, events


def _append_only_ddl(table: str, dialect: str) -> list[str]:
    """Triggers that make the database itself refuse to change or remove an audit event."""
    if dialect == "sqlite":
        return [
            f'CREATE TRIGGER IF NOT EXISTS "{table}_no_{op.lower()}" BEFORE {op} ON "{table}" '
            "BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END"
            for op in ("UPDATE", "DELETE")
        ]
    if dialect == "postgresql":
        return [
            f'CREATE OR REPLACE FUNCTION "{table}_append_only"() RETURNS trigger LANGUAGE plpgsql AS '
            "$$ BEGIN RAISE EXCEPTION 'audit events are append-only'; END $$",
            f'DROP TRIGGER IF EXISTS "{table}_append_only" ON "{table}"',
            f'CREATE TRIGGER "{table}_append_only" BEFORE UPDATE OR DELETE OR TRUNCATE ON "{table}" '
            f'FOR EACH STATEMENT EXECUTE FUNCTION "{table}_append_only"()',
        ]
    return []


def _event(claim_id: str, at: datetime, who: str, action: str, field: str | None, previous, new) -> dict:
    return {
        "claim_id": claim_id,
        "at": at,
        "who": who,
        "action": action,
        "field": field,
        "previous": previous,
        "new": new,
    }


def _text(value: object) -> str | None:
    """A value as the audit trail holds it."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e6 else f"{value:.2f}"
    return str(value)


def _shown(value: str | None) -> str:
    return "-" if value is None else value


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _stale(case: Case, version: int) -> StaleVersion:
    return StaleVersion(
        f"case {case.claim_id} changed since it was read (version {version}, now {case.version}); read it again"
    )


def _one_of(value: str, allowed: Sequence[str], field: str) -> str:
    if value not in allowed:
        raise InvalidQuery(f"{field} '{value}' is not one of {', '.join(allowed)}", field)
    return value


def _check_disposition(disposition: str) -> None:
    if disposition not in DISPOSITIONS:
        raise InvalidDisposition(f"disposition '{disposition}' is not one of {', '.join(DISPOSITIONS)}")


def _check_user(user: str) -> None:
    if not isinstance(user, str) or not user.strip():
        raise CaseError("every change needs the user who makes it", "user")


def _chunks(values: list) -> Iterator[list]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # an audit event that was acknowledged survives a crash
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sqlite_writer(dbapi_conn, record) -> None:
    # the driver's own transaction handling off, so that the "begin" listener's BEGIN IMMEDIATE
    # takes the write lock first: a transaction that read and then writes could otherwise fail
    # with "database is locked" instead of waiting its turn
    dbapi_conn.isolation_level = None
    _sqlite_pragmas(dbapi_conn, record)

"""The claim history store: the past claims the online path reads, in one SQL table.

The service asks :meth:`HistoryStore.history_for` for the stored rows that can influence a live
claim's features, computes the features with :func:`features.build.build_features` (the batch code;
see :mod:`features.store.online`) and :meth:`~HistoryStore.append`\\ s the claim after scoring.
Investigation and settlement outcomes arrive later through :meth:`~HistoryStore.record_outcome`.
``claimscore history load`` fills the store from a table.

One table, one row per claim, every canonical column (SQLAlchemy Core, no ORM). A SQLite file by
default (``Settings.history_url``); any SQLAlchemy URL by configuration (tested on PostgreSQL).
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from features import catalog, columns, links, schema
from features.columns import Columns
from features.errors import HistoryError, UnknownClaimError
from features.sql import create_tables, db_error, describe, with_installed_driver

log = logging.getLogger(__name__)

DEFAULT_TABLE = "claim_history"

SQLITE_DATETIME_FORMAT = "%(year)04d-%(month)02d-%(day)02dT%(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
"""How SQLite holds datetimes: ISO 8601 text, exactly what ``numpy.datetime_as_string(unit="us")``
writes, so bulk loads format them in C and range queries compare them as text."""

_SQL_TYPES: dict[str, Callable[[], sa.types.TypeEngine]] = {
    "id": sa.String,
    "category": sa.String,
    "float": sa.Double,
    "int": sa.BigInteger,
    "bool": sa.Boolean,
    "datetime": lambda: sa.DateTime().with_variant(sqlite.DATETIME(storage_format=SQLITE_DATETIME_FORMAT), "sqlite"),
}

ALL_PAST_KEYS = ("claimant_id", "policy_id")
"""Keys whose history features look at the whole past (claim counts, last claim, prior fraud)."""
WINDOW_KEYS: tuple[str, ...] = tuple(
    sorted(
        {
            c
            for f in catalog.FEATURES
            if f.family in ("history", "link")
            for c in f.needs
            if schema.BY_NAME[c].dtype == "id"
        }
        - set(ALL_PAST_KEYS)
    )
)
"""Keys whose features look at a trailing window: provider, payee account, phone, address."""
KEYS: tuple[str, ...] = (*ALL_PAST_KEYS, *WINDOW_KEYS)
"""Every identifier a live claim's history is found by."""

HISTORY_COLUMNS: tuple[str, ...] = tuple(
    c
    for c in schema.COLUMNS
    if c
    in {"claim_id", "payee_type"}
    | {c for f in catalog.FEATURES if f.family in ("history", "link") for c in (*f.needs, *f.needs_any)}
)
"""What a stored row contributes to a live claim's features: the columns the history and link
features read (from the catalog), plus ``payee_type``, which decides whether an account links
claimants. :meth:`HistoryStore.history_columns` reads only these."""


def _lookback(key: str) -> pd.Timedelta:
    """The longest trailing window of the features that read ``key``, from the catalog: a link
    feature looks back ``LINK_WINDOW_DAYS``, a history feature the ``WINDOWS_DAYS`` window its name
    ends with; a feature naming no window makes it the longest window of all."""
    longest = max(*catalog.WINDOWS_DAYS.values(), catalog.LINK_WINDOW_DAYS)
    days = [
        catalog.LINK_WINDOW_DAYS
        if f.family == "link"
        else next((d for label, d in catalog.WINDOWS_DAYS.items() if f.name.endswith("_" + label)), longest)
        for f in catalog.FEATURES
        if f.family in ("history", "link") and key in f.needs
    ]
    return pd.Timedelta(days=max(days, default=longest))


LOOKBACK: dict[str, pd.Timedelta] = {key: _lookback(key) for key in WINDOW_KEYS}
"""How far back each window key's rows can matter (365 days for every key today)."""
_TIME_COLUMNS = ("report_date", "investigation_closed_date")
LISTED_CHANGES_MAX = 10_000
"""A write of more claims goes into the change feed as one "anything may have changed" row."""
_MAX_PARAMS = 5_000
"""Values bound in one IN (...) list; larger sets are split (SQLite allows 32,766 per statement)."""


class HistoryStore:
    """Past claims in a SQL table, read for live claims and appended to after scoring.

    ``url`` is a SQLAlchemy URL (``postgresql://`` uses psycopg2 when psycopg 3 is not installed);
    ``table`` the table name (created with its indexes if missing).
    """

    def __init__(self, url: str, table: str = DEFAULT_TABLE):
        self.shown = describe(url)
        try:
            engine_url = with_installed_driver(sa.engine.make_url(url))
            self.engine = sa.create_engine(engine_url)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
            raise HistoryError(f"history store {self.shown}: cannot open this database ({db_error(exc)})") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.table = _claims_table(table, sa.MetaData())
        self.changes = sa.Table(
            f"{table}_changes",
            self.table.metadata,
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("claim_id", sa.String, nullable=True),
        )
        """The change feed: one row per claim written (``claim_id`` NULL: a bulk write, anything may
        have changed), in commit order; :class:`features.store.index.HistoryIndex` follows it."""
        self.last_write: tuple[int, int] | None = None
        """Sequence numbers ``(first, last)`` of the change rows of this object's latest write."""
        try:
            create_tables(self.table.metadata, self.engine)
            present = {c["name"] for c in sa.inspect(self.engine).get_columns(table)}
        except sa.exc.SQLAlchemyError as exc:
            raise HistoryError(
                f"history store {self.shown}: cannot connect or create table '{table}' ({db_error(exc)})"
            ) from None
        missing = [c for c in schema.COLUMNS if c not in present]
        if missing:
            raise HistoryError(
                f"history store {self.shown}: table '{table}' lacks column(s) "
                f"{', '.join(missing)}; load the claims into a new table or database"
            )
        self._upsert = _upsert_statement(self.table, self.engine.dialect.name)
        self._driver_sql: str | None = None
        self._positions: list[str] = []
        if self.engine.dialect.name == "sqlite":  # bulk path: native values straight to the driver
            compiled = self._upsert.compile(dialect=self.engine.dialect)
            self._driver_sql, self._positions = str(compiled), list(compiled.positiontup or [])

    def __repr__(self) -> str:
        return f"HistoryStore({self.shown!r}, table={self.table.name!r})"

    def close(self) -> None:
        self.engine.dispose()

    def drop(self) -> None:
        """Drop the table, its indexes and its change feed (tests and re-builds)."""
        self.table.metadata.drop_all(self.engine, checkfirst=True)

    def __len__(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one())

    # --- writing ------------------------------------------------------------------------------

    def load(self, frame: pd.DataFrame, chunk: int = 50_000, progress: Callable[[int], None] | None = None) -> int:
        """Write a canonical frame in chunks, in one transaction; a stored claim_id is replaced.

        Returns the number of claims written (duplicated claim_ids count once: the last row wins).
        ``progress`` is called with the number of rows written so far after each chunk. Loading
        into an empty table builds the indexes once at the end (much faster than row by row).
        """
        frame = as_canonical(frame)
        if frame["claim_id"].duplicated().any():
            frame = frame.drop_duplicates("claim_id", keep="last")
        done = 0
        try:
            with self.engine.begin() as conn:
                rebuild = len(frame) > chunk and conn.execute(sa.select(self.table.c.claim_id).limit(1)).first() is None
                if rebuild:
                    for index in self.table.indexes:
                        index.drop(conn)
                for start in range(0, len(frame), max(chunk, 1)):
                    part = frame.iloc[start : start + chunk]
                    self._write(conn, part)
                    done += len(part)
                    if progress is not None:
                        progress(done)
                if rebuild:
                    for index in self.table.indexes:
                        index.create(conn)
                self._note_changes(conn, frame["claim_id"].tolist())
        except sa.exc.SQLAlchemyError as exc:
            raise HistoryError(f"history store {self.shown}: cannot write claims ({db_error(exc)})") from None
        return done

    def append(self, frame: pd.DataFrame | Columns) -> int:
        """Add scored claims; a claim re-scored after a material change replaces its stored row.
        ``frame`` may be :data:`features.columns.Columns` with every canonical column (the service)."""
        if isinstance(frame, pd.DataFrame):
            return self.load(frame)
        try:
            with self.engine.begin() as conn:
                self._write(conn, frame)
                self._note_changes(conn, list(frame["claim_id"]))
        except sa.exc.SQLAlchemyError as exc:
            raise HistoryError(f"history store {self.shown}: cannot write claims ({db_error(exc)})") from None
        return columns.length(frame)

    def record_outcome(self, claim_id: str, **outcomes: object) -> None:
        """Record outcomes that arrived later, e.g. ``investigated=True, fraud_confirmed=True,
        investigation_closed_date="2024-03-01 10:00"``.

        Keywords are the schema's outcome fields (``investigated``, ``investigation_closed_date``,
        ``fraud_confirmed``, ``settled_amount``, ``settlement_date``, ...); each one given is written
        (``None`` clears it), the others are left as they are. Features only use an outcome for
        claims reported after its ``investigation_closed_date``.
        """
        unknown = [k for k in outcomes if k not in schema.OUTCOMES]
        if unknown:
            raise HistoryError(
                f"record_outcome: unknown outcome field(s) {', '.join(unknown)} "
                f"(outcome fields: {', '.join(schema.OUTCOMES)})"
            )
        if not outcomes:
            raise HistoryError("record_outcome: no outcome given")
        values = {k: _outcome_value(k, v) for k, v in outcomes.items()}
        stmt = sa.update(self.table).where(self.table.c.claim_id == str(claim_id)).values(**values)
        try:
            with self.engine.begin() as conn:
                updated = conn.execute(stmt).rowcount
                if updated:
                    self._note_changes(conn, [str(claim_id)])
        except sa.exc.SQLAlchemyError as exc:
            raise HistoryError(f"history store {self.shown}: cannot record outcome ({db_error(exc)})") from None
        if updated == 0:
            raise UnknownClaimError(f"history store {self.shown} holds no claim '{claim_id}'")

    def delete(self, claim_ids: Iterable[str]) -> int:
        """Remove claims (e.g. loaded by mistake); returns how many were stored."""
        removed = 0
        try:
            with self.engine.begin() as conn:
                ids_all = sorted({str(c) for c in claim_ids})
                for ids in _chunks(ids_all):
                    removed += conn.execute(sa.delete(self.table).where(self.table.c.claim_id.in_(ids))).rowcount
                self._note_changes(conn, ids_all)
        except sa.exc.SQLAlchemyError as exc:
            raise HistoryError(f"history store {self.shown}: cannot delete claims ({db_error(exc)})") from None
        return removed

    def _note_changes(self, conn: sa.Connection, claim_ids: list[str]) -> None:
        """Add the written claims to the change feed, inside the writing transaction."""
        if not claim_ids:
            return
        if self.engine.dialect.name == "postgresql":  # writers in turn: sequence numbers commit in order
            conn.execute(sa.text(f'LOCK TABLE "{self.changes.name}" IN EXCLUSIVE MODE'))
        rows = [{"claim_id": None}] if len(claim_ids) > LISTED_CHANGES_MAX else [{"claim_id": c} for c in claim_ids]
        conn.execute(sa.insert(self.changes), rows)
        last = int(conn.execute(sa.select(sa.func.max(self.changes.c.seq))).scalar_one())
        self.last_write = (last - len(rows) + 1, last)

    # --- the change feed ------------------------------------------------------------------------

    def snapshot(self) -> tuple[Columns, int]:
        """Every stored claim's :data:`HISTORY_COLUMNS`, and the change feed's last sequence number,
        read in one transaction (what :class:`features.store.index.HistoryIndex` starts from)."""
        try:
            with self.engine.connect() as conn, conn.begin():
                seq = conn.execute(sa.select(sa.func.max(self.changes.c.seq))).scalar_one() or 0
                rows = conn.execute(sa.select(*self._selected(HISTORY_COLUMNS, True))).all()
        except sa.exc.SQLAlchemyError as exc:
            raise HistoryError(f"history store {self.shown}: cannot read history ({db_error(exc)})") from None
        return columns.from_rows(rows, HISTORY_COLUMNS), int(seq)

    def changes_since(self, seq: int) -> list[tuple[int, str | None]]:
        """Change-feed rows after ``seq``: ``(seq, claim_id)``, ``claim_id`` None for a bulk write."""
        c = self.changes.c
        try:
            with self.engine.connect() as conn:
                return [tuple(r) for r in conn.execute(sa.select(c.seq, c.claim_id).where(c.seq > seq).order_by(c.seq))]
        except sa.exc.SQLAlchemyError as exc:
            raise HistoryError(f"history store {self.shown}: cannot read its changes ({db_error(exc)})") from None

    def rows_for(self, claim_ids: Iterable[str]) -> Columns:
        """The stored :data:`HISTORY_COLUMNS` of these claims (those still stored)."""
        selected = self._selected(HISTORY_COLUMNS, True)
        try:
            with self.engine.connect() as conn:
                rows = [
                    r
                    for ids in _chunks(sorted(set(claim_ids)))
                    for r in conn.execute(sa.select(*selected).where(self.table.c.claim_id.in_(ids)))
                ]
        except sa.exc.SQLAlchemyError as exc:
            raise HistoryError(f"history store {self.shown}: cannot read history ({db_error(exc)})") from None
        return columns.from_rows(rows, HISTORY_COLUMNS)

    def _write(self, conn: sa.Connection, part: pd.DataFrame | Columns) -> None:
        if self._driver_sql is not None:
            conn.exec_driver_sql(self._driver_sql, _driver_rows(part, self._positions))
        elif self._upsert is not None:
            conn.execute(self._upsert, _records(part))
        else:  # other dialects: replace by delete-then-insert inside the caller's transaction
            for ids in _chunks(list(part["claim_id"])):
                conn.execute(sa.delete(self.table).where(self.table.c.claim_id.in_(ids)))
            conn.execute(sa.insert(self.table), _records(part))

    # --- reading ------------------------------------------------------------------------------

    def claim(self, claim_id: str) -> dict[str, object] | None:
        """One stored claim's every canonical column (missing values ``None``), or None."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(self.table).where(self.table.c.claim_id == str(claim_id))).first()
        except sa.exc.SQLAlchemyError as exc:
            raise HistoryError(f"history store {self.shown}: cannot read claim ({db_error(exc)})") from None
        return None if row is None else {f.name: row._mapping[f.name] for f in schema.FIELDS}

    def claims_for(self, claim_ids: Iterable[str]) -> pd.DataFrame:
        """The stored claims among ``claim_ids`` with every canonical column (outcomes as recorded
        so far), as a canonical frame in no particular order. Read in bulk (from SQLite: values as
        stored, through the driver's own cursor; typed a column at a time by
        :func:`features.columns.from_rows`): a million claims in about 25 s on 2 cores, most of it
        the driver making Python values."""
        ids = sorted(set(map(str, claim_ids)))
        try:
            with self.engine.connect() as conn:
                if self.engine.dialect.name == "sqlite":  # the driver's own cursor: plain tuples
                    cursor = conn.connection.driver_connection.cursor()
                    quoted = ", ".join('"' + c + '"' for c in schema.COLUMNS)
                    select = f'SELECT {quoted} FROM "{self.table.name}"'
                    rows = [
                        row
                        for chunk in _chunks(ids)
                        for row in cursor.execute(f"{select} WHERE claim_id IN ({','.join('?' * len(chunk))})", chunk)
                    ]
                    cursor.close()
                    cols = columns.from_rows(rows, schema.COLUMNS)
                else:
                    selected = self._selected(schema.COLUMNS, True)
                    found = [
                        r
                        for chunk in _chunks(ids)
                        for r in conn.execute(sa.select(*selected).where(self.table.c.claim_id.in_(chunk)))
                    ]
                    cols = columns.from_rows(found, schema.COLUMNS)
        except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
            raise HistoryError(f"history store {self.shown}: cannot read claims ({db_error(exc)})") from None
        return _canonical(cols)

    def read_all(self) -> pd.DataFrame:
        """Every stored claim as a canonical frame, in report-time order (small stores and tests)."""
        with self.engine.connect() as conn:
            result = conn.execute(sa.select(self.table).order_by(self.table.c.report_date, self.table.c.claim_id))
            return _frame(result.fetchall())

    def history_for(self, claims: pd.DataFrame, max_rows: int = 20_000) -> pd.DataFrame:
        """Every stored row that can influence the features of the live ``claims``, as a canonical
        frame (the live claims' own claim_ids excluded):

        - rows sharing the claimant or policy reported before the claim (and the claimant's rows
          decided before it);
        - rows sharing the provider, payee account, phone or address reported or decided in
          ``[t - w, t)``, ``w`` the longest window of the features reading that key (from
          :mod:`features.catalog`: see :data:`LOOKBACK`);
        - the claimant's linked group as of ``t``: a breadth-first search through claimant <->
          phone / payee account (not providers' accounts) / address over rows reported before ``t``
          (:func:`features.links.search_groups`).

        For several live claims the bounds are taken over all of them (``t`` up to the latest
        report), a superset: :func:`features.build.build_features` only uses strictly earlier rows,
        so extra rows never change a feature. Rows of the direct keys are always complete; the
        group expansion stops when the history reaches ``max_rows`` rows, with a warning naming the
        claim, and ``group_size`` / ``group_prior_fraud`` may then differ from the batch features.
        """
        live = as_canonical(claims)
        if live.empty:
            return _frame([])
        return _frame(
            self._history_rows(
                _Live.of_columns(columns.from_frame(live)), max_rows, self._selected(schema.COLUMNS, False)
            )
        )

    def history_columns(self, live: Columns, max_rows: int = 20_000) -> Columns:
        """:meth:`history_for` for live claims given as :data:`features.columns.Columns` (the
        service's path: no DataFrame), answered as columns: :data:`HISTORY_COLUMNS` only, the
        ones the features of a live claim read."""
        rows = (
            self._history_rows(_Live.of_columns(live), max_rows, self._selected(HISTORY_COLUMNS, True))
            if columns.length(live)
            else []
        )
        return columns.from_rows(rows, HISTORY_COLUMNS)

    def _selected(self, names: Sequence[str], iso_text: bool) -> list:
        """Columns to select; with ``iso_text``, SQLite datetimes as their stored ISO text (numpy
        parses them in bulk, many times faster than a Python datetime per value)."""
        raw = iso_text and self.engine.dialect.name == "sqlite"
        return [
            sa.type_coerce(self.table.c[n], sa.String).label(n)
            if raw and schema.BY_NAME[n].dtype == "datetime"
            else self.table.c[n]
            for n in names
        ]

    def _history_rows(self, live: _Live, max_rows: int, selected: list) -> list[tuple]:
        t_max = live.t_max
        # pit counts whole seconds: a row at t - w + 0.4 s counts for a claim at t + 0.6 s
        first = live.first.floor("s")
        lo = {key: (first - days).to_pydatetime() for key, days in LOOKBACK.items()}
        rows: dict[str, tuple] = {}
        try:
            with self.engine.connect() as conn:
                for query in self._direct_queries(live, lo, t_max, selected):
                    for row in conn.execute(query):
                        if row[0] not in live.ids:
                            rows[row[0]] = tuple(row)
                # a query filling the limit holds more than max_rows rows besides the live claims':
                # the search then stops at max_rows, so the limit never drops a row unnoticed
                find = self._group_rows(conn, t_max, selected, limit=max_rows + len(live.ids) + 1)
                complete = links.search_groups(live.seeds, live.ids, find, rows, max_rows)
        except sa.exc.SQLAlchemyError as exc:
            raise HistoryError(f"history store {self.shown}: cannot read history ({db_error(exc)})") from None
        if not complete:
            ids = sorted(live.ids)
            named = f"claim {ids[0]}" + (f" (and {len(ids) - 1} other live claims)" if len(ids) > 1 else "")
            log.warning(
                "history for %s: linked-group expansion stopped at max_rows=%d history rows; "
                "group_size and group_prior_fraud may differ from the batch features",
                named,
                max_rows,
            )
        return list(rows.values())

    def _direct_queries(self, live: _Live, lo: dict, t_max, selected: list) -> Iterator[sa.Select]:
        """Rows sharing a key with a live claim, in the key's time range (OR of indexed branches)."""
        t = self.table.c
        before = t.report_date < t_max
        decided_before = t.investigation_closed_date < t_max
        when = {"claimant_id": sa.or_(before, decided_before), "policy_id": before}
        for key in WINDOW_KEYS:
            when[key] = sa.or_(
                sa.and_(t.report_date >= lo[key], before),
                sa.and_(t.investigation_closed_date >= lo[key], decided_before),
            )
        branches = [
            sa.and_(t[col].in_(values), cond) for col, cond in when.items() for values in _chunks(live.values[col])
        ]
        # one branch per key and IN chunk; SQLite ("MULTI-INDEX OR") and PostgreSQL (bitmap OR)
        # answer each branch from its key's index
        for i in range(0, len(branches), len(when)):
            yield sa.select(*selected).where(sa.or_(*branches[i : i + len(when)]))

    def _group_rows(self, conn: sa.Connection, t_max: datetime, selected: list, limit: int) -> links.Find:
        """The store's side of :func:`features.links.search_groups`: one query per group of IN
        chunks (a branch per node column, each answered from its column's index), at most ``limit``
        rows each."""
        t = self.table.c
        cols = {c.name: i for i, c in enumerate(selected)}
        # report_date as selected: a datetime, or SQLite's ISO text (which sorts as the time does)
        raw_report = not isinstance(selected[cols["report_date"]], sa.Column)
        t_report = t_max.strftime("%Y-%m-%dT%H:%M:%S.%f") if raw_report else t_max
        reported_before = t.report_date < t_max
        paid_to = t[links.PAYEE_TYPE]
        when = {}
        for col in links.GROUP_NODES:
            if col == "claimant_id":  # all its claims: links, and fraud decided before t
                when[col] = sa.or_(reported_before, t.investigation_closed_date < t_max)
            else:
                when[col] = sa.and_(reported_before, t.claimant_id.is_not(None))
            if col == links.ACCOUNT:  # links.joins in SQL: a provider's account joins nobody
                when[col] = sa.and_(when[col], sa.or_(paid_to.is_(None), paid_to != links.PROVIDER))
        at_id, at_report, at_paid = cols["claim_id"], cols["report_date"], cols[links.PAYEE_TYPE]
        at_nodes = [cols[col] for col in links.GROUP_NODES]
        per_query = len(links.GROUP_NODES)

        def find(frontier: dict[str, set]) -> Iterator[links.Found]:
            branches = [
                sa.and_(t[col].in_(values), when[col])
                for col in links.GROUP_NODES
                for values in _chunks(sorted(frontier[col]))
            ]
            for i in range(0, len(branches), per_query):
                found = conn.execute(
                    sa.select(*selected).where(sa.or_(*branches[i : i + per_query])).limit(limit)
                ).all()
                yield links.Found(
                    [r[at_id] for r in found],
                    [tuple(r) for r in found],
                    [r[at_report] < t_report for r in found],
                    [[r[j] for r in found] for j in at_nodes],
                    [r[at_paid] for r in found],
                )

        return find


@dataclass(frozen=True)
class _Live:
    """What the history queries need of the live claims."""

    ids: set[str]
    first: pd.Timestamp
    t_max: datetime
    values: dict[str, list]
    """Key column -> its distinct non-null values among the live claims."""
    seeds: dict[str, set]
    """Where the live claimants' linked groups start (:func:`features.links.seeds`)."""

    @classmethod
    def of_columns(cls, live: Columns) -> _Live:
        report = live["report_date"]
        missing = columns.missing(len(report), object)
        return cls(
            {c for c in live["claim_id"] if c is not None},
            pd.Timestamp(report.min()),
            pd.Timestamp(report.max()).to_pydatetime(),
            {c: sorted({v for v in live.get(c, missing) if v is not None}) for c in KEYS},
            links.seeds(live),
        )


# --- table and conversions ----------------------------------------------------------------------


def _claims_table(name: str, metadata: sa.MetaData) -> sa.Table:
    columns = [sa.Column(f.name, _SQL_TYPES[f.dtype](), primary_key=f.name == "claim_id") for f in schema.FIELDS]
    table = sa.Table(name, metadata, *columns)
    for col in (*KEYS, *_TIME_COLUMNS):
        sa.Index(f"ix_{name}_{col}", table.c[col])
    return table


def _upsert_statement(table: sa.Table, dialect: str):
    """INSERT ... ON CONFLICT (claim_id) DO UPDATE for SQLite and PostgreSQL; None elsewhere."""
    module = {"sqlite": sqlite, "postgresql": postgresql}.get(dialect)
    if module is None:
        return None
    stmt = module.insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.claim_id],
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name != "claim_id"},
    )
    # RETURNING lets SQLAlchemy batch an ON CONFLICT executemany into multi-row VALUES
    # ("insertmanyvalues"); without it psycopg2 sends one row per round trip
    return stmt.returning(table.c.claim_id) if dialect == "postgresql" else stmt


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL: the service keeps reading while a load writes; NORMAL sync is safe with WAL
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def as_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every canonical column in schema order and canonical dtypes, then its ``x_``
    extras (kept, never stored). Cheap when the columns present already have their canonical dtypes
    (missing optional columns are added as nulls); otherwise :func:`features.schema.conform`."""
    present = [f for f in schema.FIELDS if f.name in frame.columns]
    if not all(str(frame[f.name].dtype) == f.pandas_dtype for f in present) or any(
        f.required and f.name not in frame.columns for f in schema.FIELDS
    ):
        return schema.conform(frame)
    if len(present) == len(schema.FIELDS) and list(frame.columns[: len(present)]) == list(schema.COLUMNS):
        return frame
    cols = {
        f.name: frame[f.name] if f.name in frame.columns else schema.null_series(f.pandas_dtype, frame.index)
        for f in schema.FIELDS
    }
    cols |= {c: frame[c] for c in schema.extra_columns(frame.columns)}
    return pd.DataFrame(cols, index=frame.index)


def _records(frame: pd.DataFrame | Columns) -> list[dict]:
    """Rows as dicts of plain Python values (None for missing), for SQLAlchemy's executemany."""
    names = list(schema.COLUMNS)
    values = [_python_values(frame[f.name], f.dtype) for f in schema.FIELDS]
    return [dict(zip(names, row)) for row in zip(*values)]


def _driver_rows(frame: pd.DataFrame | Columns, positions: list[str]) -> list[tuple]:
    """Rows as tuples of SQLite-native values in the compiled statement's parameter order."""
    values = [_python_values(frame[name], schema.BY_NAME[name].dtype, iso_datetimes=True) for name in positions]
    return list(zip(*values))


def _python_values(s: pd.Series | np.ndarray, dtype: str, iso_datetimes: bool = False) -> list:
    if isinstance(s, np.ndarray):
        return _array_values(s, dtype, iso_datetimes)
    missing = s.isna().to_numpy()
    if dtype == "datetime" and iso_datetimes:
        values = np.datetime_as_string(s.to_numpy(dtype="datetime64[us]"), unit="us").astype(object)
    elif dtype == "datetime":
        values = np.asarray(s.dt.to_pydatetime(), dtype=object)
    elif dtype == "float":
        values = s.to_numpy(dtype=object)
    elif dtype == "int":
        values = s.to_numpy(dtype="int64", na_value=0).astype(object)
    elif dtype == "bool":
        values = s.to_numpy(dtype=bool, na_value=False).astype(object)
    else:
        values = s.to_numpy(dtype=object)
    if missing.any():
        values = values.copy()
        values[missing] = None
    return values.tolist()


def _array_values(a: np.ndarray, dtype: str, iso_datetimes: bool) -> list:
    """:func:`_python_values` of a column in the array types of :mod:`features.columns`."""
    if dtype == "datetime":
        us = a.astype("datetime64[us]")
        missing = np.isnat(us)
        values = np.datetime_as_string(us, unit="us").astype(object) if iso_datetimes else us.astype(object)
    elif dtype in ("float", "int", "bool"):
        missing = np.isnan(a)
        clean = np.where(missing, 0.0, a)
        values = {"float": clean, "int": clean.astype(np.int64), "bool": clean != 0}[dtype].astype(object)
    else:
        return a.tolist()
    values[missing] = None
    return values.tolist()


def _frame(rows: list) -> pd.DataFrame:
    """A canonical frame from rows of the table (selected in schema order), typed column by column."""
    data = list(zip(*rows)) if rows else [()] * len(schema.FIELDS)
    return pd.DataFrame(
        {f.name: pd.array(values, dtype=f.pandas_dtype) for f, values in zip(schema.FIELDS, data)}, copy=False
    )


def _canonical(cols: Columns) -> pd.DataFrame:
    """A canonical frame of :func:`features.columns.from_rows` columns (text through Arrow, which
    is several times faster than pandas' own string conversion)."""
    import pyarrow as pa

    out = {}
    for f in schema.FIELDS:
        values = cols[f.name]
        if f.dtype in ("id", "category"):
            out[f.name] = pd.array(pa.array(values, type=pa.large_string(), from_pandas=True), dtype="str")
        elif f.dtype == "bool":
            out[f.name] = pd.array(values, dtype="Float64").astype("boolean")
        elif f.dtype == "int":
            out[f.name] = pd.array(values, dtype="Float64").astype("Int64")
        else:
            out[f.name] = values.astype(f.pandas_dtype)
    return pd.DataFrame(out, copy=False)


def _outcome_value(name: str, value: object) -> object:
    """One outcome value as the column's Python type, or a HistoryError naming the field."""
    field = schema.BY_NAME[name]
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        if field.dtype == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise TypeError
        if field.dtype == "float":
            if isinstance(value, (bool, np.bool_)):
                raise TypeError
            return float(value)  # type: ignore[arg-type]
        if field.dtype == "datetime":
            ts = pd.Timestamp(value)  # type: ignore[arg-type]
            if ts.tz is not None:
                ts = ts.tz_convert("UTC").tz_localize(None)
            return ts.to_pydatetime()
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise HistoryError(f"record_outcome: {name}={value!r} is not a {field.dtype}")


def _chunks(values: list) -> Iterator[list]:
    for i in range(0, len(values), _MAX_PARAMS):
        yield values[i : i + _MAX_PARAMS]

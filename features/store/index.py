"""The history a live claim's features read, held in memory by the service and kept in step with the
history store through its change feed.

A SQL round trip per live claim (several, with the linked-group search) would cost more than the
claim's features. :class:`HistoryIndex` holds the store's
:data:`~features.store.history.HISTORY_COLUMNS` as numpy arrays with a position list per
identifier value, answers :meth:`history_columns` exactly as
:meth:`HistoryStore.history_columns <features.store.history.HistoryStore.history_columns>` does
(the same rows: the same features), and writes through to the store. :meth:`~HistoryIndex.rows_with`
and :meth:`~HistoryIndex.values_at` read held claims by identifier for other readers (the
investigators' linked network, :mod:`serving.network`).

Staying in step: every write to the store (this index's own appends, ``claimscore history load``,
outcomes recorded by another process, deletions) adds its claim ids to the store's change feed in the
same transaction. :meth:`refresh`, called before each batch of live claims, reads the feed past the
last change it has seen (one indexed query; nothing to do in the common case), re-reads the changed
claims, and reloads everything after a bulk write. Its own appends are applied at once and their
change rows skipped.

What it holds (start-up time and memory: ``python -m bench.run history_index``): the
:data:`~features.store.history.HISTORY_COLUMNS` as arrays, one string object per distinct
identifier (claim ids included), and per identifier column a pandas hash index over its distinct
values with the rows sorted by value. Claims added while serving go into Python lists until the
next full read. Each worker holds its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from features import columns, links
from features.columns import Columns
from features.store.history import ALL_PAST_KEYS, HISTORY_COLUMNS, KEYS, LOOKBACK, HistoryStore

log = logging.getLogger(__name__)


class _Lookup:
    """Rows by value of one column: a compact part built in bulk (a pandas hash index over the
    distinct values, rows sorted by value) and Python lists for the rows added since. Positions
    are candidates: a row whose value changed or that was removed is filtered out on reading."""

    def __init__(self, values: np.ndarray):
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        skip = int(np.searchsorted(sorted_codes, 0))  # missing values (-1) sort first
        self.index = pd.Index(uniques, dtype=object)
        self.order = order[skip:]
        self.starts = np.searchsorted(sorted_codes[skip:], np.arange(len(uniques) + 1))
        self.added: dict[Any, list[int]] = {}
        self.shared = np.append(uniques.astype(object), None)[codes]
        """``values`` with one object per distinct value (an id on many rows is one string, not one per row)."""

    def rows(self, value: Any) -> np.ndarray:
        try:
            code = self.index.get_loc(value)
        except KeyError:
            base = _NO_ROWS
        else:
            base = self.order[self.starts[code] : self.starts[code + 1]]
        more = self.added.get(value)
        return base if more is None else np.concatenate([base, np.array(more, dtype=np.int64)])

    def add(self, value: Any, row: int) -> None:
        self.added.setdefault(value, []).append(row)


_NO_ROWS = np.empty(0, dtype=np.int64)


class HistoryIndex:
    def __init__(self, store: HistoryStore):
        self.store = store
        self.reloads = 0
        """Full reads of the store so far (the first included)."""
        self._reload()

    # --- staying in step with the store ---------------------------------------------------------

    def _reload(self) -> None:
        cols, seq = self.store.snapshot()
        self._seq = seq
        self._n = columns.length(cols)
        self._cols: Columns = dict(cols)
        self._by = {k: _Lookup(cols[k]) for k in (*KEYS, "claim_id")}
        for k, lookup in self._by.items():
            self._cols[k] = lookup.shared
            del lookup.shared
            if len(lookup.index):  # pandas builds a hash table on its first lookup: here, not in a request
                lookup.index.get_loc(lookup.index[0])
        self._count = self._n
        self._grow(self._n)
        self.reloads += 1

    def refresh(self) -> int:
        """Apply the store's changes since the last look; the number of change rows applied."""
        changes = self.store.changes_since(self._seq)
        if not changes:
            return 0
        if any(claim_id is None for _, claim_id in changes):
            self._reload()
            return len(changes)
        ids = {claim_id for _, claim_id in changes}
        found = self.store.rows_for(ids)
        self._remove(ids - set(found["claim_id"]))
        self._put(found)
        self._seq = changes[-1][0]
        return len(changes)

    def append(self, claims: Columns) -> int:
        """Write scored claims through to the store (:meth:`HistoryStore.append`), then hold them."""
        written = self.store.append(claims)
        self._put({name: claims[name] for name in HISTORY_COLUMNS})
        first, last = self.store.last_write or (self._seq + 1, self._seq)
        if first == self._seq + 1:  # nobody else wrote in between: our own change rows are applied
            self._seq = last
        return written

    def __len__(self) -> int:
        return self._count

    @property
    def distinct_identifiers(self) -> int:
        """Distinct values held across the key columns and claim ids (what the hash indexes hold)."""
        return sum(len(lookup.index) for lookup in self._by.values())

    def _row_of(self, claim_id: str) -> int | None:
        rows = self._rows("claim_id", claim_id)
        return int(rows[-1]) if len(rows) else None

    def get(self, claim_id: str) -> dict[str, Any] | None:
        """A held claim's :data:`HISTORY_COLUMNS` values, or None."""
        row = self._row_of(claim_id)
        return None if row is None else {name: self._cols[name][row] for name in HISTORY_COLUMNS}

    def _put(self, cols: Columns) -> None:
        """Insert or replace rows (by claim id)."""
        n = columns.length(cols)
        if not n:
            return
        rows = np.empty(n, dtype=np.int64)
        new: dict[str, int] = {}  # a claim given twice takes one row (the later values win)
        for i, claim_id in enumerate(cols["claim_id"]):
            row = new.get(claim_id)
            if row is None:
                row = self._row_of(claim_id)
            if row is None:
                row = new[claim_id] = self._n
                self._n += 1
                self._count += 1
            rows[i] = row
        self._grow(self._n)
        old = {k: self._cols[k][rows] for k in self._by}
        for name in HISTORY_COLUMNS:
            self._cols[name][rows] = cols[name]
        for k, lookup in self._by.items():  # a row joins the lists of the values it did not have
            for value, before, row in zip(cols[k].tolist(), old[k].tolist(), rows.tolist()):
                if value is not None and value != before:
                    lookup.add(value, row)

    def _remove(self, claim_ids: set[str]) -> None:
        for claim_id in claim_ids:
            row = self._row_of(claim_id)
            if row is not None:  # the position stays, marked dead; lookups skip it on reading
                self._count -= 1
                for k in self._by:
                    self._cols[k][row] = None

    def _grow(self, n: int) -> None:
        capacity = len(self._cols["claim_id"])
        if n <= capacity and capacity > 0:
            return
        size = max(n, 2 * capacity, 1024)
        for name, arr in self._cols.items():
            self._cols[name] = np.concatenate([arr, columns.missing(size - capacity, arr.dtype)])

    # --- reading --------------------------------------------------------------------------------

    def rows_with(self, key: str, values: Iterable[Any]) -> np.ndarray:
        """Positions (sorted, each once) of the held claims whose ``key`` is any of ``values`` now;
        ``key`` one of :data:`~features.store.history.KEYS` or ``claim_id``. Positions are valid until
        the next :meth:`refresh` or :meth:`append`; read the claims' values with :meth:`values_at`."""
        if key not in self._by:
            raise ValueError(f"rows_with: key={key!r} is not looked up by value (one of {', '.join(self._by)})")
        rows = self._rows_of(key, {v for v in values if v is not None})
        return np.unique(rows)

    def values_at(self, rows: np.ndarray, names: Iterable[str] = HISTORY_COLUMNS) -> Columns:
        """The :data:`~features.store.history.HISTORY_COLUMNS` ``names`` of the claims at ``rows``
        (positions from :meth:`rows_with`), as :data:`~features.columns.Columns` (copies)."""
        names = list(names)
        unknown = [n for n in names if n not in HISTORY_COLUMNS]
        if unknown:
            raise ValueError(f"values_at: {', '.join(unknown)} not held (held: {', '.join(HISTORY_COLUMNS)})")
        rows = np.asarray(rows, dtype=np.int64)
        return {name: self._cols[name][rows] for name in names}

    def _rows_of(self, key: str, values: set) -> np.ndarray:
        """Positions whose ``key`` is any of ``values`` now."""
        if not values:
            return _NO_ROWS
        parts = [self._rows(key, v) for v in values]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _rows(self, key: str, value: Any) -> np.ndarray:
        """Positions whose ``key`` is ``value`` now."""
        rows = self._by[key].rows(value)
        return rows[self._cols[key][rows] == value] if len(rows) else rows

    def history_columns(self, live: Columns, max_rows: int = 20_000) -> Columns:
        """The rows that can influence the live claims' features, as
        :meth:`HistoryStore.history_columns <features.store.history.HistoryStore.history_columns>`
        answers them: rows sharing a key in its time range, and the live claimants' linked groups
        (up to ``max_rows`` rows, with a warning naming the claim when cut)."""
        if not columns.length(live):
            return {name: self._cols[name][:0] for name in HISTORY_COLUMNS}
        report = self._cols["report_date"]
        closed = self._cols["investigation_closed_date"]
        t_max = live["report_date"].max().astype("datetime64[ns]")
        first = live["report_date"].min().astype("datetime64[s]").astype("datetime64[ns]")
        ids = {c for c in live["claim_id"] if c is not None}
        held: dict[str, int] = {}  # claim id -> position
        for key in KEYS:
            rows = self._rows_of(key, {v for v in live.get(key, ()) if v is not None})
            before = report[rows] < t_max
            if key == "claimant_id":
                keep = before | (closed[rows] < t_max)
            elif key in ALL_PAST_KEYS:
                keep = before
            else:
                lo = first - np.timedelta64(LOOKBACK[key])
                keep = (before & (report[rows] >= lo)) | ((closed[rows] >= lo) & (closed[rows] < t_max))
            rows = rows[keep]
            held.update((c, r) for r, c in zip(rows.tolist(), self._cols["claim_id"][rows].tolist()) if c not in ids)
        complete = links.search_groups(links.seeds(live), ids, self._group_rows(t_max), held, max_rows)
        if not complete:
            shown = sorted(ids)
            named = f"claim {shown[0]}" + (f" (and {len(shown) - 1} other live claims)" if len(shown) > 1 else "")
            log.warning(
                "history for %s: linked-group expansion stopped at max_rows=%d history rows; "
                "group_size and group_prior_fraud may differ from the batch features",
                named,
                max_rows,
            )
        rows = np.array(sorted(held.values()), dtype=np.int64)
        return {name: self._cols[name][rows] for name in HISTORY_COLUMNS}

    def _group_rows(self, t_max: np.datetime64) -> links.Find:
        """The index's side of :func:`features.links.search_groups`: a step's rows in one batch."""
        report, closed = self._cols["report_date"], self._cols["investigation_closed_date"]
        claimant, payee_type = self._cols["claimant_id"], self._cols[links.PAYEE_TYPE]

        def find(frontier: dict[str, set]) -> list[links.Found]:
            found = []
            for col in links.GROUP_NODES:
                rows = self._rows_of(col, frontier[col])
                before = report[rows] < t_max
                if col == "claimant_id":  # all its claims: links, and fraud decided before t
                    keep = before | (closed[rows] < t_max)
                else:
                    keep = before & (claimant[rows] != None)  # noqa: E711 - elementwise on objects
                    keep &= links.joining(col, payee_type[rows])
                found.append(rows[keep])
            rows = np.unique(np.concatenate(found))
            # the rows' values as Python objects, column by column (not a numpy scalar per cell)
            return [
                links.Found(
                    self._cols["claim_id"][rows].tolist(),
                    rows.tolist(),
                    (report[rows] < t_max).tolist(),
                    [self._cols[col][rows].tolist() for col in links.GROUP_NODES],
                    payee_type[rows].tolist(),
                )
            ]

        return find

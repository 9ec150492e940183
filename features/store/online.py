"""Features of live claims: the batch code run on the claims and the stored history that reaches them.

    store = HistoryStore(settings.history_url)
    features = online_features(store, claims, model_features, extras)   # score ...
    store.append(claims)                                                # ... then remember them

:func:`features.build.build_features` computes every row's features from rows reported (and
outcomes decided) strictly earlier; :meth:`HistoryStore.history_for` returns every stored row that
can influence the live claims. Running the former on the latter plus the claims gives the same
numbers as the batch features of a table holding all claims: one implementation, not two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd

from features import columns
from features.build import build_features
from features.catalog import Feature
from features.columns import Columns
from features.store.history import HistoryStore, as_canonical

if TYPE_CHECKING:
    from features.store.index import HistoryIndex


def online_features(
    store: HistoryStore | HistoryIndex,
    claims: pd.DataFrame | Columns,
    features: Sequence[Feature | str],
    extras: Mapping[str, object] | None = None,
    *,
    max_rows: int = 20_000,
) -> pd.DataFrame | Columns:
    """Features of the live ``claims`` (same index), computed with the stored history.

    ``claims`` is a canonical DataFrame (answered with a DataFrame) or :data:`features.columns.Columns`
    with every canonical column (answered with a dict of arrays, no pandas on the way: the service).
    ``store`` may be the service's in-memory :class:`~features.store.index.HistoryIndex` (for
    columns only; the caller refreshes it).

    ``features`` is the model's recorded feature list: always explicit, since which features a
    frame can support differs between one claim and a table. Claims given together are treated
    like rows of one table (a claim sees the others reported strictly before it). The claims'
    outcome columns, normally empty at scoring, never affect their own features.
    """
    if features is None:
        raise TypeError("online_features needs the model's feature list (features=...)")
    if not isinstance(claims, pd.DataFrame):
        history_cols = store.history_columns(claims, max_rows=max_rows)
        frame = columns.concat(history_cols, claims)
        return build_features(frame, features, extras, rows=slice(columns.length(history_cols), None))  # type: ignore[return-value]
    live = as_canonical(claims)
    history = store.history_for(live, max_rows=max_rows)
    frame = pd.concat([history, live], ignore_index=True) if len(history) else live.reset_index(drop=True)
    out = build_features(frame, features, extras, rows=slice(len(history), None))
    out.index = claims.index
    return out

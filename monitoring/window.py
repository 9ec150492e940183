"""The claims a monitoring run looks at: what was decided (features, scores, routes, rules) beside
what is known of each claim now (its notice fields, its outcomes as they arrived, its case).

A window comes from the decision log between two times (:func:`from_decision_log`: the features
and scores the service answered with, joined to the history store's claims and the case store's
cases) or from a table of claims (:func:`from_table`: features built and scored with the champion
where the table carries no scores). Every later stage (drift, quality, performance, fairness, KPIs)
reads a :class:`Window` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from serving.model.routing import RoutingPolicy


@dataclass
class Window:
    claims: pd.DataFrame
    """One row per decision, canonical schema columns (:mod:`features.schema`): the notice fields
    and the outcomes known now (``fraud_confirmed`` NaN/NA until an investigation closes)."""
    features: pd.DataFrame
    """The model features each claim was scored with (same rows, index 0..n-1)."""
    scores: dict[str, np.ndarray]
    """Task (``fraud``, ``fast_track``) -> calibrated score per claim."""
    routes: np.ndarray
    """Route per claim (:data:`serving.model.routing.ROUTES`)."""
    rules: list[list[str]]
    """Routing rules fired per claim."""
    decided_at: pd.Series
    """When each claim was decided (datetime64; a table's report date)."""
    policy: RoutingPolicy
    """The routing policy the window's decisions were made under (the champion's)."""
    as_of: pd.Timestamp
    """When the window is judged: outcomes and case ages are as of this time."""
    cases: pd.DataFrame | None = None
    """Cases of the window's claims: ``claim_id, queue, status, opened_at, closed_at, disposition``
    (None: no case store, e.g. a table)."""
    kind: str = "table"
    """``decision_log`` or ``table``."""
    description: dict[str, str] = field(default_factory=dict)
    """What the window is, for the report (source, period, model versions)."""

    def __len__(self) -> int:
        return len(self.claims)

    def label(self, task: str = "fraud") -> np.ndarray:
        """The task's label per claim as floats, NaN where not known (yet)."""
        from features.schema import LABELS

        column = self.claims[LABELS[task]]
        return column.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)

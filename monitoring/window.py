"""The claims a monitoring run looks at: what was decided (features, scores, routes, rules) beside
what is known of each claim now (its notice fields, its outcomes as they arrived, its case).

A window comes from the decision log between two times (:func:`from_decision_log`: the features
and scores the service answered with, joined to the history store's claims and the case store's
cases) or from a table of claims (:func:`from_table`: features built and scored with the champion
where the table carries no scores). Every later stage (drift, quality, performance, fairness, KPIs)
reads a :class:`Window` and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from serving.model.routing import RoutingPolicy

if TYPE_CHECKING:
    from serving.model.scorer import Scorer


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


def from_table(
    claims: pd.DataFrame,
    scorer: Scorer,
    extras: Mapping[str, object] | None = None,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
) -> Window:
    """The claims of a table reported in ``[since, until)`` (all when not given), scored with
    ``scorer`` (the champion): scores and routes, no reasons (monitoring needs none). Features are
    built over the whole table, so earlier claims are the window's history, as in training. Decided
    at their report dates; judged as of ``until``, else the table's last report date."""
    from features.build import build_features

    claims = claims.reset_index(drop=True)
    reported = pd.to_datetime(claims["report_date"])
    keep = np.ones(len(claims), dtype=bool)
    if since is not None:
        keep &= (reported >= pd.Timestamp(since)).to_numpy()
    if until is not None:
        keep &= (reported < pd.Timestamp(until)).to_numpy()
    table = build_features(claims, scorer.features, {**scorer.extras, **(extras or {})})
    table = table[keep].reset_index(drop=True)
    claims = claims[keep].reset_index(drop=True)
    scores = {task: b.predict(b.encoder.transform(table)) for task, b in scorer.bundles.items()}
    routes, rules = scorer.policy.route_table(table, scores.get("fraud"), scores.get("fast_track"))
    decided = pd.to_datetime(claims["report_date"])
    return Window(
        claims=claims,
        features=table,
        scores=scores,
        routes=np.asarray(routes, dtype=object),
        rules=rules,
        decided_at=decided,
        policy=scorer.policy,
        as_of=pd.Timestamp(until) if until is not None else reported.max(),
        kind="table",
    )


def from_decisions(
    decisions: Sequence[Mapping],
    claims: pd.DataFrame,
    policy: RoutingPolicy,
    as_of: pd.Timestamp,
    cases: pd.DataFrame | None = None,
) -> Window:
    """The decision log's rows (as :meth:`serving.decision_log.DecisionLog.read` gives them: claim_id,
    decided_at, route, scores, rules, features), the latest per claim, beside the claims as the
    history store holds them now (canonical frame; a decided claim the store lacks keeps null fields)
    and their cases."""
    latest: dict[str, Mapping] = {}
    for d in decisions:  # in log order: a claim scored again keeps its last decision
        latest[str(d["claim_id"])] = d
    rows = list(latest.values())
    ids = list(latest)
    known = claims.drop_duplicates("claim_id", keep="last").set_index("claim_id")
    frame = known.reindex(pd.Index(ids, name="claim_id")).reset_index()
    frame = frame.astype({c: claims[c].dtype for c in claims.columns if c in frame.columns and c != "claim_id"})
    features = pd.DataFrame.from_records([d["features"] for d in rows]) if rows else pd.DataFrame()
    tasks = sorted({t for d in rows for t in d["scores"]})
    scores = {t: np.array([d["scores"].get(t, np.nan) for d in rows], dtype=np.float64) for t in tasks}
    decided = pd.to_datetime(pd.Series([d["decided_at"] for d in rows], dtype="str"), utc=True, format="ISO8601")
    if cases is not None:
        cases = cases[cases["claim_id"].isin(latest)].reset_index(drop=True)
    return Window(
        claims=frame,
        features=features,
        scores=scores,
        routes=np.array([d["route"] for d in rows], dtype=object),
        rules=[list(d["rules"]) for d in rows],
        decided_at=decided.dt.tz_localize(None),
        policy=policy,
        as_of=pd.Timestamp(as_of),
        cases=cases,
        kind="decision_log",
    )

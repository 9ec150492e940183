"""The claims a monitoring run looks at: what was decided (features, scores, routes, rules) beside
what is known of each claim now (its notice fields, its outcomes as they arrived, its case).

A window comes from the decision log between two times (:func:`from_decision_log`: the features
and scores the service answered with, joined to the history store's claims and the case store's
cases) or from a table of claims (:func:`from_table`: features built and scored with the champion
where the table carries no scores). Every later stage (drift, quality, performance, fairness, KPIs)
reads a :class:`Window` and nothing else.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from serving.model.routing import RoutingPolicy

if TYPE_CHECKING:
    from monitoring.quality import Parts
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
    shadow: dict | None = None
    """What the service's shadow decided for each claim (decision log only, where it ran one):
    ``routes`` (array; None where it did not run), ``scores`` (task -> array), ``version``."""
    description: dict[str, str] = field(default_factory=dict)
    """What the window is, for the report (source, period, model versions)."""
    reconstruction_errors: np.ndarray | None = None
    """Each claim's reconstruction error from the reference's principal components, where it was
    made beside the claims (a window on Dask); None: made from ``features`` when needed."""
    quality_parts: Parts | None = None
    """The quality suite's checks made part by part beside the claims (a window on Dask); None: the
    suite is run on ``claims``."""

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
    scored = scorer.score_features(table, reasons=False)
    scores, routes, rules = scored.scores, scored.routes, scored.rules
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
    decisions: Mapping[str, Sequence],
    claims: pd.DataFrame | Future,
    policy: RoutingPolicy,
    as_of: pd.Timestamp,
    cases: pd.DataFrame | Future | None = None,
) -> Window:
    """The decision log's rows as columns (:meth:`serving.decision_log.DecisionLog.read_window`:
    ``claim_id``, ``decided_at``, ``route``, and ``scores``, ``rules``, ``features`` as JSON text),
    the latest per claim, beside the claims as the history store holds them now (canonical frame;
    a decided claim the store lacks keeps null fields) and their cases. ``claims`` and ``cases`` may
    be futures still being read: they are waited for once the decisions are parsed."""
    log = pd.DataFrame({k: decisions[k] for k in ("claim_id", "decided_at", "route")})
    latest = log.drop_duplicates("claim_id", keep="last").index.to_numpy()  # a claim scored again: its last
    ids = log["claim_id"].to_numpy()[latest].astype(str)
    features = _json_rows([decisions["features"][i] for i in latest])
    scored = _json_rows([decisions["scores"][i] for i in latest])
    scores = {t: pd.to_numeric(scored[t], errors="coerce").to_numpy(dtype=np.float64) for t in scored.columns}
    rules = [[] if decisions["rules"][i] == "[]" else list(json.loads(decisions["rules"][i])) for i in latest]
    decided = pd.to_datetime(log["decided_at"].iloc[latest].astype("str"), utc=True, format="ISO8601")
    claims = claims.result() if isinstance(claims, Future) else claims
    cases = cases.result() if isinstance(cases, Future) else cases
    known = claims.drop_duplicates("claim_id", keep="last").set_index("claim_id")
    frame = known.reindex(pd.Index(ids, name="claim_id")).reset_index()
    frame = frame.astype({c: claims[c].dtype for c in claims.columns if c in frame.columns and c != "claim_id"})
    if cases is not None:
        cases = cases[cases["claim_id"].isin(set(ids))].reset_index(drop=True)
    shadow = _shadow([decisions["shadow"][i] for i in latest]) if "shadow" in decisions else None
    return Window(
        claims=frame,
        features=features,
        scores=scores,
        routes=log["route"].to_numpy()[latest].astype(object),
        rules=rules,
        decided_at=decided.dt.tz_localize(None).reset_index(drop=True),
        policy=policy,
        as_of=pd.Timestamp(as_of),
        cases=cases,
        kind="decision_log",
        shadow=shadow,
    )


def _shadow(texts: Sequence[str]) -> dict | None:
    """The shadow's decisions (None when no decision carries one)."""
    parsed = [json.loads(t) if t and t != "{}" else {} for t in texts]
    if not any(parsed):
        return None
    tasks = sorted({t for d in parsed for t in d.get("scores", {})})
    return {
        "routes": np.array([d.get("route") for d in parsed], dtype=object),
        "scores": {t: np.array([d.get("scores", {}).get(t, np.nan) for d in parsed], dtype=np.float64) for t in tasks},
        "version": next(d["version"] for d in parsed if d),
    }


def _json_rows(texts: Sequence[str | bytes], batch: int = 100_000) -> pd.DataFrame:
    """JSON objects (one per row, as text or UTF-8 bytes) as a frame: a column per key, numbers as
    floats, text as text, parsed by Arrow ``batch`` rows at a time."""
    if not len(texts):
        return pd.DataFrame()
    import pyarrow as pa
    import pyarrow.json as pj

    tables = []
    for start in range(0, len(texts), batch):
        part = [t if isinstance(t, bytes) else t.encode() for t in texts[start : start + batch]]
        block = max(16 << 20, 4 * max(map(len, part)))
        tables.append(pj.read_json(io.BytesIO(b"\n".join(part)), read_options=pj.ReadOptions(block_size=block)))
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()

"""Score claims with the registered champions: calibrated scores, a route, the rules that fired and
the top reasons for each score.

Used by batch scoring (``claimscore score``) and the service. It loads what training registered (model
bundles and the routing policy they carry) and never imports training code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Mapping

import numpy as np
import pandas as pd

from features import catalog
from features.build import build_features
from features.columns import Columns
from features.bundle import ModelBundle
from features.routing import RoutingPolicy

TOP_REASONS = 3


@dataclass
class Scorer:
    bundles: dict[str, ModelBundle]
    """``fraud`` and/or ``fast_track``."""
    policy: RoutingPolicy
    versions: dict[str, str]

    @classmethod
    def from_registry(cls, settings, alias: str = "champion") -> "Scorer":
        from training import registry  # the registry client only: where MLflow keeps the models

        registry.configure(settings)
        bundles, versions = {}, {}
        for task in registry.MODEL_NAMES:
            if registry.version_for(task, alias) is not None:
                bundles[task] = registry.load_bundle(task, alias)
                versions[task] = registry.version_for(task, alias).version
        if not bundles:
            raise registry.RegistryError(f"no {alias} model is registered: run claimscore train and claimscore promote")
        policy = RoutingPolicy.from_dict(next(iter(bundles.values())).metadata["policy"])
        return cls(bundles, policy, versions)

    @property
    def extras(self) -> dict[str, SimpleNamespace]:
        """The source's extra attributes the models use (type and description, from training)."""
        out = {}
        for b in self.bundles.values():
            out.update({k: SimpleNamespace(**v) for k, v in b.metadata.get("extras", {}).items()})
        return out

    @property
    def features(self) -> list[str]:
        names: list[str] = []
        for b in self.bundles.values():
            names += [f for f in b.features if f not in names]
        return names

    def score_table(self, claims: pd.DataFrame, extras: Mapping[str, object] | None = None) -> pd.DataFrame:
        """One row per claim: scores, route, fired rules and top reasons (JSON lists)."""
        table = build_features(claims, self.features, extras or self.extras)
        result = self.score_features(table)
        out = pd.DataFrame({"claim_id": claims["claim_id"].to_numpy()}, index=claims.index)
        for task in self.bundles:
            out[f"{task}_score"] = result.scores[task]
            out[f"{task}_reasons"] = [json.dumps(r, default=_jsonable) for r in result.reasons[task]]
        out["route"] = result.routes
        out["rules"] = [json.dumps(f) for f in result.rules]
        return out

    def score_features(self, table: pd.DataFrame | Columns) -> "Scored":
        """Scores, reasons and routes for a feature table: a DataFrame (batch) or the dict of
        arrays that :func:`features.build.build_features` answers for live claims."""
        scores, reasons = {}, {}
        for task, bundle in self.bundles.items():
            matrix = bundle.encoder.transform(table)
            scores[task] = bundle.predict(matrix)
            reasons[task] = top_reasons(bundle, table, matrix)
        fraud, fast = scores.get("fraud"), scores.get("fast_track")
        if isinstance(table, pd.DataFrame):
            routes, fired = self.policy.route_table(table, fraud, fast)
        else:  # a few live claims: claim by claim, no DataFrame (same answers as route_table)
            names = list(table)
            routed = [self.policy.route_one(dict(zip(names, row)), _at(fraud, i), _at(fast, i))
                      for i, row in enumerate(zip(*table.values()))]
            routes = np.array([r for r, _ in routed], dtype=object)
            fired = [f for _, f in routed]
        return Scored(scores, reasons, routes, fired)


@dataclass
class Scored:
    scores: dict[str, np.ndarray]
    reasons: dict[str, list[list[dict]]]
    routes: np.ndarray
    rules: list[list[str]]


def _at(scores: np.ndarray | None, i: int) -> float | None:
    return None if scores is None else float(scores[i])


def top_reasons(bundle: ModelBundle, table: pd.DataFrame | Columns, matrix: np.ndarray, k: int = TOP_REASONS
                ) -> list[list[dict]]:
    """The ``k`` features pushing each claim's score up the most (exact TreeSHAP, log-odds); a
    claim's reasons do not depend on the other rows of ``matrix``."""
    contrib = bundle.explainer.contributions(matrix, stable=True)
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :k]
    names = bundle.features
    out = []
    if isinstance(table, pd.DataFrame):
        values = table[list(names)].to_numpy(dtype=object)
    else:
        values = np.empty((len(matrix), len(names)), dtype=object)
        for j, name in enumerate(names):
            values[:, j] = table[name]
    for i in range(len(matrix)):
        row = []
        for j in order[i]:
            if contrib[i, j] <= 0:
                break
            value = values[i, j]
            value = None if value is None or (isinstance(value, float) and np.isnan(value)) else value
            feature = catalog.BY_NAME.get(names[j])
            text = feature.explain(value if value is not None else float("nan")) if feature else f"{names[j]}: {value}"
            row.append({"feature": names[j], "value": value, "contribution": float(contrib[i, j]), "text": text})
        out.append(row)
    return out


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return str(v)

"""Score claims with the registered champions: calibrated scores, a route, the rules that fired and
the top reasons for each score.

Used by batch scoring (``claimscore score``) and the service. It loads what training registered (model
bundles and the routing policy they carry) and never imports training code.

Before scoring, :meth:`Scorer.check_inputs` refuses claims that lack a column the champion's features
are computed from (:class:`MissingInputs`, naming it), unless the caller explicitly allows scoring
with it missing; the features it feeds are then unknown (NaN), as LightGBM saw missing values.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, KeysView, Mapping
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd

from features import catalog, schema
from features.build import build_features
from features.columns import Columns
from features.errors import ClaimScoreError
from serving.model.bundle import ModelBundle
from serving.model.routing import RoutingPolicy

TOP_REASONS = 3


class MissingInputs(ClaimScoreError):
    """Claims lack columns the champion's features are computed from.

    ``missing`` maps each input (a column, or ``a|b|c`` where any one of them will do) to the
    features that need it. The CLI answers exit 2, the service 422, each naming the inputs."""

    def __init__(self, missing: dict[str, list[str]]):
        self.missing = missing
        super().__init__(
            "the champion uses column(s) the claims lack: "
            + "; ".join(f"{_shown(i)} (for {', '.join(f)})" for i, f in missing.items())
        )


def _shown(key: str) -> str:
    return key if "|" not in key else "one of " + ", ".join(key.split("|"))


def _known_at_notice(column: str) -> bool:
    """Inputs a new claim carries: notice fields and extras. Outcome columns feed history features
    about earlier claims (decided investigations); a table of new claims has none, by nature."""
    if column.startswith(schema.EXTRA_PREFIX):
        return True
    field = schema.BY_NAME.get(column)
    return field is not None and field.stage == "notice"


@dataclass
class Scorer:
    bundles: dict[str, ModelBundle]
    """``fraud`` and/or ``fast_track``."""
    policy: RoutingPolicy
    versions: dict[str, str]

    @classmethod
    def from_registry(cls, settings, alias: str = "champion") -> Scorer:
        from serving.model import registry  # the read side: where MLflow keeps the models

        registry.configure(settings)
        bundles, versions = {}, {}
        for task in registry.MODEL_NAMES:
            if registry.version_for(task, alias) is not None:
                bundles[task] = registry.load_bundle(task, alias)
                versions[task] = registry.version_for(task, alias).version
        if not bundles:
            raise registry.RegistryError(f"no {alias} model is registered: run claimscore train and claimscore promote")
        policy = RoutingPolicy.from_dict(next(iter(bundles.values())).metadata["policy"])
        scorer = cls(bundles, policy, versions)
        policy.check(scorer.features)  # a rule naming a feature nobody builds is refused here, by name
        for bundle in bundles.values():  # precompute the explainers now, not on the first claim
            _ = bundle.explainer
        return scorer

    # The champion does not change once loaded: what it needs is worked out once, not per batch.

    @functools.cached_property
    def extras(self) -> dict[str, SimpleNamespace]:
        """The source's extra attributes the models use (type and description, from training)."""
        out = {}
        for b in self.bundles.values():
            out.update({k: SimpleNamespace(**v) for k, v in b.metadata.get("extras", {}).items()})
        return out

    @functools.cached_property
    def features(self) -> list[str]:
        """The features to build: the models' and those the routing policy reads."""
        names: list[str] = []
        for b in self.bundles.values():
            names += [f for f in b.features if f not in names]
        return names + [f for f in self.policy.reads if f not in names]

    @functools.cached_property
    def inputs(self) -> dict[str, list[str]]:
        """The columns the champion's features are computed from (the catalog's ``needs`` and
        ``needs_any``; an extra is its own column), each -> the features that need it. Alternatives
        of which one is enough are keyed ``a|b|c``. Only what a new claim carries: notice fields and
        extras (see :func:`_known_at_notice`)."""
        out: dict[str, list[str]] = {}
        for name in self.features:
            feature = catalog.BY_NAME.get(name)
            groups = [(c,) for c in feature.needs] if feature else [(name,)]
            if feature and feature.needs_any:
                groups.append(feature.needs_any)
            for group in groups:
                kept = [c for c in group if _known_at_notice(c)]
                if kept:
                    out.setdefault("|".join(kept), []).append(name)
        return out

    @functools.cached_property
    def _input_sets(self) -> tuple[frozenset[str], tuple[frozenset[str], ...]]:
        """:attr:`inputs` as sets: the columns needed, and the groups of which one is enough."""
        return (
            frozenset(k for k in self.inputs if "|" not in k),
            tuple(frozenset(k.split("|")) for k in self.inputs if "|" in k),
        )

    def missing_inputs(self, columns: Iterable[str]) -> dict[str, list[str]]:
        """The inputs (see :attr:`inputs`) not among ``columns``, each -> the features left unknown.

        ``columns``: for a table, the columns provided (present, not entirely null:
        :func:`features.build.provided_columns`); for a request, the fields it sends."""
        have = set(columns)
        return {key: feats for key, feats in self.inputs.items() if not have.intersection(key.split("|"))}

    def check_inputs(self, columns: Iterable[str], allow: Iterable[str] = ()) -> dict[str, list[str]]:
        """Raise :class:`MissingInputs` for inputs missing from ``columns`` and not in ``allow``;
        return those allowed to be missing (to record: their features are scored as unknown).

        ``allow`` names columns (any one of a group allows the group); a name that is not a column
        of the claims schema or an ``x_`` extra is refused, so a typo never allows anything."""
        allowed = set(allow)
        needed, any_of = self._input_sets
        have = columns if isinstance(columns, set | frozenset | KeysView) else set(columns)
        if not allowed and have >= needed and not any(group.isdisjoint(have) for group in any_of):
            return {}  # the usual case, a set comparison: everything the champion uses is there
        unknown = sorted(c for c in allowed if c not in schema.BY_NAME and not c.startswith(schema.EXTRA_PREFIX))
        if unknown:
            raise ClaimScoreError(f"allow missing: not a column of the claims schema: {', '.join(unknown)}")
        missing = self.missing_inputs(columns)
        refused = {k: f for k, f in missing.items() if not allowed.intersection(k.split("|"))}
        if refused:
            raise MissingInputs(refused)
        return missing

    def score_table(self, claims: pd.DataFrame, extras: Mapping[str, object] | None = None) -> pd.DataFrame:
        """One row per claim: scores, route, fired rules and top reasons (JSON lists)."""
        table = build_features(claims, self.features, {**self.extras, **(extras or {})})
        return self.answer_table(claims["claim_id"].to_numpy(), self.score_features(table), index=claims.index)

    def answer_table(self, claim_ids, result: Scored | None, index=None) -> pd.DataFrame:
        """The table :meth:`score_table` answers, for scored claims (``result`` None: no claims,
        the same columns empty); also what each Dask partition answers (:mod:`pipelines.distributed`)."""
        out = pd.DataFrame({"claim_id": claim_ids}, index=index)
        encode = json.JSONEncoder().encode  # reasons hold plain JSON values: one encoder for every row
        for task in self.bundles:
            out[f"{task}_score"] = result.scores[task] if result is not None else np.empty(0)
            out[f"{task}_reasons"] = [encode(r) for r in result.reasons[task]] if result is not None else []
        out["route"] = result.routes if result is not None else []
        out["rules"] = [encode(f) if f else "[]" for f in result.rules] if result is not None else []
        return out

    def score_features(self, table: pd.DataFrame | Columns, reasons: bool = True) -> Scored:
        """Scores, reasons and routes for a feature table: a DataFrame (batch) or the dict of
        arrays that :func:`features.build.build_features` answers for live claims. Without
        ``reasons`` (a shadow policy's what-if), no SHAP values are computed."""
        scores, explained = {}, {}
        for task, bundle in self.bundles.items():
            matrix = bundle.encoder.transform(table)
            scores[task] = bundle.predict(matrix)
            explained[task] = top_reasons(bundle, table, matrix) if reasons else []
        fraud, fast = scores.get("fraud"), scores.get("fast_track")
        if isinstance(table, pd.DataFrame):
            routes, fired = self.policy.route_table(table, fraud, fast)
        else:  # a few live claims: claim by claim, no DataFrame (same answers as route_table)
            names = list(table)
            routed = [
                self.policy.route_one(dict(zip(names, row)), _at(fraud, i), _at(fast, i))
                for i, row in enumerate(zip(*table.values()))
            ]
            routes = np.array([r for r, _ in routed], dtype=object)
            fired = [f for _, f in routed]
        return Scored(scores, explained, routes, fired)


@dataclass
class Scored:
    scores: dict[str, np.ndarray]
    reasons: dict[str, list[list[dict]]]
    routes: np.ndarray
    rules: list[list[str]]


def _at(scores: np.ndarray | None, i: int) -> float | None:
    return None if scores is None else float(scores[i])


def top_reasons(
    bundle: ModelBundle, table: pd.DataFrame | Columns, matrix: np.ndarray, k: int = TOP_REASONS
) -> list[list[dict]]:
    """The ``k`` features pushing each claim's score up the most (exact TreeSHAP, log-odds); a
    claim's reasons do not depend on the other rows of ``matrix``.

    Values and sentences are made feature by feature for the claims that need them (a million claims
    never become a million-by-features matrix of Python objects)."""
    contrib = bundle.explainer.contributions(matrix, stable=True)
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(contrib, order, axis=1)
    keep = top > 0  # a prefix of each row: the order is by decreasing contribution
    names = bundle.features
    values = np.empty(order.shape, dtype=object)
    texts = np.empty(order.shape, dtype=object)
    for j in np.unique(order[keep]):
        at = np.nonzero(keep & (order == j))
        column = table[names[j]]
        picked = column.to_numpy(dtype=object)[at[0]] if isinstance(column, pd.Series) else column[at[0]]
        plain = [
            None
            if v is None or v is pd.NA or (isinstance(v, float) and v != v)
            else (v.item() if isinstance(v, np.generic) else v)
            for v in picked
        ]
        feature = catalog.BY_NAME.get(names[j])
        values[at] = plain
        texts[at] = [
            feature.explain(float("nan") if v is None else v) if feature else f"{names[j]}: {v}" for v in plain
        ]
    counts = keep.sum(axis=1).tolist()
    top_list, order_list, values_list, texts_list = top.tolist(), order.tolist(), values.tolist(), texts.tolist()
    return [
        [
            {"feature": names[o], "value": v, "contribution": c, "text": t}
            for o, v, c, t in zip(order_list[i][:n], values_list[i][:n], top_list[i][:n], texts_list[i][:n])
        ]
        for i, n in enumerate(counts)
    ]

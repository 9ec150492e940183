"""The routing policy: scores and claim facts in, a route and the rules that fired out.

Training chooses the thresholds (``training/routing.py``) and logs the policy with the models as a
versioned JSON file; batch scoring and the service apply it with :meth:`RoutingPolicy.route_table`
(a table) or :meth:`RoutingPolicy.route_one` (one claim), which give the same answers.

Precedence: ``siu_referral`` (fraud score at or above the SIU threshold, or a referral rule) beats
``specialist`` (large loss, high severity, or a specialist rule) beats ``fast_track`` (likely to
settle simply, unlikely to be fraud, small) beats ``standard``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

ROUTES = ("fast_track", "standard", "specialist", "siu_referral")
POLICY_VERSION = 1


@dataclass(frozen=True)
class Rule:
    name: str
    when: str
    """An expression over feature names: comparisons, arithmetic, ``and``/``or``/``not``."""
    route: str


@dataclass(frozen=True)
class RoutingPolicy:
    siu_threshold: float | None
    """Fraud score from which a claim is referred (None: no fraud model)."""
    fast_track_threshold: float | None
    """Fast-track score from which a claim may be fast-tracked (None: no fast-track model)."""
    fast_track_max_fraud: float | None
    """Fraud score below which a claim may be fast-tracked (None: not checked)."""
    fast_track_amount_limit: float
    large_loss_limit: float
    specialist_severities: tuple[str, ...]
    rules: tuple[Rule, ...] = ()
    expected_kpis: Mapping[str, float] = field(default_factory=dict)
    """What the policy did on the test period: fast-track rate, fraud caught, hit rate, leakage."""
    version: int = POLICY_VERSION

    # --- a table -------------------------------------------------------------------------------
    def route_table(self, table: pd.DataFrame, fraud: np.ndarray | None, fast: np.ndarray | None
                    ) -> tuple[np.ndarray, list[list[str]]]:
        """Routes and fired rule names for every row of a feature table (needs ``claimed_amount``
        and ``incident_severity`` columns where present)."""
        n = len(table)
        fired = {r.name: self._rule_mask(r, table) for r in self.rules}
        amount = _column(table, "claimed_amount")
        severity = table["incident_severity"].astype("str").to_numpy() if "incident_severity" in table else np.full(n, "")
        siu = np.zeros(n, bool)
        if fraud is not None and self.siu_threshold is not None:
            siu |= np.asarray(fraud) >= self.siu_threshold
        special = (amount > self.large_loss_limit) | np.isin(severity, self.specialist_severities)
        blocked = np.zeros(n, bool)
        for r in self.rules:
            {"siu_referral": siu, "specialist": special, "standard": blocked}[r.route][...] |= fired[r.name]
        fast = self._fast_mask(fraud, fast, amount) & ~blocked
        routes = np.select([siu, special, fast], ["siu_referral", "specialist", "fast_track"], "standard")
        names = [[r.name for r in self.rules if fired[r.name][i]] for i in range(n)]
        return routes, names

    def _fast_mask(self, fraud, fast, amount) -> np.ndarray:
        if fast is None or self.fast_track_threshold is None:
            return np.zeros(len(amount), bool)
        ok = (np.asarray(fast) >= self.fast_track_threshold) & (amount <= self.fast_track_amount_limit)
        if fraud is not None and self.fast_track_max_fraud is not None:
            ok &= np.asarray(fraud) < self.fast_track_max_fraud
        return ok

    @staticmethod
    def _rule_mask(rule: Rule, table: pd.DataFrame) -> np.ndarray:
        out = table.eval(rule.when, engine="python")
        return np.asarray(pd.Series(out).fillna(False), dtype=bool)

    # --- one claim ------------------------------------------------------------------------------
    def route_one(self, values: Mapping[str, Any], fraud: float | None, fast: float | None) -> tuple[str, list[str]]:
        """The route of one claim from its feature values (a dict); same answer as ``route_table``."""
        fired = [r for r in self.rules if _eval_scalar(r.when, values)]
        amount = _float(values.get("claimed_amount"))
        severity = values.get("incident_severity")
        if (fraud is not None and self.siu_threshold is not None and fraud >= self.siu_threshold) or any(
                r.route == "siu_referral" for r in fired):
            route = "siu_referral"
        elif amount > self.large_loss_limit or severity in self.specialist_severities or any(
                r.route == "specialist" for r in fired):
            route = "specialist"
        elif (fast is not None and self.fast_track_threshold is not None and fast >= self.fast_track_threshold
              and amount <= self.fast_track_amount_limit
              and not (fraud is not None and self.fast_track_max_fraud is not None and fraud >= self.fast_track_max_fraud)
              and not any(r.route == "standard" for r in fired)):
            route = "fast_track"
        else:
            route = "standard"
        return route, [r.name for r in fired]

    # --- files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["rules"] = [asdict(r) for r in self.rules]
        d["specialist_severities"] = list(self.specialist_severities)
        d["expected_kpis"] = dict(self.expected_kpis)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "RoutingPolicy":
        d = dict(d)
        d["rules"] = tuple(Rule(**r) for r in d.get("rules", ()))
        d["specialist_severities"] = tuple(d.get("specialist_severities", ()))
        return cls(**d)


def _column(table: pd.DataFrame, name: str) -> np.ndarray:
    if name not in table:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _float(v: Any) -> float:
    try:
        return float("nan") if v is None else float(v)
    except (TypeError, ValueError):
        return float("nan")


@functools.lru_cache(maxsize=256)
def _compiled(expr: str):
    return compile(expr, "<rule>", "eval")


def _eval_scalar(expr: str, values: Mapping[str, Any]) -> bool:
    """Evaluate a rule for one claim; unknown values (None/NaN) make comparisons false, as in pandas."""
    names = {k: (math.nan if v is None else v) for k, v in values.items()}
    try:
        return bool(eval(_compiled(expr), {"__builtins__": {}}, names))  # noqa: S307 - rule text is config
    except (TypeError, NameError):
        return False


def check_rules(rules: Sequence[Rule], feature_names: Sequence[str]) -> None:
    """Refuse rules that name unknown features or routes (at training time, not at scoring time)."""
    import ast

    for r in rules:
        if r.route not in ROUTES:
            raise ValueError(f"rule '{r.name}': unknown route '{r.route}'")
        try:
            tree = ast.parse(r.when, mode="eval")
        except SyntaxError as exc:
            raise ValueError(f"rule '{r.name}': cannot read '{r.when}': {exc.msg}") from None
        unknown = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(feature_names)
        if unknown:
            raise ValueError(f"rule '{r.name}' names unknown feature(s): {', '.join(sorted(unknown))}")

"""The routing policy: scores and claim facts in, a route and the rules that fired out.

Training chooses the thresholds (``training/routing.py``) and logs the policy with the models as a
versioned JSON file; batch scoring and the service apply it with :meth:`RoutingPolicy.route_table`
(a table) or :meth:`RoutingPolicy.route_one` (one claim), which give the same answers.

A rule names features; a rule whose names the policy's inputs lack, or whose route or expression
is unknown, is refused with a :class:`PolicyError` naming it, when the policy is built and when it is
loaded: a typo never quietly switches a referral rule off.

Precedence: ``siu_referral`` (fraud score at or above the SIU threshold, or a referral rule) beats
``specialist`` (large loss, high severity, or a specialist rule) beats ``fast_track`` (likely to
settle simply, unlikely to be fraud, small) beats ``standard``.
"""

from __future__ import annotations

import ast
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import ClaimScoreError

ROUTES = ("fast_track", "standard", "specialist", "siu_referral")
RULE_ROUTES = ("siu_referral", "specialist", "standard")
ROUTING_FIELDS = ("claimed_amount", "incident_severity")
"""Features the thresholds read besides the scores (large loss, severity, fast-track amount)."""
POLICY_VERSION = 2


class PolicyError(ClaimScoreError):
    """A routing rule or policy that cannot be applied as written."""


@dataclass(frozen=True)
class Rule:
    name: str
    when: str
    """An expression over feature names: comparisons, arithmetic, ``and``/``or``/``not``."""
    route: str

    def __post_init__(self) -> None:
        if self.route not in RULE_ROUTES:
            raise PolicyError(
                f"routing rule '{self.name}': unknown route '{self.route}' (one of {', '.join(RULE_ROUTES)})"
            )
        self.names  # noqa: B018 - parses the expression now, so a bad one is refused here

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """The feature names the rule's expression reads."""
        try:
            tree = ast.parse(self.when, mode="eval")
        except SyntaxError as exc:
            raise PolicyError(f"routing rule '{self.name}': cannot read '{self.when}': {exc.msg}") from None
        return frozenset(n.id for n in ast.walk(tree) if isinstance(n, ast.Name))


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
    inputs: tuple[str, ...] | None = None
    """The features the policy may read (those the training data had); None: not checked."""
    skipped_rules: Mapping[str, str] = field(default_factory=dict)
    """Configured rules left out at training, with why (the source lacks a feature they name)."""
    version: int = POLICY_VERSION

    def __post_init__(self) -> None:
        if self.inputs is not None:
            self.check(self.inputs)

    def check(self, available: Sequence[str]) -> None:
        """Refuse rules naming a feature outside ``available``, naming the rule and the features."""
        have = set(available)
        for r in self.rules:
            unknown = r.names - have
            if unknown:
                raise PolicyError(
                    f"routing rule '{r.name}' names {', '.join(sorted(unknown))}, which the "
                    f"model's features do not include"
                )

    @property
    def reads(self) -> tuple[str, ...]:
        """Every feature the policy reads: its rules' names and the routing fields it has."""
        names = set(ROUTING_FIELDS if self.inputs is None else set(ROUTING_FIELDS) & set(self.inputs))
        for r in self.rules:
            names |= r.names
        return tuple(sorted(names))

    # --- a table -------------------------------------------------------------------------------
    def route_table(
        self,
        table: pd.DataFrame,
        fraud: np.ndarray | None,
        fast: np.ndarray | None,
        fired: Mapping[str, np.ndarray] | None = None,
        with_names: bool = True,
    ) -> tuple[np.ndarray, list[list[str]]]:
        """Routes and fired rule names for every row of a feature table (needs ``claimed_amount``
        and ``incident_severity`` columns where present). ``fired`` (rule name -> mask) reuses
        the rules' masks of an earlier call on the same table (a backtest's many thresholds);
        without ``with_names`` the fired rules are not listed per row (an empty list)."""
        n = len(table)
        fired = {r.name: fired[r.name] if fired and r.name in fired else rule_mask(r, table) for r in self.rules}
        amount = _column(table, "claimed_amount")
        severity = (
            table["incident_severity"].astype("str").to_numpy() if "incident_severity" in table else np.full(n, "")
        )
        siu = np.zeros(n, bool)
        if fraud is not None and self.siu_threshold is not None:
            siu |= np.asarray(fraud) >= self.siu_threshold
        special = (amount > self.large_loss_limit) | np.isin(severity, self.specialist_severities)
        blocked = np.zeros(n, bool)
        for r in self.rules:
            {"siu_referral": siu, "specialist": special, "standard": blocked}[r.route][...] |= fired[r.name]
        fast = self._fast_mask(fraud, fast, amount) & ~blocked
        routes = np.select([siu, special, fast], ["siu_referral", "specialist", "fast_track"], "standard")
        if not with_names:
            return routes, []
        names = [[r.name for r in self.rules if fired[r.name][i]] for i in range(n)]
        return routes, names

    def _fast_mask(self, fraud, fast, amount) -> np.ndarray:
        if fast is None or self.fast_track_threshold is None:
            return np.zeros(len(amount), bool)
        ok = (np.asarray(fast) >= self.fast_track_threshold) & (amount <= self.fast_track_amount_limit)
        if fraud is not None and self.fast_track_max_fraud is not None:
            ok &= np.asarray(fraud) < self.fast_track_max_fraud
        return ok

    # --- one claim ------------------------------------------------------------------------------
    def route_one(self, values: Mapping[str, Any], fraud: float | None, fast: float | None) -> tuple[str, list[str]]:
        """The route of one claim from its feature values (a dict); same answer as ``route_table``."""
        fired = [r for r in self.rules if _eval_scalar(r, values)]
        amount = _float(values.get("claimed_amount"))
        severity = values.get("incident_severity")
        if (fraud is not None and self.siu_threshold is not None and fraud >= self.siu_threshold) or any(
            r.route == "siu_referral" for r in fired
        ):
            route = "siu_referral"
        elif (
            amount > self.large_loss_limit
            or severity in self.specialist_severities
            or any(r.route == "specialist" for r in fired)
        ):
            route = "specialist"
        elif (
            fast is not None
            and self.fast_track_threshold is not None
            and fast >= self.fast_track_threshold
            and amount <= self.fast_track_amount_limit
            and not (fraud is not None and self.fast_track_max_fraud is not None and fraud >= self.fast_track_max_fraud)
            and not any(r.route == "standard" for r in fired)
        ):
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
        d["skipped_rules"] = dict(self.skipped_rules)
        d["inputs"] = None if self.inputs is None else list(self.inputs)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> RoutingPolicy:
        d = dict(d)
        d["rules"] = tuple(Rule(**r) for r in d.get("rules", ()))
        d["specialist_severities"] = tuple(d.get("specialist_severities", ()))
        if d.get("inputs") is not None:
            d["inputs"] = tuple(d["inputs"])
        return cls(**d)


def load_policy(path: str | Path) -> RoutingPolicy:
    """A routing policy file (``routing_policy.json`` as training logs it, ``policy.json`` as
    ``claimscore backtest --optimise`` writes it); :class:`PolicyError` naming the file otherwise."""
    try:
        return RoutingPolicy.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise PolicyError(f"policy file {path} does not exist") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"policy file {path} is not valid JSON: {exc}") from None
    except (TypeError, AttributeError) as exc:
        raise PolicyError(f"policy file {path} is not a routing policy: {exc}") from None


def rule_mask(rule: Rule, table: pd.DataFrame) -> np.ndarray:
    """Where ``rule`` fires on a feature table (unknown values make comparisons false)."""
    missing = rule.names - set(table.columns)
    if missing:
        raise PolicyError(
            f"routing rule '{rule.name}' names {', '.join(sorted(missing))}, which the feature table lacks"
        )
    out = table.eval(rule.when, engine="python")
    return np.asarray(pd.Series(out).fillna(False), dtype=bool)


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


def _eval_scalar(rule: Rule, values: Mapping[str, Any]) -> bool:
    """Evaluate a rule for one claim; unknown values (None/NaN) make comparisons false, as in pandas."""
    missing = rule.names - values.keys()
    if missing:
        raise PolicyError(
            f"routing rule '{rule.name}' names {', '.join(sorted(missing))}, which the claim's features lack"
        )
    names = {k: (math.nan if v is None else v) for k, v in values.items()}
    return bool(eval(_compiled(rule.when), {"__builtins__": {}}, names))  # noqa: S307 - rule text is config

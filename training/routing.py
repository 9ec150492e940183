"""Choose routing thresholds on validation claims from the insurer's constraints, and measure them.

- SIU threshold: the highest-scoring claims are referred until referrals (rules included) reach the
  investigations unit's capacity.
- Fast track: among small claims not referred, the most permissive pair (fast-track score from,
  fraud score below) whose confirmed-fraud rate among fast-tracked claims stays within the leakage
  cap. Without a fraud label (a source with only settlement outcomes) leakage cannot be measured:
  the fast-track threshold is then the configured minimum score, and the policy says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.routing import Rule, RoutingPolicy
from training.config import RoutingConfig


def choose_policy(cfg: RoutingConfig, table: pd.DataFrame, fraud: np.ndarray | None, fast: np.ndarray | None,
                  y_fraud: np.ndarray | None) -> RoutingPolicy:
    """A policy meeting ``cfg`` on the validation ``table`` (features) and its scores and labels."""
    rules = tuple(Rule(r.name, r.when, r.route) for r in cfg.rules if _usable(r.when, table))
    base = RoutingPolicy(None, None, None, cfg.fast_track_amount_limit, cfg.large_loss_limit,
                         tuple(cfg.specialist_severities), rules)
    routes, _ = base.route_table(table, None, None)
    rule_referred = routes == "siu_referral"
    siu = None
    if fraud is not None:
        room = max(cfg.siu_capacity - rule_referred.mean(), 0.0)
        candidates = np.sort(fraud[~rule_referred])[::-1]
        k = int(np.floor(room * len(fraud)))
        siu = float(candidates[k - 1]) if 0 < k <= len(candidates) else float(np.inf)
        # ties at the threshold could overshoot capacity: move just above them if they do
        if k and ((fraud >= siu) | rule_referred).mean() > cfg.siu_capacity:
            siu = float(np.nextafter(siu, np.inf))
    ft, ft_max = None, None
    if fast is not None:
        ft = cfg.fast_track_min_score
        if fraud is not None and y_fraud is not None:
            ft, ft_max = _fast_track_pair(cfg, table, fraud, fast, y_fraud, siu, base)
    return RoutingPolicy(siu, ft, ft_max, cfg.fast_track_amount_limit, cfg.large_loss_limit,
                         tuple(cfg.specialist_severities), rules)


def _usable(expr: str, table: pd.DataFrame) -> bool:
    """A rule applies only where the source has the features it names."""
    import ast

    names = {n.id for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Name)}
    return names <= set(table.columns)


def _fast_track_pair(cfg, table, fraud, fast, y_fraud, siu, base) -> tuple[float, float]:
    # what the fast-track thresholds cannot change: referrals, specialist claims, rule blocks, amounts
    routes, _ = RoutingPolicy(siu, np.inf, None, base.fast_track_amount_limit, base.large_loss_limit,
                              base.specialist_severities, base.rules).route_table(table, fraud, fast)
    standard_rule = np.zeros(len(table), bool)
    for r in base.rules:
        if r.route == "standard":
            standard_rule |= RoutingPolicy._rule_mask(r, table)
    amount = pd.to_numeric(table["claimed_amount"], errors="coerce").to_numpy() if "claimed_amount" in table \
        else np.full(len(table), np.nan)
    eligible = (routes == "standard") & ~standard_rule & (amount <= base.fast_track_amount_limit)
    best = (cfg.fast_track_min_score, 0.0, -1.0)  # (threshold, max fraud, fast-track rate)
    above = fast >= cfg.fast_track_min_score
    ft_grid = np.unique(np.quantile(fast[above], np.linspace(0, 0.95, 25))) if above.any() \
        else np.array([cfg.fast_track_min_score])
    fr_grid = np.unique(np.quantile(fraud, np.linspace(0.2, 0.995, 25)))
    for ft in ft_grid:
        base_ok = eligible & (fast >= ft)
        for fmax in fr_grid:
            chosen = base_ok & (fraud < fmax)
            if chosen.any() and y_fraud[chosen].mean() <= cfg.fast_track_leakage_cap and chosen.mean() > best[2]:
                best = (float(ft), float(fmax), float(chosen.mean()))
    if best[2] < 0:  # nothing meets the cap: fast-track nobody rather than leak
        return float(np.inf), 0.0
    return best[0], best[1]


def routing_kpis(policy: RoutingPolicy, table: pd.DataFrame, fraud: np.ndarray | None, fast: np.ndarray | None,
                 y_fraud: np.ndarray | None) -> dict[str, float]:
    """Route shares, and where the fraud label exists: fraud caught, SIU hit rate, fast-track leakage."""
    routes, _ = policy.route_table(table, fraud, fast)
    out = {f"share_{r}": float((routes == r).mean()) for r in ("fast_track", "standard", "specialist", "siu_referral")}
    if y_fraud is not None and len(y_fraud):
        referred, fast_tracked = routes == "siu_referral", routes == "fast_track"
        out["fraud_caught"] = float(y_fraud[referred].sum() / y_fraud.sum()) if y_fraud.sum() else float("nan")
        out["siu_hit_rate"] = float(y_fraud[referred].mean()) if referred.any() else float("nan")
        out["fast_track_leakage"] = float(y_fraud[fast_tracked].mean()) if fast_tracked.any() else 0.0
    return out

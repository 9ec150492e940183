"""Choose routing thresholds on validation claims from the insurer's constraints, and measure them.

- SIU threshold: the highest-scoring claims are referred until referrals (rules included) reach the
  investigations unit's capacity.
- Fast track: among small claims not referred, the most permissive pair (fast-track score from,
  fraud score below) whose confirmed-fraud rate among fast-tracked claims stays within the leakage
  cap (the rate among those with a fraud outcome: a claim without one, NaN, is no negative).
  Without a fraud label (a source with only settlement outcomes) leakage cannot be measured: the
  fast-track threshold is then the configured minimum score, and the policy says so.
- Rules: a rule naming a feature the catalog does not know is a typo and refused (naming it); a rule
  naming a catalog feature this source cannot build is left out, and the policy records why
  (``skipped_rules``: printed by ``claimscore train``, logged with the run, shown by ``GET /model``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from features import catalog
from features.errors import ConfigError
from serving.model.routing import ROUTING_FIELDS, PolicyError, RoutingPolicy, Rule, rule_mask
from training.config import RoutingConfig


def choose_policy(
    cfg: RoutingConfig,
    table: pd.DataFrame,
    fraud: np.ndarray | None,
    fast: np.ndarray | None,
    y_fraud: np.ndarray | None,
) -> RoutingPolicy:
    """A policy meeting ``cfg`` on the validation ``table`` (features) and its scores and labels."""
    rules, skipped = usable_rules(cfg, table.columns)
    inputs = tuple(c for c in table.columns)
    base = RoutingPolicy(
        None,
        None,
        None,
        cfg.fast_track_amount_limit,
        cfg.large_loss_limit,
        tuple(cfg.specialist_severities),
        rules,
        inputs=inputs,
        skipped_rules=skipped,
    )
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
    return dataclasses.replace(base, siu_threshold=siu, fast_track_threshold=ft, fast_track_max_fraud=ft_max)


def usable_rules(cfg: RoutingConfig, available) -> tuple[tuple[Rule, ...], dict[str, str]]:
    """The configured rules this source's features can evaluate, and why the others are left out.

    A name that is no feature at all (not in the catalog, not one of the source's extras) raises
    :class:`ConfigError` naming the rule, the name and the closest feature names."""
    import difflib

    have = set(available)
    known = set(catalog.BY_NAME) | have | set(ROUTING_FIELDS)
    rules, skipped = [], {}
    for r in cfg.rules:
        try:
            rule = Rule(r.name, r.when, r.route)
        except PolicyError as exc:
            raise ConfigError(f"training config: routing.rules: {exc}") from None
        unknown = sorted(rule.names - known)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(known), n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise ConfigError(
                f"training config: routing rule '{r.name}' names unknown feature(s) {', '.join(unknown)}{hint}"
            )
        lacking = sorted(rule.names - have)
        if lacking:
            skipped[r.name] = f"this source has no {', '.join(lacking)}"
        else:
            rules.append(rule)
    return tuple(rules), skipped


def _fast_track_pair(cfg, table, fraud, fast, y_fraud, siu, base) -> tuple[float, float]:
    # what the fast-track thresholds cannot change: referrals, specialist claims, rule blocks, amounts
    routes, _ = RoutingPolicy(
        siu,
        np.inf,
        None,
        base.fast_track_amount_limit,
        base.large_loss_limit,
        base.specialist_severities,
        base.rules,
        inputs=base.inputs,
    ).route_table(table, fraud, fast)
    standard_rule = np.zeros(len(table), bool)
    for r in base.rules:
        if r.route == "standard":
            standard_rule |= rule_mask(r, table)
    amount = (
        pd.to_numeric(table["claimed_amount"], errors="coerce").to_numpy()
        if "claimed_amount" in table
        else np.full(len(table), np.nan)
    )
    eligible = (routes == "standard") & ~standard_rule & (amount <= base.fast_track_amount_limit)
    best = (cfg.fast_track_min_score, 0.0, -1.0)  # (threshold, max fraud, fast-track rate)
    above = fast >= cfg.fast_track_min_score
    ft_grid = (
        np.unique(np.quantile(fast[above], np.linspace(0, 0.95, 25)))
        if above.any()
        else np.array([cfg.fast_track_min_score])
    )
    fr_grid = np.unique(np.quantile(fraud, np.linspace(0.2, 0.995, 25)))
    labelled = ~np.isnan(y_fraud)  # leakage is measured on claims whose fraud outcome is known
    for ft in ft_grid:
        base_ok = eligible & (fast >= ft)
        for fmax in fr_grid:
            chosen = base_ok & (fraud < fmax)
            known = chosen & labelled
            if known.any() and y_fraud[known].mean() <= cfg.fast_track_leakage_cap and chosen.mean() > best[2]:
                best = (float(ft), float(fmax), float(chosen.mean()))
    if best[2] < 0:  # nothing meets the cap: fast-track nobody rather than leak
        return float(np.inf), 0.0
    return best[0], best[1]

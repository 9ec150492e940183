"""A routing backtest end to end: the champion (and the challenger) from the registry, a labelled
table replayed under each policy (:mod:`monitoring.backtest`), the side-by-side table, a sweep of
thresholds with its frontiers and the cheapest policy within the constraints, as ``backtest.json``,
``report.html`` and ``policy.json`` (the optimised policy, in the format training writes).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.config import Settings
from features.errors import ClaimScoreError
from monitoring import backtest as bt
from monitoring.costs import CostModel
from serving.model.routing import RoutingPolicy


class BacktestError(ClaimScoreError):
    """A policy or option the backtest cannot use as given."""


def run_backtest(
    settings: Settings,
    data: str | None,
    source: str,
    costs: CostModel,
    *,
    policies: list[tuple[str, RoutingPolicy]] = (),
    challenger: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    capacity_per_week: float | None = None,
    leakage_cap: float | None = None,
    cycle_days: float | None = None,
    sweep: bool = False,
    steps: int = 5,
) -> bt.BacktestResult:
    from features.build import build_features
    from features.data.sources import load_claims
    from serving.model.scorer import Scorer

    champion = Scorer.from_registry(settings)
    models = {"champion": champion}
    if challenger:
        models["challenger"] = Scorer.from_registry(settings, alias="challenger")
    loaded = load_claims(data, source, settings)
    claims = loaded.frame.reset_index(drop=True)
    names = list(dict.fromkeys(f for m in models.values() for f in m.features))
    for _, policy in policies:
        names += [f for f in policy.reads if f not in names]
    table = build_features(claims, names, {**champion.extras, **loaded.extras})
    keep = _window(claims, since, until)
    claims, table = claims[keep].reset_index(drop=True), table[keep].reset_index(drop=True)
    if not len(claims):
        raise BacktestError("no claims to replay in the table's window (check --since/--until)")
    scores = {name: m.score_features(table, reasons=False).scores for name, m in models.items()}
    scenarios = [bt.Scenario(f"champion v{champion.versions.get('fraud', '?')}", champion.policy, "champion")]
    if challenger:
        c = models["challenger"]
        scenarios.append(bt.Scenario(f"challenger v{c.versions.get('fraud', '?')}", c.policy, "challenger"))
        scenarios.append(bt.Scenario("challenger model, champion policy", champion.policy, "challenger"))
    for name, policy in policies:
        policy.check(list(table.columns))
        scenarios.append(bt.Scenario(name, policy, "champion"))
    reference = next((b.reference for b in champion.bundles.values() if b.reference), None) or {}
    extra = reference.get("extra", {})
    book = bt.make_book(
        claims, table, scores, [s.policy for s in scenarios], costs, float(extra.get("red_flag_score", 1.0))
    )
    if capacity_per_week is None and "siu_capacity" in extra:
        capacity_per_week = float(extra["siu_capacity"]) * len(book) / book.weeks
    constraints = bt.Constraints(
        capacity_per_week, leakage_cap if leakage_cap is not None else extra.get("fast_track_leakage_cap"), cycle_days
    )
    table_out = bt.compare(book, scenarios, costs, capacity_per_week)
    swept = best = best_row = None
    if sweep:
        grid = bt.grid(book, champion.policy, "champion", steps)
        swept = bt.sweep(book, grid, "champion", costs, constraints)
        found = bt.optimise(swept, grid)
        if found is not None:
            best, best_row = found
            best = dataclasses.replace(best, expected_kpis={})
    return bt.BacktestResult(table_out, swept, best, best_row, constraints, book)


def run_log_backtest(
    settings: Settings,
    costs: CostModel,
    *,
    policies: list[tuple[str, RoutingPolicy]] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    capacity_per_week: float | None = None,
) -> bt.BacktestResult:
    """A window of the decision log with the outcomes known now: the champion's live decisions,
    what the service's shadow (``Settings.shadow``) decided for the same claims where it ran one,
    and ``policies`` applied to the features and scores the decisions were made with."""
    from pipelines.monitoring import log_window
    from serving.model.scorer import Scorer

    champion = Scorer.from_registry(settings)
    win = log_window(champion, settings, since, until)
    if not len(win):
        raise BacktestError("no decisions to compare in the decision log's window (check --since/--until)")
    shadowed = np.array([r is not None for r in win.shadow["routes"]]) if win.shadow else np.zeros(len(win), bool)
    if not shadowed.any() and not policies:
        raise BacktestError(
            "no decision in the window carries a shadow's and no policy was given: run the service with a "
            "shadow (CLAIMSCORE_SHADOW=challenger or a policy file), or give --policy / --set"
        )
    keep = np.flatnonzero(shadowed) if shadowed.any() else np.arange(len(win))
    claims, features = win.claims.iloc[keep].reset_index(drop=True), win.features.iloc[keep].reset_index(drop=True)
    scores = {"champion": {t: v[keep] for t, v in win.scores.items()}}
    if shadowed.any():
        scores["shadow"] = {t: v[keep] for t, v in win.shadow["scores"].items()}
    for _, policy in policies:
        policy.check(list(features.columns))
    reference = next((b.reference for b in champion.bundles.values() if b.reference), None) or {}
    extra = reference.get("extra", {})
    book = bt.make_book(
        claims, features, scores, [champion.policy, *(p for _, p in policies)], costs,
        float(extra.get("red_flag_score", 1.0)),
    )  # fmt: skip
    if capacity_per_week is None and "siu_capacity" in extra:
        capacity_per_week = float(extra["siu_capacity"]) * len(book) / book.weeks
    flagged = book.flagged["champion"]
    rows = [
        {"policy": "champion (live)", "model": "champion",
         **bt.figures(book, win.routes[keep].astype(str), flagged, costs, capacity_per_week)},
    ]  # fmt: skip
    if shadowed.any():
        routes = win.shadow["routes"][keep].astype(str)
        rows.append(
            {"policy": f"shadow ({win.shadow['version']})", "model": "shadow",
             **bt.figures(book, routes, book.flagged["shadow"], costs, capacity_per_week)}
        )  # fmt: skip
    for name, policy in policies:
        rows.append(
            {
                "policy": name,
                "model": "champion",
                **bt.evaluate(book, bt.Scenario(name, policy, "champion"), costs, capacity_per_week),
            }
        )
    table = pd.DataFrame(rows)
    table["cost_change"] = table["cost_total"] - table["cost_total"].iloc[0]
    base = table["cost_total"].iloc[0]
    table["cost_change_share"] = table["cost_change"] / base if base else np.nan
    return bt.BacktestResult(table, None, None, None, bt.Constraints(capacity_per_week), book)


SETTABLE = {
    "siu_threshold": float,
    "fast_track_threshold": float,
    "fast_track_max_fraud": float,
    "fast_track_amount_limit": float,
    "large_loss_limit": float,
}


def policy_with(base: RoutingPolicy, text: str) -> tuple[str, RoutingPolicy]:
    """``"key=value,key=value"`` (optionally ``name:`` first) applied to ``base``."""
    name, _, assignments = text.rpartition(":") if ":" in text else ("", "", text)
    changes = {}
    for part in filter(None, (p.strip() for p in assignments.split(","))):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in SETTABLE:
            raise BacktestError(f"--set '{part}': use key=value with a key of {', '.join(SETTABLE)}")
        try:
            changes[key.strip()] = SETTABLE[key.strip()](value)
        except ValueError:
            raise BacktestError(f"--set '{part}': '{value}' is not a number") from None
    if not changes:
        raise BacktestError(f"--set '{text}': no threshold given")
    return name or ", ".join(f"{k}={v:g}" for k, v in changes.items()), dataclasses.replace(base, **changes)


def write_outputs(result: bt.BacktestResult, folder: Path) -> list[Path]:
    from monitoring.backtest_report import write_report

    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "policies": _records(result.table),
        "constraints": dataclasses.asdict(result.constraints),
        "sweep": _records(result.swept) if result.swept is not None else None,
        "optimised": _records(pd.DataFrame([result.best_row])) if result.best_row is not None else None,
    }
    written = [folder / "backtest.json"]
    written[0].write_text(json.dumps(payload, indent=1, allow_nan=False), encoding="utf-8")
    if result.best is not None:
        written.append(folder / "policy.json")
        written[-1].write_text(json.dumps(result.best.to_dict(), indent=2), encoding="utf-8")
    written.append(write_report(result, folder))
    return written


def _records(frame: pd.DataFrame) -> list[dict]:
    return [
        {
            k: (None if isinstance(v, float) and not np.isfinite(v) else (v.item() if hasattr(v, "item") else v))
            for k, v in row.items()
        }
        for row in frame.to_dict("records")
    ]


def _window(claims: pd.DataFrame, since: datetime | None, until: datetime | None) -> np.ndarray:
    reported = pd.to_datetime(claims["report_date"])
    keep = np.ones(len(claims), dtype=bool)
    if since is not None:
        keep &= (reported >= pd.Timestamp(since).tz_convert(None)).to_numpy()
    if until is not None:
        keep &= (reported < pd.Timestamp(until).tz_convert(None)).to_numpy()
    return keep

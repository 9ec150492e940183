"""The loop a data scientist schedules, as one run: ``claimscore retrain``.

1. **read** the matured labels: the claim history store (``--source history``, the default: every
   outcome recorded by claim systems and investigators) or a table;
2. **validate and train** a challenger (:func:`training.pipeline.train`: the great-expectations
   suite, the time-ordered split, calibration, routing thresholds, the poisoning checks against
   the champion's data);
3. **backtest** the challenger against the champion on the challenger's test period: each model
   under its own policy, and the challenger under the champion's policy
   (:func:`pipelines.backtest.run_backtest`);
4. **promote or refuse** (:func:`training.registry.promote`): better on the same claims by the
   configured margin, routes as fair as the champion's, no data or behaviour moved beyond the
   poisoning limits; every reason is printed and kept;
5. **monitor** the champion (the new one, or the one kept) on the latest period
   (:func:`pipelines.monitoring.run_monitoring`).

Everything goes to ``--out`` (``retrain.json`` with every step's outcome, the backtest and the
monitoring report) and to the MLflow run of the training. :func:`retrain` returns the summary; the
command exits 0 when the challenger was promoted and :data:`REFUSED` when it was refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.config import Settings

REFUSED = 4
"""``claimscore retrain``'s exit code when the challenger was trained but not promoted (a normal
outcome a scheduler can branch on, unlike an error: 1 or 2)."""
SUMMARY_FILE = "retrain.json"


@dataclass
class RetrainSummary:
    promoted: bool
    challenger: dict[str, str]
    """Model name -> the challenger's version."""
    reasons: list[str]
    """Why it was refused (empty when promoted): each model's verdict, fairness, moved data."""
    comparison: list[dict[str, Any]]
    backtest: list[dict[str, Any]]
    """Per policy: fraud caught (estimated), SIU referrals a week, fast-track share, total cost."""
    poisoning: list[str]
    monitoring: dict[str, Any]
    periods: dict[str, str]
    out: str
    started: str
    notes: list[str] = field(default_factory=list)


def retrain(
    settings: Settings,
    data: str | None,
    source: str,
    out: Path,
    *,
    training_config=None,
    by: str = "scheduled",
    reason: str = "claimscore retrain",
    override: str | None = None,
    on_step: Callable[[str], None] = lambda _: None,
) -> RetrainSummary:
    from monitoring.config import MonitorConfig
    from monitoring.costs import CostModel
    from pipelines.backtest import run_backtest, write_outputs
    from pipelines.monitoring import run_monitoring
    from training import registry
    from training.config import resolve_training_config
    from training.pipeline import train

    started = datetime.now().isoformat(timespec="seconds")
    out.mkdir(parents=True, exist_ok=True)
    cfg = training_config
    if cfg is None:
        cfg, _ = resolve_training_config(source, None)
    registry.configure(settings)
    had_champion = any(registry.version_for(t, registry.CHAMPION) for t in registry.MODEL_NAMES)

    on_step("validate and train a challenger")
    result = train(data, source, settings, cfg)
    challenger = {result.models[t].name: str(result.models[t].version) for t in result.models}
    test_start = pd.Timestamp(result.periods["test"].split(" to ")[0], tz="UTC").to_pydatetime()
    notes = list(result.notes)

    backtest: list[dict[str, Any]] = []
    if had_champion:
        on_step("backtest the challenger against the champion")
        bt = run_backtest(settings, data, source, CostModel(), challenger=True, since=test_start)
        write_outputs(bt, out / "backtest")
        keep = (
            "policy",
            "siu_per_week",
            "fraud_caught_estimated",
            "leakage_estimated",
            "share_fast_track",
            "cost_total",
            "cost_change",
        )
        for row in bt.table.to_dict("records"):
            backtest.append({k: _plain(row[k]) for k in keep if k in row})
    else:
        notes.append("no champion yet: nothing to backtest against; the challenger is promoted as the first champion")

    on_step("promote or refuse")
    reasons: list[str] = []
    try:
        rows = registry.promote_as_configured(cfg, by, reason, override)
        promoted = True
    except registry.PromotionRefused as refused:
        promoted, rows = False, []
        reasons = [line for line in str(refused).splitlines()[1:] if line.strip()]

    on_step("monitor the champion on the latest period")
    summary, folder = run_monitoring(
        settings, MonitorConfig(), out=out / "monitoring", window=(test_start, None), data=data, source=source
    )
    monitoring = {"folder": str(folder), "alerts": [a.message for a in summary.alerts]}
    result_summary = RetrainSummary(
        promoted=promoted,
        challenger=challenger,
        reasons=reasons,
        comparison=[{k: _plain(v) for k, v in r.items()} for r in rows],
        backtest=backtest,
        poisoning=list(result.poisoning),
        monitoring=monitoring,
        periods=result.periods,
        out=str(out),
        started=started,
        notes=notes,
    )
    (out / SUMMARY_FILE).write_text(json.dumps(asdict(result_summary), indent=2, default=str) + "\n")
    return result_summary


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value

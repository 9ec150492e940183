"""One monitoring run: a window of decisions against the champion's reference, every section, and the
alerts; :class:`Summary` is what ``summary.json`` holds and what the report, the service's gauges
and the workbench's monitoring page read.

Sections: drift (features, scores, routes, multivariate), live data quality, performance as labels
arrive, fairness by group, and the insurer's KPIs. Each adds its alerts; a run with any alert makes
``claimscore monitor`` exit 3.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.config import MONITORING_REPORT_FILE, MONITORING_SUMMARY_FILE
from monitoring import drift, fairness, kpis, performance, quality
from monitoring.alerts import Alert
from monitoring.config import MonitorConfig
from monitoring.reference import Reference
from monitoring.window import Window

SUMMARY_FILE, REPORT_FILE = MONITORING_SUMMARY_FILE, MONITORING_REPORT_FILE
RED_FLAG_QUANTILE = 0.9
DEFAULT_CAPACITY = 0.03
DEFAULT_LEAKAGE_CAP = 0.004


@dataclass
class Summary:
    data: dict[str, Any]
    alerts: list[Alert] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 3 if self.alerts else 0

    def to_dict(self) -> dict[str, Any]:
        return _plain({**self.data, "alerts": [a.to_dict() for a in self.alerts]})

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / SUMMARY_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False), encoding="utf-8")
        tmp.replace(path)
        return path


def monitor(
    window: Window,
    reference: Reference,
    cfg: MonitorConfig,
    report_dir: Path,
    on_stage: Callable[[str], None] = lambda _: None,
) -> Summary:
    """Every section of a monitoring run over ``window``; the quality report is written to
    ``report_dir``. ``on_stage`` is called with each section's name as it finishes."""
    alerts: list[Alert] = []
    extra = reference.extra or {}
    capacity = float(extra.get("siu_capacity", DEFAULT_CAPACITY))

    feature_rows = drift.feature_drift(reference, window.features, cfg.drift)
    score_rows = drift.score_drift(reference, window.scores, cfg.drift)
    route_rows = drift.route_shift(reference, window.routes, cfg.drift)
    multivariate = drift.multivariate_drift(reference, window.features, cfg.drift, window.reconstruction_errors)
    alerts += drift.drift_alerts(feature_rows, score_rows, route_rows, multivariate, cfg.drift)
    on_stage("drift")

    if window.quality_parts is not None:
        checked = quality.from_parts(window.quality_parts, report_dir)
    else:
        checked = quality.quality(window.claims, report_dir)
    alerts += quality.quality_alerts(checked)
    on_stage("quality")

    perf = {}
    for task, p in window.scores.items():
        test = (reference.metrics or {}).get(task, {})
        test_estimated = extra.get("estimated", {}).get(task)
        perf[task] = performance.performance(
            task, p, window.label(task), window.decided_at, capacity, test, cfg.performance, test_estimated
        )
        alerts += performance.performance_alerts(perf[task], cfg.performance)
    on_stage("performance")

    groups = fairness.group_columns(window.claims, cfg.fairness)
    fair = fairness.fairness(groups, window.routes, window.label("fraud"), cfg.fairness)
    alerts += fair.alerts
    on_stage("fairness")

    red_flag = cfg.kpis.red_flag_score
    if red_flag is None:
        red_flag = float(extra.get("red_flag_score", 1.0))
    leakage_cap = cfg.kpis.leakage_cap or float(extra.get("fast_track_leakage_cap", DEFAULT_LEAKAGE_CAP))
    overall = kpis.kpis(window, cfg.kpis, red_flag, capacity=capacity)
    series = kpis.kpi_series(window, cfg.kpis, red_flag)
    alerts += kpis.kpi_alerts(overall, window, cfg.kpis, capacity=capacity, leakage_cap=leakage_cap)
    on_stage("kpis")

    data = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "window": {
            "kind": window.kind,
            "claims": len(window),
            "first_decision": _when(window.decided_at.min()),
            "last_decision": _when(window.decided_at.max()),
            "as_of": _when(window.as_of),
            **window.description,
        },
        "reference": {k: v for k, v in extra.items() if isinstance(v, (str, int, float))},
        "thresholds": cfg.model_dump(mode="json"),
        "drift": {
            "features": feature_rows.to_dict("records"),
            "scores": score_rows.to_dict("records"),
            "routes": route_rows.to_dict("records"),
            "multivariate": multivariate,
            "drifted_share": float(feature_rows["drifted"].mean()) if len(feature_rows) else 0.0,
        },
        "quality": checked,
        "performance": perf,
        "fairness": fair.to_dict(),
        "kpis": {"overall": overall, "series": series.to_dict("records"), "red_flag_score": red_flag},
    }
    return Summary(data, alerts)


RUN_FACTS = (("generated_at",), ("window", "source"), ("quality", "report"))
"""What says when and from what a summary was made rather than what it found: not compared."""


def summary_differences(got: dict, expected: dict, rel_tol: float = 1e-9) -> list[str]:
    """Where two summaries (``summary.json``) of the same window disagree, as paths
    (``drift.features[3].statistic: 0.5 != 0.6``); floats within ``rel_tol``; :data:`RUN_FACTS`
    aside. Empty: the same figures, e.g. a window made on Dask against one made in one process."""
    got, expected = (json.loads(json.dumps(s)) for s in (got, expected))
    for summary in (got, expected):
        for *parents, key in RUN_FACTS:
            node = summary
            for p in parents:
                node = node.get(p, {})
            node.pop(key, None)
    out: list[str] = []
    _differences(got, expected, "summary", rel_tol, out)
    return out


def _differences(got: Any, expected: Any, where: str, rel_tol: float, out: list[str]) -> None:
    if isinstance(expected, dict) and isinstance(got, dict):
        if set(got) != set(expected):
            out.append(f"{where}: keys {sorted(set(got) ^ set(expected))} in one only")
        for k in expected.keys() & got.keys():
            _differences(got[k], expected[k], f"{where}.{k}", rel_tol, out)
    elif isinstance(expected, list) and isinstance(got, list):
        if len(got) != len(expected):
            out.append(f"{where}: {len(got)} items != {len(expected)}")
        for i, (g, e) in enumerate(zip(got, expected)):
            _differences(g, e, f"{where}[{i}]", rel_tol, out)
    elif isinstance(expected, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if not math.isclose(got, expected, rel_tol=rel_tol, abs_tol=1e-12):
            out.append(f"{where}: {got} != {expected}")
    elif got != expected:
        out.append(f"{where}: {got!r} != {expected!r}")


def _when(t: Any) -> str | None:
    return None if t is None or pd.isna(t) else f"{pd.Timestamp(t):%Y-%m-%d %H:%M}"


def _plain(v: Any) -> Any:
    """JSON-able: NaN and NA -> None, numpy scalars -> Python, timestamps -> ISO text."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if isinstance(v, (pd.Timestamp, datetime)):
        return None if pd.isna(v) else v.isoformat()
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    return v

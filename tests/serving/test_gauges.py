"""The latest monitoring run as gauges: a summary's values as series, a run that drops a series, and a
summary that cannot be read (the service's own /metrics is tested in test_monitoring_page.py)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from features.config import Settings
from serving import gauges

SUMMARY = {
    "generated_at": "2026-12-01T10:00:00+00:00",
    "window": {"kind": "decision_log", "claims": 1200, "source": "decision log"},
    "alerts": [
        {"section": "drift", "subject": "claimed_amount", "value": 0.3, "threshold": 0.1, "message": "drift: a"},
        {"section": "drift", "subject": "fraud", "value": 0.2, "threshold": 0.1, "message": "drift: b"},
        {"section": "fairness", "subject": "region=north", "value": 0.7, "threshold": 0.8, "message": "fair: c"},
    ],
    "drift": {
        "features": [
            {
                "feature": "claimed_amount",
                "kind": "numeric",
                "method": "wasserstein",
                "statistic": 0.3,
                "drifted": True,
            },
            {
                "feature": "channel",
                "kind": "categorical",
                "method": "jensen_shannon",
                "statistic": 0.02,
                "drifted": False,
            },
        ],
        "scores": [{"feature": "fraud", "statistic": 0.2, "drifted": True}],
        "routes": [
            {"route": "fast_track", "reference_share": 0.4, "current_share": 0.35, "change": -0.05, "alert": False}
        ],
        "multivariate": {"error": 1.5, "reference_error": 1.4, "threshold": 1.8, "drifted": False},
        "drifted_share": 0.5,
    },
    "performance": {
        "fraud": {"labelled": 300, "maturity": 0.25, "estimated": {"roc_auc": 0.81}, "measured": None, "test": {}},
    },
    "fairness": {"rows": [{"attribute": "region", "group": "north", "metric": "siu_referral_rate", "ratio": 0.7}]},
    "kpis": {"overall": {"fast_track_rate": 0.35, "siu": {"referral_rate": 0.02}, "note": "text"}},
}


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_a_summary_becomes_one_series_per_subject(registry):
    gauges.MonitorGauges(registry).show(gauges.series(SUMMARY))
    assert _value(registry, "claimscore_monitor_last_run_timestamp_seconds") == 1_796_119_200
    assert _value(registry, "claimscore_monitor_window_claims") == 1200
    assert _value(registry, "claimscore_monitor_alerts", section="drift") == 2
    assert _value(registry, "claimscore_monitor_alerts", section="fairness") == 1
    assert _value(registry, "claimscore_monitor_alerts", section="quality") == 0  # every section, 0 when none
    drift = {"feature": "claimed_amount", "kind": "numeric", "method": "wasserstein"}
    assert _value(registry, "claimscore_monitor_drift", **drift) == 0.3
    assert _value(registry, "claimscore_monitor_drifted", feature="claimed_amount") == 1
    assert _value(registry, "claimscore_monitor_drifted", feature="channel") == 0
    assert _value(registry, "claimscore_monitor_score_drift", model="fraud") == 0.2
    assert _value(registry, "claimscore_monitor_route_share", route="fast_track") == 0.35
    assert _value(registry, "claimscore_monitor_multivariate_error") == 1.5
    perf = {"model": "fraud", "metric": "roc_auc", "basis": "estimated"}
    assert _value(registry, "claimscore_monitor_performance", **perf) == 0.81
    assert _value(registry, "claimscore_monitor_label_maturity", model="fraud") == 0.25
    fair = {"attribute": "region", "group": "north", "metric": "siu_referral_rate"}
    assert _value(registry, "claimscore_monitor_fairness_ratio", **fair) == 0.7
    assert _value(registry, "claimscore_monitor_kpi", kpi="fast_track_rate") == 0.35
    assert _value(registry, "claimscore_monitor_kpi", kpi="siu.referral_rate") == 0.02


def test_what_a_summary_lacks_is_not_exported():
    values = gauges.series({"generated_at": "not a time", "window": {}, "drift": {"features": [{"kind": "x"}]}})
    assert values["claimscore_monitor_last_run_timestamp_seconds"] == {}
    assert values["claimscore_monitor_drift"] == {} and values["claimscore_monitor_performance"] == {}
    assert values["claimscore_monitor_kpi"] == {}
    measured = gauges.series(SUMMARY)["claimscore_monitor_performance"]
    assert not any(basis == "measured" for _, _, basis in measured)  # measured: null (too few labels)
    assert ("note",) not in gauges.series(SUMMARY)["claimscore_monitor_kpi"]  # text is no number


def test_a_series_the_next_run_lacks_reads_nan(registry):
    shown = gauges.MonitorGauges(registry)
    shown.show(gauges.series(SUMMARY))
    later = {**SUMMARY, "drift": {**SUMMARY["drift"], "features": SUMMARY["drift"]["features"][1:]}}
    shown.show(gauges.series(later))
    assert math.isnan(_value(registry, "claimscore_monitor_drifted", feature="claimed_amount"))
    assert _value(registry, "claimscore_monitor_drifted", feature="channel") == 0


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@pytest.mark.parametrize("garbage", ['{"generated_at": "2026-12-0', "[1, 2]", "\xff\xfe", ""])
def test_an_unreadable_summary_keeps_the_last_good_values(tmp_path, registry, caplog, garbage):
    path = tmp_path / gauges.SUMMARY_FILE
    watcher = gauges.SummaryWatcher(path, gauges.MonitorGauges(registry))
    assert not watcher.check()  # no run yet: nothing to read, nothing said
    _write(path, json.dumps(SUMMARY))
    assert watcher.check()
    with caplog.at_level(logging.WARNING, logger="serving.gauges"):
        _write(path, garbage)
        assert not watcher.check()
        assert not watcher.check()  # the same bad file: looked at once, warned about once
    assert len(caplog.records) == 1 and "last good" in caplog.records[0].getMessage()
    assert _value(registry, "claimscore_monitor_window_claims") == 1200
    assert _value(registry, "claimscore_monitor_summary_readable") == 0
    _write(path, json.dumps({**SUMMARY, "window": {"claims": 7}}))
    assert watcher.check()
    assert _value(registry, "claimscore_monitor_window_claims") == 7
    assert _value(registry, "claimscore_monitor_summary_readable") == 1


def test_the_service_reads_where_the_monitor_writes(tmp_path):
    from monitoring.monitor import REPORT_FILE, SUMMARY_FILE
    from pipelines.monitoring import latest_dir

    settings = Settings(home=tmp_path).resolved()
    assert gauges.latest_dir(settings) == latest_dir(settings)
    assert (gauges.SUMMARY_FILE, gauges.REPORT_FILE) == (SUMMARY_FILE, REPORT_FILE)

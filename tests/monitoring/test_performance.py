"""Performance as labels arrive: estimates from calibrated scores (CBPE), measured figures once the
window is mature, and the alerts between them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.config import PerformanceConfig
from monitoring.metrics import binary_metrics
from monitoring.performance import estimated_metrics, performance, performance_alerts

CFG = PerformanceConfig()


def _calibrated(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels drawn from them: the scores are calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-(rng.normal(-3.0, 1.5, n))))
    return p, (rng.random(n) < p).astype(float)


def test_estimates_from_calibrated_scores_match_what_the_labels_then_measure():
    p, y = _calibrated(200_000)
    est, measured = estimated_metrics(p, 0.03), binary_metrics(y, p, 0.03)
    assert est["roc_auc"] == pytest.approx(measured["roc_auc"], abs=0.005)
    assert est["average_precision"] == pytest.approx(measured["average_precision"], abs=0.01)
    assert est["precision_at_capacity"] == pytest.approx(measured["precision_at_capacity"], abs=0.01)
    assert est["expected_positive_rate"] == pytest.approx(y.mean(), abs=0.002)


def test_uninformative_scores_are_estimated_near_chance():
    est = estimated_metrics(np.full(10_000, 0.05) + np.linspace(0, 1e-6, 10_000), 0.03)
    assert est["roc_auc"] == pytest.approx(0.5, abs=0.01)


def _window(n: int, labelled_share: float, seed: int = 1):
    p, y = _calibrated(n, seed)
    y = y.copy()
    y[int(n * labelled_share) :] = np.nan
    decided = pd.Series(pd.date_range("2026-01-01", periods=n, freq="5min"))
    return p, y, decided


def test_labels_arriving_late_turn_estimated_figures_into_measured_ones():
    p, y, decided = _window(20_000, 0.0)
    before = performance("fraud", p, y, decided, 0.03, {"roc_auc": 0.8}, CFG)
    assert before["maturity"] == 0 and before["measured"] is None and before["labelled"] == 0
    assert 0.5 < before["estimated"]["roc_auc"] < 1
    p, y, decided = _window(20_000, 0.9)
    after = performance("fraud", p, y, decided, 0.03, {"roc_auc": 0.8}, CFG)
    assert after["maturity"] == pytest.approx(0.9) and after["labelled"] == 18_000
    assert after["measured"]["roc_auc"] == pytest.approx(binary_metrics(y[:18_000], p[:18_000], 0.03)["roc_auc"])
    assert after["calibration"] and sum(b["claims"] for b in after["calibration"]) == 18_000
    assert [s["claims"] for s in after["series"]] and sum(s["claims"] for s in after["series"]) == 20_000


def test_an_estimate_is_judged_against_the_test_periods_estimate():
    p, y, decided = _window(20_000, 0.0)
    same = performance("fraud", p, y, decided, 0.03, {"roc_auc": 0.95}, CFG, estimated_metrics(p, 0.03))
    assert performance_alerts(same, CFG) == []  # the measured 0.95 is not what an estimate is held to
    flat = np.clip(p * 0.1 + 0.02, 0, 1)[np.random.default_rng(2).permutation(len(p))]
    worse = performance("fraud", flat, y, decided, 0.03, {}, CFG, estimated_metrics(p, 0.03))
    [alert] = performance_alerts(worse, CFG)
    assert alert.subject == "fraud: estimated roc_auc" and "threshold" in alert.message


def test_measured_figures_are_judged_only_once_the_window_is_mature():
    p, y, decided = _window(20_000, 0.5)
    y_bad = np.where(np.isnan(y), np.nan, 1 - np.nan_to_num(y))  # labels inverted: ranking is wrong
    young = performance("fraud", p, y_bad, decided, 0.03, {"roc_auc": 0.8}, CFG, estimated_metrics(p, 0.03))
    assert young["measured"] is not None and young["measured"]["roc_auc"] < 0.5
    assert not [a for a in performance_alerts(young, CFG) if a.subject == "fraud: roc_auc"]
    mature = PerformanceConfig(min_maturity=0.4)
    subjects = {a.subject for a in performance_alerts(young, mature)}
    assert "fraud: roc_auc" in subjects and "fraud: calibration_error" in subjects

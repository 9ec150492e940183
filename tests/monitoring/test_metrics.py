"""The figures training and monitoring share, against values computed by hand on small tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.metrics import binary_metrics, expected_calibration_error, lift_table, routing_kpis
from serving.model.routing import RoutingPolicy

Y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 1, 0], dtype=float)
P = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_binary_metrics_match_hand_computed_values():
    m = binary_metrics(Y, P, capacity=0.2)  # the top 2 of 10 claims are referred: one hit
    # pairs (positive, negative) ranked correctly: 0.9 beats 7, 0.7 beats 6, 0.1 beats 1 -> 14 of 21
    assert m["roc_auc"] == pytest.approx(14 / 21)
    assert m["average_precision"] == pytest.approx((1 / 1 + 2 / 3 + 3 / 9) / 3)
    assert m["precision_at_capacity"] == pytest.approx(0.5)
    assert m["recall_at_capacity"] == pytest.approx(1 / 3)
    assert m["positive_rate"] == pytest.approx(0.3) and m["claims"] == 10
    assert m["brier"] == pytest.approx(np.mean((P - Y) ** 2))


def test_calibration_error_is_zero_when_scores_equal_the_observed_rate_per_bin():
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1], dtype=float)
    p = np.array([0.25] * 4 + [0.75] * 4)
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(8, 0.5), bins=2) == pytest.approx(0.25)


def test_lift_table_ranks_by_score_and_accumulates_recall():
    lift = lift_table(Y, P, groups=2)
    assert list(lift["positives"]) == [2, 1]
    assert list(lift["cumulative_recall"]) == pytest.approx([2 / 3, 1.0])
    assert lift["lift"].iloc[0] == pytest.approx((2 / 5) / 0.3)


def test_routing_kpis_count_caught_fraud_hit_rate_and_leakage_by_hand():
    table = pd.DataFrame({"claimed_amount": [1_000.0] * 6, "incident_severity": ["low"] * 6})
    policy = RoutingPolicy(0.8, 0.5, 0.8, 5_000, 50_000, ("high",), inputs=("claimed_amount", "incident_severity"))
    fraud = np.array([0.9, 0.85, 0.1, 0.2, 0.3, 0.1])
    fast = np.array([0.9, 0.9, 0.9, 0.9, 0.1, 0.1])
    y = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    k = routing_kpis(policy, table, fraud, fast, y)
    assert k["share_siu_referral"] == pytest.approx(2 / 6) and k["share_fast_track"] == pytest.approx(2 / 6)
    assert k["share_standard"] == pytest.approx(2 / 6) and k["share_specialist"] == 0.0
    assert k["fraud_caught"] == pytest.approx(0.5)  # one of the two frauds referred
    assert k["siu_hit_rate"] == pytest.approx(0.5)
    assert k["fast_track_leakage"] == pytest.approx(0.5)  # the other fraud was fast-tracked

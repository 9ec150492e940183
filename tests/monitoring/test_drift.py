"""Drift against a reference: quiet on the same distribution, loud and specific on a shift, the
statistics close to the ones computed from raw samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitoring.config import DriftConfig
from monitoring.drift import (
    COLUMNS,
    drift_alerts,
    feature_drift,
    ks_from_quantiles,
    multivariate_drift,
    route_shift,
    score_drift,
    wasserstein_from_quantiles,
)
from monitoring.reference import build_reference, summarise_numeric
from tests.monitoring.test_reference import make_reference, synthetic_features, synthetic_routes, synthetic_scores

CFG = DriftConfig()


@pytest.fixture(scope="module")
def reference():
    return make_reference()[0]


def _all(reference, frame):
    """Every drift section over ``frame`` (scores and routes of the reference's distribution)."""
    features = feature_drift(reference, frame, CFG)
    scores = score_drift(reference, synthetic_scores(len(frame), 7), CFG)
    routes = route_shift(reference, synthetic_routes(len(frame), 8), CFG)
    multivariate = multivariate_drift(reference, frame, CFG)
    return features, scores, routes, multivariate, drift_alerts(features, scores, routes, multivariate, CFG)


def _alerts(reference, features=None, scores=None, routes=None):
    """Alerts of the sections given (the others empty)."""
    return drift_alerts(
        features if features is not None else pd.DataFrame(columns=COLUMNS),
        scores if scores is not None else pd.DataFrame(columns=COLUMNS),
        routes if routes is not None else route_shift(reference, [], CFG),
        {},
        CFG,
    )


def _draw(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "normal":
        return rng.normal(100, 15, n)
    if kind == "lognormal":
        return rng.lognormal(8, 1, n)
    return np.where(rng.random(n) < 0.3, 0, rng.gamma(2, 500, n))  # zero-inflated


def test_a_sample_of_the_same_distribution_raises_nothing(reference):
    features, scores, routes, multivariate, alerts = _all(reference, synthetic_features(20_000, 2))
    assert list(features.columns) == COLUMNS and len(features) == 7
    assert not features["drifted"].any() and not scores["drifted"].any() and not routes["alert"].any()
    assert set(features["method"]) == {"wasserstein", "jensen_shannon"}
    assert (features["drift_score"] < 0.5).all()
    assert not multivariate["drifted"] and multivariate["error"] < multivariate["threshold"]
    assert alerts == []


def test_a_shifted_amount_and_channel_mix_drift_and_are_named(reference):
    shifted = synthetic_features(20_000, 2, amount_scale=1.5, channel_mix=(0.3, 0.3, 0.4))
    features, _, _, _, alerts = _all(reference, shifted)
    drifted = set(features.loc[features["drifted"], "feature"])
    assert drifted == {"claimed_amount", "channel"}
    assert list(features["feature"][:2]) == ["claimed_amount", "channel"]  # most drifted first
    messages = [a.message for a in alerts if a.subject in drifted]
    assert any(
        m.startswith("drift: claimed_amount moved ") and m.endswith("(Wasserstein/std; threshold 0.1)")
        for m in messages
    )
    assert any(m.startswith("drift: channel Jensen-Shannon ") for m in messages)
    assert not any(a.subject in {"claimant_age", "income", "region", "vehicle_group"} for a in alerts)


def test_small_windows_are_tested_and_a_big_shift_is_caught(reference):
    shifted = synthetic_features(300, 3, amount_scale=1.5, channel_mix=(0.3, 0.3, 0.4))
    features = feature_drift(reference, shifted, CFG).set_index("feature")
    assert features.loc["claimed_amount", "method"] == "ks" and features.loc["channel", "method"] == "chi_square"
    assert features.loc[["claimed_amount", "channel"], "drifted"].all()
    assert (features.loc[["claimed_amount", "channel"], "statistic"] < 1e-4).all()  # p-values
    alerts = _alerts(reference, features=features.reset_index())
    assert any(a.message.startswith("drift: channel chi-square p=") for a in alerts)
    assert any(a.message.startswith("drift: claimed_amount Kolmogorov-Smirnov p=") for a in alerts)


def test_small_windows_of_the_same_distribution_are_rarely_flagged(reference):
    flagged = [feature_drift(reference, synthetic_features(300, seed), CFG)["drifted"].mean() for seed in range(10, 30)]
    assert np.mean(flagged) < 0.12  # about the 5% a test at p < 0.05 gives


@pytest.mark.parametrize("scale", [1.1, 1.5])
@pytest.mark.parametrize("draw", ["normal", "lognormal", "zero_inflated"])
def test_wasserstein_from_quantiles_is_close_to_scipy_on_the_raw_samples(draw, scale):
    errors = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        ref, cur = _draw(draw, rng, 20_000), _draw(draw, rng, 5_000) * scale
        approx = wasserstein_from_quantiles(summarise_numeric(ref), np.sort(cur))
        errors.append(abs(approx / stats.wasserstein_distance(ref, cur) - 1))
    # typically within 3%; a heavy tail moved a little is the worst case (up to ~10%): scipy adds the
    # noise of the extreme 1% of values that the reference's tail means average out
    assert np.median(errors) < 0.03 and max(errors) < 0.12


def test_kolmogorov_smirnov_from_quantiles_is_close_to_scipy_on_the_raw_samples():
    rng = np.random.default_rng(6)
    ref = rng.lognormal(8, 1, 20_000)
    for cur in (rng.lognormal(8, 1, 300), rng.lognormal(8.2, 1, 300)):
        d, p = ks_from_quantiles(summarise_numeric(ref), np.sort(cur))
        exact = stats.ks_2samp(ref, cur)
        assert d == pytest.approx(exact.statistic, abs=0.005)
        assert p == pytest.approx(exact.pvalue, rel=0.2, abs=0.01)


def test_unseen_categories_are_reported_when_the_reference_listed_them_all(reference):
    frame = synthetic_features(2_000, 4)
    frame.loc[:99, "channel"] = "app"
    row = feature_drift(reference, frame, CFG).set_index("feature").loc["channel"]
    assert row["unseen"] == ["app"]
    pooled = build_reference(pd.DataFrame({"code": np.arange(2_000) % 60}), ["code"], {}, np.array([]), {})
    unseen = feature_drift(pooled, pd.DataFrame({"code": [999] * 10}), CFG)["unseen"].iloc[0]
    assert unseen == []  # the reference's "other" share may hold them


def test_a_new_category_taking_a_big_share_drifts(reference):
    frame = synthetic_features(300, 5)
    frame.loc[:59, "channel"] = "app"
    row = feature_drift(reference, frame, CFG).set_index("feature").loc["channel"]
    assert row["method"] == "chi_square" and row["drifted"]


def test_missing_and_emptied_features_drift_and_rising_nulls_alert(reference):
    frame = synthetic_features(5_000, 6).drop(columns=["region"])
    frame["prior_claims"] = np.nan
    frame.loc[:999, "claimed_amount"] = np.nan
    features = feature_drift(reference, frame, CFG).set_index("feature")
    assert features.loc["region", "method"] == "missing" and features.loc["region", "drifted"]
    assert features.loc["prior_claims", "method"] == "empty" and features.loc["prior_claims", "drifted"]
    assert features.loc["claimed_amount", "null_rate_change_alert"]
    assert not features.loc["claimant_age", "null_rate_change_alert"]
    messages = [a.message for a in _alerts(reference, features=features.reset_index())]
    assert "drift: region is missing from the claims (the model reads it)" in messages
    assert any(m.startswith("drift: claimed_amount missing in 2") and "(threshold +10 points)" in m for m in messages)


def test_a_column_constant_in_the_reference_drifts_when_it_varies():
    frame = pd.DataFrame({"flag": np.zeros(2_000), "x": np.arange(2_000.0)})
    reference = build_reference(frame, [], {}, np.array([]), {})
    same = feature_drift(reference, frame, CFG).set_index("feature")
    assert not same["drifted"].any()
    moved = frame.assign(flag=np.where(np.arange(2_000) < 200, 1.0, 0.0))
    assert feature_drift(reference, moved, CFG).set_index("feature").loc["flag", "drifted"]


def test_scores_drift_with_their_own_threshold(reference):
    rows = score_drift(reference, synthetic_scores(5_000, 9, shift=0.1), CFG).set_index("feature")
    assert rows.loc["fraud", "drifted"] and not rows.loc["fast_track", "drifted"]
    assert rows.loc["fraud", "kind"] == "score" and rows.loc["fraud", "threshold"] == CFG.score_threshold
    alerts = _alerts(reference, scores=rows.reset_index())
    assert [a.subject for a in alerts] == ["fraud score"]
    assert alerts[0].message.startswith("drift: fraud score moved ")


def test_a_route_share_that_moves_five_points_alerts(reference):
    routes = synthetic_routes(20_000, 11, mix=(0.45, 0.4, 0.1, 0.05))
    rows = route_shift(reference, routes, CFG).set_index("route")
    assert rows.loc["fast_track", "alert"] and rows.loc["standard", "alert"] and not rows.loc["siu_referral", "alert"]
    assert rows.loc["fast_track", "change"] == pytest.approx(0.1, abs=0.02)
    fast = next(a for a in _alerts(reference, routes=rows.reset_index()) if a.subject == "fast_track")
    assert fast.message.startswith("routes: fast_track share 4")
    assert fast.message.endswith("at training (threshold ±5 points)")


def test_a_broken_correlation_drifts_multivariate_but_no_single_feature(reference):
    frame = synthetic_features(20_000, 12, break_correlation=True)
    features, _, _, multivariate, alerts = _all(reference, frame)
    assert not features["drifted"].any()
    assert multivariate["drifted"] and multivariate["error"] > multivariate["threshold"]
    assert multivariate["components"] >= 1 and multivariate["chunk_size"] == 1_000
    assert len(multivariate["chunks"]) == 20 and all(c["drifted"] for c in multivariate["chunks"])
    assert [a.subject for a in alerts] == ["multivariate"]
    assert alerts[0].message.startswith("drift: multivariate reconstruction error ")


def test_a_small_window_gets_a_wider_multivariate_threshold(reference):
    small = multivariate_drift(reference, synthetic_features(250, 13), CFG)
    large = multivariate_drift(reference, synthetic_features(5_000, 13), CFG)
    model = reference.multivariate
    assert large["threshold"] == pytest.approx(model["error_mean"] + 3 * model["error_std"])
    assert small["threshold"] == pytest.approx(model["error_mean"] + 3 * model["error_std"] * 2)  # sqrt(1000/250)
    assert not small["drifted"] and not large["drifted"]


def test_the_data_set_drifts_when_half_its_features_have(reference):
    frame = synthetic_features(5_000, 14, amount_scale=2.0, channel_mix=(0.1, 0.1, 0.8))
    frame["claimant_age"] += 10
    frame["prior_claims"] += 1
    features = feature_drift(reference, frame, CFG)
    alerts = _alerts(reference, features=features)
    assert int(features["drifted"].sum()) == 4
    assert alerts[-1].subject == "dataset"
    assert alerts[-1].message == "drift: 4 of 7 features drifted (57%; threshold 50%)"

"""The model bundle and its encoder: a table and a single claim score identically, before and after saving."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.build import available_features, build_features
from serving.model.bundle import Calibration, ModelBundle
from serving.model.encoding import FeatureEncoder


@pytest.fixture(scope="module")
def trained(synthetic_claims):
    feats = available_features(synthetic_claims)
    table = build_features(synthetic_claims, feats)
    enc = FeatureEncoder.fit(table, feats)
    matrix = enc.transform(table)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "seed": 0, "num_threads": 1},
        lgb.Dataset(
            matrix, synthetic_claims["true_fraud"].astype(int).to_numpy(), categorical_feature=enc.categorical_indices
        ),
        30,
    )
    cal = Calibration("isotonic", (0.0, 0.1, 1.0), (0.0, 0.3, 1.0))
    return ModelBundle("fraud", "true_fraud", booster, enc, cal, {"trained_on": "test"}), table


def _one(bundle: ModelBundle, row: dict) -> np.ndarray:
    """One claim's features as the live path holds them (arrays, no DataFrame), encoded."""
    cols = {k: np.array([v], dtype=object if k in bundle.encoder.categories else np.float64) for k, v in row.items()}
    return bundle.encoder.transform(
        {k: np.where(pd.isna(v), np.nan, v) if v.dtype == np.float64 else v for k, v in cols.items()}
    )


def test_a_single_claim_scores_as_in_the_table(trained):
    bundle, table = trained
    matrix = bundle.encoder.transform(table)
    expected = bundle.predict(matrix)
    for i in (0, 17, 4321):
        row = {k: (None if pd.isna(v) else v) for k, v in table.iloc[i].items()}
        assert bundle.predict(_one(bundle, row))[0] == expected[i]


def test_unseen_and_missing_categories_score_like_missing(trained):
    bundle, table = trained
    row = {k: (None if pd.isna(v) else v) for k, v in table.iloc[3].items()}
    unseen = bundle.predict(_one(bundle, {**row, "channel": "carrier pigeon"}))[0]
    missing = bundle.predict(_one(bundle, {**row, "channel": None}))[0]
    assert unseen == missing
    assert np.isnan(
        bundle.encoder.transform(table.head(1).assign(channel="carrier pigeon"))[0, bundle.features.index("channel")]
    )


def test_bundle_round_trips_through_files(trained, tmp_path):
    bundle, table = trained
    loaded = ModelBundle.load(bundle.save(tmp_path / "b"))
    matrix = loaded.encoder.transform(table)
    np.testing.assert_array_equal(loaded.predict(matrix), bundle.predict(bundle.encoder.transform(table)))
    assert loaded.metadata == {"trained_on": "test"} and loaded.features == bundle.features


def test_calibration_kinds():
    iso = Calibration("isotonic", (0.0, 0.5, 1.0), (0.0, 0.2, 1.0))
    assert iso.apply(np.array([0.25, 0.75])).tolist() == pytest.approx([0.1, 0.6])
    flat = Calibration("isotonic", (0.0, 0.5, 1.0), (0.2, 0.2, 0.2))
    low, high = flat.apply(np.array([0.1, 0.9]))
    assert low < high and high - low < 1e-8  # ties broken by the raw score, calibration untouched
    platt = Calibration("platt", a=1.0, b=0.0)
    assert platt.apply(np.array([0.3]))[0] == pytest.approx(0.3)
    assert Calibration.from_dict(iso.to_dict()) == iso


def test_lightgbm_is_never_asked_for_two_predictions_at_once(trained, monkeypatch):
    """One booster predicted from two threads with different parameters races inside LightGBM
    (#5482, #6142): every call the bundle and the explainer make into it waits for the others."""
    import threading

    from serving.model import bundle as bundle_module
    from serving.model.explainer import Explainer

    bundle, table = trained
    matrix = bundle.encoder.transform(table.head(100))
    inside, most = 0, 0
    counting = threading.Lock()
    real_predict = bundle.booster.predict

    def predict(*args, **kwargs):
        nonlocal inside, most
        with counting:
            inside += 1
            most = max(most, inside)
        threading.Event().wait(0.002)  # long enough for the other threads to come in
        try:
            return real_predict(*args, **kwargs)
        finally:
            with counting:
                inside -= 1

    monkeypatch.setattr(bundle.booster, "predict", predict)
    fallback = Explainer.for_booster(bundle.booster)
    monkeypatch.setattr(fallback, "_model", None)  # the booster's own contributions (beyond the kernels' bounds)
    calls = [
        lambda: bundle.predict(matrix),
        lambda: bundle.predict(matrix[:1]),
        lambda: bundle.predict_log_odds(matrix),
        lambda: fallback.contributions(matrix[:3]),
    ]
    threads = [threading.Thread(target=calls[i % len(calls)]) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1
    assert bundle_module.PREDICT_LOCK.acquire(blocking=False)  # and nothing left it held
    bundle_module.PREDICT_LOCK.release()
    np.testing.assert_allclose(bundle.predict_log_odds(matrix), real_predict(matrix, raw_score=True), rtol=0, atol=0)

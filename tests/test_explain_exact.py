"""The fast exact explainer agrees with LightGBM's own TreeSHAP (pred_contrib) and adds up."""

from __future__ import annotations

import numpy as np
import pytest

from features.explain import Explainer


def _model(leaves: int, trees: int, categorical: bool, seed: int):
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    n, f = 2_000, 10
    x = rng.normal(size=(n, f))
    x[rng.random((n, f)) < 0.1] = np.nan
    x[:, 0] = rng.integers(0, 8, n).astype(float)
    x[:, 1] = np.where(rng.random(n) < 0.4, 0.0, x[:, 1])  # exact zeros (missing_type Zero paths)
    y = ((np.nan_to_num(x[:, 2]) + (x[:, 0] == 3) + rng.normal(0, 1, n)) > 0.5).astype(int)
    params = {"objective": "binary", "num_leaves": leaves, "verbose": -1, "seed": seed, "min_data_in_leaf": 5,
              "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, y, categorical_feature=[0] if categorical else "auto"), trees)
    return booster, x


@pytest.mark.parametrize("leaves, trees, categorical, seed", [
    (2, 10, False, 0), (4, 30, True, 1), (15, 60, False, 2), (31, 80, True, 3), (63, 40, True, 4)])
def test_contributions_equal_tree_shap_and_add_up(leaves, trees, categorical, seed):
    booster, x = _model(leaves, trees, categorical, seed)
    query = x[:300].copy()
    query[:5, 0] = 99.0      # a category never seen in training
    query[5:10, 0] = np.nan  # a missing category
    query[10:15] = np.nan    # nothing known at all
    explainer = Explainer.for_booster(booster)
    assert not explainer.uses_fallback
    ours = explainer.contributions(query)
    reference = booster.predict(query, pred_contrib=True)
    np.testing.assert_allclose(ours, reference[:, :-1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.sum(axis=1) + explainer.expected_value,
                               booster.predict(query, raw_score=True), rtol=0, atol=1e-6)


def test_one_row_at_a_time_equals_the_bulk_answer():
    booster, x = _model(31, 50, True, 7)
    explainer = Explainer.for_booster(booster)
    bulk = explainer.contributions(x[:20])
    for i in range(20):
        np.testing.assert_allclose(explainer.contributions(x[i:i + 1])[0], bulk[i], rtol=0, atol=1e-12)


def test_a_model_over_the_memory_bound_falls_back_to_pred_contrib(caplog):
    booster, x = _model(31, 50, False, 8)
    with caplog.at_level("WARNING"):
        explainer = Explainer.for_booster(booster, max_memory_mb=0.001)
    assert explainer.uses_fallback and caplog.records
    np.testing.assert_allclose(explainer.contributions(x[:50]), booster.predict(x[:50], pred_contrib=True)[:, :-1],
                               rtol=0, atol=1e-12)

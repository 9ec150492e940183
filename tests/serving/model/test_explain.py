"""The fast explainer returns LightGBM's (and shap's) exact SHAP values on random models, with a clean
fallback to LightGBM outside its bounds."""

from __future__ import annotations

import logging

import lightgbm as lgb
import numpy as np
import pytest

from serving.model.explainer import PARALLEL_MIN_ROWS, SPLIT_MIN_TREES, Explainer

TOL = 1e-6
N_NUM, N_CAT, LEVELS = 6, 2, 12

# Random models: sizes, depths, missing-value handling and categorical encodings vary together.
CASES = [
    dict(num_leaves=2, rounds=3),
    dict(num_leaves=3, rounds=1, min_data_in_leaf=1),
    dict(num_leaves=7, rounds=25, max_depth=3),
    dict(num_leaves=15, rounds=40, zero_as_missing=True),
    dict(num_leaves=15, rounds=40, use_missing=False),
    dict(num_leaves=31, rounds=30, max_cat_to_onehot=32),
    dict(num_leaves=31, rounds=30, max_depth=6, cat=False),
    dict(num_leaves=63, rounds=20, min_data_in_leaf=2, zero_as_missing=True),
    dict(num_leaves=63, rounds=15, min_data_in_leaf=1, feature_fraction=0.5, objective="regression"),
    dict(num_leaves=40, rounds=10, min_data_in_leaf=3, use_missing=False, max_cat_to_onehot=2),
]


def _data(rng: np.random.Generator, rows: int, cat: bool = True) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(rows, N_NUM + N_CAT))
    x[:, 1] = np.round(x[:, 1] * 3)  # integer-valued: many ties and exact zeros
    x[rng.random(rows) < 0.3, 2] = 0.0
    for j in (0, 2, 4):
        x[rng.random(rows) < 0.15, j] = np.nan
    for j in range(N_NUM, N_NUM + N_CAT):
        x[:, j] = rng.integers(0, LEVELS, rows)
        x[rng.random(rows) < 0.1, j] = np.nan
    signal = np.nan_to_num(x[:, 0]) + x[:, 1] * x[:, 3] - (x[:, 2] == 0) + np.isnan(x[:, 4])
    if cat:
        signal += np.isin(x[:, N_NUM], [1, 4, 7]) - 0.5 * (np.nan_to_num(x[:, N_NUM + 1], nan=-1) % 3 == 0)
    y = (signal + rng.normal(size=rows) > 0.3).astype(float)
    return x, y


def _train(case: dict, seed: int) -> tuple[lgb.Booster, np.ndarray]:
    case = dict(case)
    rounds, cat = case.pop("rounds"), case.pop("cat", True)
    rng = np.random.default_rng(seed)
    x, y = _data(rng, 3_000, cat)
    params = {
        "objective": "binary",
        "verbose": -1,
        "seed": seed,
        "num_threads": 1,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        **case,
    }
    cats = list(range(N_NUM, N_NUM + N_CAT)) if cat else []
    booster = lgb.train(params, lgb.Dataset(x, y, categorical_feature=cats), rounds)
    return booster, _probe_rows(booster, rng)


def _probe_rows(booster: lgb.Booster, rng: np.random.Generator) -> np.ndarray:
    """Fresh rows plus the hard cases: values exactly on split thresholds, NaN, zero and near-zero,
    infinities, and categorical codes that are unseen, negative, fractional or huge."""
    x, _ = _data(rng, 300)
    thresholds = [
        (n["split_feature"], n["threshold"]) for n in _splits(booster.dump_model()) if n["decision_type"] == "<="
    ]
    edge = np.repeat(x[:40], 6, axis=0)
    for i, row in enumerate(edge):
        if thresholds:
            f, t = thresholds[i % len(thresholds)]
            row[f] = t
        j = rng.integers(0, N_NUM)
        row[j] = [np.nan, 0.0, 1e-36, -1e-36, np.inf, -np.inf][i % 6]
        k = N_NUM + rng.integers(0, N_CAT)
        row[k] = [np.nan, 99.0, -1.0, -0.5, 2.7, 1e10][i % 6]
    return np.vstack([x, edge])


def _most_distinct_features_on_a_path(booster: lgb.Booster) -> int:
    most = 0
    stack = [(t["tree_structure"], frozenset()) for t in booster.dump_model()["tree_info"]]
    while stack:
        node, seen = stack.pop()
        if "split_feature" not in node:
            most = max(most, len(seen))
            continue
        seen = seen | {node["split_feature"]}
        stack += [(node["left_child"], seen), (node["right_child"], seen)]
    return most


def _splits(dump: dict):
    stack = [t["tree_structure"] for t in dump["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            yield node
            stack += [node["left_child"], node["right_child"]]


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_contributions_equal_lightgbm_pred_contrib(case):
    booster, x = _train(case, seed=len(str(case)))
    explainer = Explainer.for_booster(booster)
    assert not explainer.uses_fallback

    np.testing.assert_array_equal(explainer.leaf_indices(x), booster.predict(x, pred_leaf=True))
    reference = booster.predict(x, pred_contrib=True)
    batch = explainer.contributions(x)
    one_by_one = np.vstack([explainer.contributions(x[i : i + 1]) for i in range(0, len(x), 23)])
    assert np.abs(batch - reference[:, :-1]).max() < TOL
    assert np.abs(one_by_one - reference[::23, :-1]).max() < TOL
    assert explainer.expected_value == pytest.approx(reference[0, -1], abs=TOL)
    raw = booster.predict(x, raw_score=True)
    assert np.abs(batch.sum(axis=1) + explainer.expected_value - raw).max() < TOL


def test_paths_with_more_than_16_distinct_features_are_exact():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3_000, 24))
    x[rng.random(x.shape) < 0.05] = np.nan
    booster = lgb.train(
        {
            "objective": "binary",
            "verbose": -1,
            "num_leaves": 1000,
            "min_data_in_leaf": 1,
            "min_sum_hessian_in_leaf": 0,
            "lambda_l2": 0,
            "learning_rate": 1.0,
            "num_threads": 1,
        },
        lgb.Dataset(x, (rng.random(3_000) < 0.5).astype(float)),
        2,
    )  # overfits noise: deep
    assert _most_distinct_features_on_a_path(booster) > 16
    explainer = Explainer.for_booster(booster)
    reference = booster.predict(x[:300], pred_contrib=True)[:, :-1]
    assert np.abs(explainer.contributions(x[:300]) - reference).max() < TOL
    assert np.abs(np.vstack([explainer.contributions(x[i : i + 1]) for i in range(10)]) - reference[:10]).max() < TOL


@pytest.mark.filterwarnings("ignore:LightGBM binary classifier with TreeExplainer")
@pytest.mark.parametrize("case", [CASES[5], CASES[7]], ids=["31-leaves", "63-leaves"])
def test_contributions_equal_shap_tree_explainer(case):
    shap = pytest.importorskip("shap")
    booster, x = _train(case, seed=7)
    reference = shap.TreeExplainer(booster, feature_perturbation="tree_path_dependent")
    explainer = Explainer.for_booster(booster)
    assert np.abs(explainer.contributions(x) - np.asarray(reference.shap_values(x))).max() < TOL
    assert explainer.expected_value == pytest.approx(float(np.ravel(reference.expected_value)[0]), abs=TOL)


def test_work_split_over_threads_gives_the_same_values():
    booster, _ = _train({**CASES[5], "rounds": SPLIT_MIN_TREES + 6}, seed=3)
    x, _ = _data(np.random.default_rng(3), 2 * PARALLEL_MIN_ROWS + 17)
    explainer = Explainer.for_booster(booster)
    reference = booster.predict(x, pred_contrib=True)[:, :-1]
    threaded = explainer.contributions(x, n_threads=2)  # batch: by rows
    assert np.abs(threaded - reference).max() < TOL
    np.testing.assert_array_equal(threaded, explainer.contributions(x, n_threads=1))
    for i in range(5):  # one claim: by trees
        assert np.abs(explainer.contributions(x[i : i + 1], n_threads=2) - reference[i]).max() < TOL


def test_one_claim_split_by_trees_gives_the_same_values_on_either_kind_of_thread(monkeypatch):
    import serving.model.explainer as explain

    booster, _ = _train({**CASES[5], "rounds": SPLIT_MIN_TREES + 7}, seed=4)  # an odd number of trees
    x, _ = _data(np.random.default_rng(4), 20)
    explainer = Explainer.for_booster(booster)
    whole = np.vstack([explainer.contributions(x[i : i + 1], n_threads=1) for i in range(len(x))])
    assert np.abs(whole - booster.predict(x, pred_contrib=True)[:, :-1]).max() < TOL
    for numba_threads in (True, False):  # numba's OpenMP threads, or (without OpenMP) a thread of ours
        monkeypatch.setattr(explain, "_split_on_numba_threads", lambda on=numba_threads: on)
        split = np.vstack([explainer.contributions(x[i : i + 1], n_threads=2) for i in range(len(x))])
        assert np.abs(split - whole).max() < 1e-12


def test_a_model_of_constant_trees_has_no_contributions():
    x, _ = _data(np.random.default_rng(2), 200)
    booster = lgb.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 500}, lgb.Dataset(x, x[:, 0]), 3)
    explainer = Explainer.for_booster(booster)
    assert not explainer.contributions(x).any()
    assert explainer.expected_value == pytest.approx(booster.predict(x[:1], raw_score=True)[0], abs=TOL)


def test_a_model_over_the_memory_bound_falls_back_to_pred_contrib(caplog):
    booster, x = _train(CASES[5], seed=5)
    with caplog.at_level(logging.WARNING, logger="serving.model.explainer"):
        explainer = Explainer.for_booster(booster, max_memory_mb=0.01)
    assert explainer.uses_fallback and explainer.memory_bytes == 0
    assert "max_memory_mb=0.01" in caplog.text and "pred_contrib" in caplog.text
    reference = booster.predict(x, pred_contrib=True)
    np.testing.assert_array_equal(explainer.contributions(x), reference[:, :-1])
    assert explainer.expected_value == reference[0, -1]


def test_a_multiclass_model_falls_back_with_the_reason(caplog):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_leaves": 4},
        lgb.Dataset(x, rng.integers(0, 3, 500)),
        3,
    )
    with caplog.at_level(logging.WARNING, logger="serving.model.explainer"):
        explainer = Explainer.for_booster(booster)
    assert explainer.uses_fallback and "num_class=3" in caplog.text


def test_memory_is_stated_and_linear_in_the_nodes():
    small, _ = _train(dict(num_leaves=31, rounds=10), seed=1)
    large, _ = _train(dict(num_leaves=31, rounds=40), seed=1)
    a, b = Explainer.for_booster(small), Explainer.for_booster(large)
    assert 0 < a.memory_bytes < b.memory_bytes < 8 * a.memory_bytes
    assert b.memory_bytes / (2 * large.num_trees() * 31) < 600  # bytes per node, for ~30 splits a tree


def test_the_memory_bound_is_checked_against_the_memory_stated():
    booster, x = _train(dict(num_leaves=40, rounds=12, min_data_in_leaf=2), seed=3)  # categorical splits too
    stated = Explainer.for_booster(booster).memory_bytes
    assert stated > 100_000
    at_bound = Explainer.for_booster(booster, max_memory_mb=stated / 2**20)
    assert not at_bound.uses_fallback and at_bound.memory_bytes == stated
    assert np.abs(at_bound.contributions(x) - booster.predict(x, pred_contrib=True)[:, :-1]).max() < TOL
    assert Explainer.for_booster(booster, max_memory_mb=0.99 * stated / 2**20).uses_fallback


def test_a_bundle_builds_its_explainer_once_and_top_reasons_use_it(synthetic_claims):
    from features.build import available_features, build_features
    from serving.model.bundle import ModelBundle
    from serving.model.encoding import FeatureEncoder
    from serving.model.scorer import top_reasons

    feats = available_features(synthetic_claims)
    table = build_features(synthetic_claims, feats).head(400)
    enc = FeatureEncoder.fit(table, feats)
    matrix = enc.transform(table)
    y = synthetic_claims["true_fraud"].head(400).astype(int).to_numpy()
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 5},
        lgb.Dataset(matrix, y, categorical_feature=enc.categorical_indices),
        20,
    )
    bundle = ModelBundle("fraud", "true_fraud", booster, enc)
    assert bundle.explainer is bundle.explainer

    reasons = top_reasons(bundle, table, matrix)
    contrib = booster.predict(matrix, pred_contrib=True)[:, :-1]
    for i, row in enumerate(reasons):
        expected = [j for j in np.argsort(-contrib[i], kind="stable")[:3] if contrib[i, j] > 0]
        assert [r["feature"] for r in row] == [bundle.features[j] for j in expected]
        assert [r["contribution"] for r in row] == pytest.approx([contrib[i, j] for j in expected], abs=TOL)


def test_stable_values_of_a_row_do_not_depend_on_the_rows_beside_it():
    booster, x = _train(CASES[5], seed=9)
    explainer = Explainer.for_booster(booster)
    together = explainer.contributions(x[:150], stable=True)
    for i in (0, 7, 64, 149):
        np.testing.assert_array_equal(explainer.contributions(x[i : i + 1], stable=True)[0], together[i])
        np.testing.assert_array_equal(explainer.contributions(x[i : i + 3], stable=True)[0], together[i])
    assert np.abs(together - booster.predict(x[:150], pred_contrib=True)[:, :-1]).max() < TOL

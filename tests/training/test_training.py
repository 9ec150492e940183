"""Training, evaluation, routing and the registry, against a real MLflow store (SQLite) in a temp dir.

The tests that train are marked slow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import catalog
from features.build import build_features
from features.config import Settings
from features.data.synthetic import generate_claims
from serving.model.registry import load_bundle
from serving.model.routing import RoutingPolicy
from training import registry
from training.config import LightGBMConfig, TrainingConfig, load_training_config
from training.pipeline import train
from training.split import time_split

CLAIMS = 50_000


@pytest.fixture(scope="module")
def claims_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "claims.parquet"
    generate_claims(CLAIMS, seed=17).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    home = tmp_path_factory.mktemp("state")
    settings = Settings(home=home).resolved().ensure_dirs()
    registry.configure(settings)
    return settings


@pytest.fixture(scope="module")
def first(claims_file, store):
    """One training run, promoted to champion."""
    result = train(str(claims_file), "synthetic", store, TrainingConfig())
    registry.configure(store)
    registry.promote("average_precision", 0.0, "tests", "first model")
    return result


@pytest.mark.slow
def test_both_models_are_registered_as_challenger_and_promoted(first):
    for task in ("fraud", "fast_track"):
        challenger = registry.version_for(task, registry.CHALLENGER)
        champion = registry.version_for(task, registry.CHAMPION)
        assert challenger.run_id == first.run_id and champion.version == challenger.version
        assert champion.tags["promoted_by"] == "tests" and champion.tags["promoted_reason"] == "first model"


@pytest.mark.slow
def test_registered_champion_scores_like_the_trained_bundle(first, claims_file):
    claims = pd.read_parquet(claims_file).head(500)
    table = build_features(claims, first.bundles["fraud"].features)
    loaded = load_bundle("fraud")
    trained = first.bundles["fraud"]
    np.testing.assert_array_equal(
        loaded.predict(loaded.encoder.transform(table)), trained.predict(trained.encoder.transform(table))
    )


@pytest.mark.slow
def test_training_twice_with_the_same_data_and_seed_gives_the_same_model(first, store, tmp_path):
    # 12,000 claims and at most 60 rounds keep it quick: validation, features, early stopping, the
    # refit and its out-of-fold calibration boosters all run, against the same champion
    data = tmp_path / "claims.parquet"
    generate_claims(12_000, seed=21).to_parquet(data)
    cfg = TrainingConfig(lightgbm=LightGBMConfig(max_rounds=60))
    once, again = (train(str(data), "synthetic", store, cfg) for _ in range(2))
    for task in ("fraud", "fast_track"):
        assert again.bundles[task].booster.model_to_string() == once.bundles[task].booster.model_to_string()
        assert again.selected[task].booster.model_to_string() == once.selected[task].booster.model_to_string()
        assert again.bundles[task].metadata["refit"]["refit"] is True
    assert again.metrics == once.metrics


@pytest.mark.slow
def test_an_equal_or_worse_challenger_is_refused_and_the_champion_stays(first, claims_file, store, tmp_path):
    worse_cfg = tmp_path / "worse.yaml"
    worse_cfg.write_text("lightgbm:\n  num_leaves: 2\n  max_rounds: 3\n  learning_rate: 0.01\n")
    champion_before = registry.version_for("fraud", registry.CHAMPION).version
    train(str(claims_file), "synthetic", store, load_training_config(worse_cfg))
    registry.configure(store)
    with pytest.raises(registry.PromotionRefused, match="refuse"):
        registry.promote("average_precision", 0.0, "tests", "worse")
    assert registry.version_for("fraud", registry.CHAMPION).version == champion_before


@pytest.mark.slow
def test_probabilities_are_calibrated_on_the_test_period(first):
    assert first.metrics["fraud.test.calibration_error"] < 0.01
    assert first.metrics["fast_track.test.calibration_error"] < 0.06
    rate, mean = first.metrics["fraud.test.positive_rate"], first.metrics["fraud.test.mean_score"]
    assert abs(rate - mean) < 0.01


@pytest.mark.slow
def test_models_rank_well_on_the_later_period(first):
    assert 0.75 < first.metrics["fraud.test.roc_auc"] < 0.97
    assert first.metrics["fast_track.test.roc_auc"] > 0.65
    assert first.metrics["fraud.test.recall_at_capacity"] > 3 * 0.03  # far better than referring at random


@pytest.mark.slow
def test_more_of_a_monotone_feature_never_lowers_the_fraud_score(first, claims_file):
    """Every feature the catalog marks monotone is constrained in the fraud model (training/fit.py): raising
    one, the others fixed, never lowers a claim's score; and prior confirmed fraud, the claimant's and the
    linked group's, does raise some scores (a model that ignored them would be monotone too)."""
    bundle = first.bundles["fraud"]
    monotone = [name for name in bundle.features if name in catalog.BY_NAME and catalog.BY_NAME[name].monotone > 0]
    assert {"claimant_prior_fraud", "group_prior_fraud"} <= set(monotone), bundle.features
    claims = pd.read_parquet(claims_file).sample(2_000, random_state=0)
    table = build_features(claims, bundle.features)

    def scores(col: str, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        matrix = bundle.encoder.transform(table.assign(**{col: values}))
        return bundle.predict_raw(matrix), bundle.predict(matrix)

    for col in monotone:
        base = table[col].fillna(0)
        step = float(base.max() - base.min()) / 3 or 1.0
        before = scores(col, base)
        for k in range(1, 4):
            after = scores(col, base + k * step)
            for kind, old, new in zip(("raw", "calibrated"), before, after):
                drop = float((old - new).max())
                assert drop <= 1e-12, f"{col} + {k * step:g} lowered a {kind} fraud score by {drop:.3g}"
            before = after
    for col in ("claimant_prior_fraud", "group_prior_fraud"):
        base = table[col].fillna(0)
        assert (scores(col, base + 1)[0] > scores(col, base)[0]).any(), f"{col} never raises a fraud score"


@pytest.mark.slow
def test_routing_respects_siu_capacity_and_leakage_on_validation(first, claims_file):
    policy = first.policy
    assert policy.siu_threshold is not None and policy.fast_track_threshold is not None
    kpis = policy.expected_kpis
    assert 0.0 < kpis["share_siu_referral"] <= 0.045  # capacity 3% chosen on validation; test may drift a little
    assert kpis["fast_track_leakage"] <= 0.01
    assert kpis["fraud_caught"] > kpis["share_siu_referral"] * 3


@pytest.mark.slow
def test_one_claim_routes_as_the_table_does(first, claims_file):
    claims = pd.read_parquet(claims_file).tail(400)
    fraud, fast = first.bundles["fraud"], first.bundles["fast_track"]
    table = build_features(claims, sorted(set(fraud.features) | set(fast.features)))
    pf, pt = fraud.predict(fraud.encoder.transform(table)), fast.predict(fast.encoder.transform(table))
    routes, fired = first.policy.route_table(table, pf, pt)
    assert set(routes) >= {"standard", "fast_track"}
    policy = RoutingPolicy.from_dict(first.policy.to_dict())
    for i in range(len(table)):
        values = {k: (None if pd.isna(v) else v) for k, v in table.iloc[i].items()}
        assert policy.route_one(values, pf[i], pt[i]) == (routes[i], fired[i])


@pytest.mark.slow
def test_data_failing_validation_is_refused_and_the_champion_is_untouched(first, claims_file, store, tmp_path):
    from features.errors import ValidationFailed

    bad = pd.read_parquet(claims_file)
    bad.loc[:50, "claimed_amount"] = -1.0
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path)
    before = {t: registry.version_for(t, registry.CHAMPION).version for t in ("fraud", "fast_track")}
    challenger_before = registry.version_for("fraud", registry.CHALLENGER).version
    with pytest.raises(ValidationFailed) as exc:
        train(str(path), "synthetic", store, TrainingConfig())
    assert exc.value.report_path and any("claimed_amount" in line for line in exc.value.lines)
    registry.configure(store)
    assert {t: registry.version_for(t, registry.CHAMPION).version for t in ("fraud", "fast_track")} == before
    assert registry.version_for("fraud", registry.CHALLENGER).version == challenger_before


def test_time_split_orders_periods_with_gaps():
    dates = pd.Series(pd.date_range("2022-01-01", periods=1000, freq="D"))
    split = time_split(dates, TrainingConfig().split)
    assert dates[split.train].max() < dates[split.valid].min() < dates[split.valid].max() < dates[split.test].min()
    assert (dates[split.valid].min() - dates[split.train].max()).days > 60
    explicit = time_split(dates, TrainingConfig(split={"test_start": "2024-06-01", "valid_start": "2024-01-01"}).split)
    assert dates[explicit.test].min() == pd.Timestamp("2024-06-01")


def test_a_training_config_typo_is_named(tmp_path):
    from features.errors import ConfigError

    path = tmp_path / "t.yaml"
    path.write_text("lightgbm:\n  num_leafs: 10\n")
    with pytest.raises(ConfigError, match="lightgbm.num_leafs"):
        load_training_config(path)


@pytest.mark.slow
def test_score_command_writes_scores_routes_and_reasons(first, store, tmp_path, monkeypatch, capsys):
    import json

    from pipelines.cli import main

    monkeypatch.setenv("CLAIMSCORE_HOME", str(store.home))
    data, out = tmp_path / "new.parquet", tmp_path / "scored.parquet"
    generate_claims(1_500, seed=23, start="2025-01-01", years=0.5).to_parquet(data)
    assert main(["score", "--data", str(data), "--out", str(out)]) == 0, capsys.readouterr().err
    scored = pd.read_parquet(out)
    assert len(scored) == 1_500 and scored["claim_id"].is_unique
    assert set(scored["route"]) <= {"fast_track", "standard", "specialist", "siu_referral"}
    assert scored["fraud_score"].between(0, 1).all() and scored["fast_track_score"].between(0, 1).all()
    top = scored.sort_values("fraud_score").iloc[-1]
    reasons = json.loads(top["fraud_reasons"])
    assert 1 <= len(reasons) <= 3 and all(r["contribution"] > 0 and r["text"] for r in reasons)
    assert [r["contribution"] for r in reasons] == sorted((r["contribution"] for r in reasons), reverse=True)


def test_score_without_a_champion_is_one_line(tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.setenv("CLAIMSCORE_HOME", str(tmp_path / "empty"))
    data = tmp_path / "c.parquet"
    generate_claims(100, seed=1).to_parquet(data)
    assert main(["score", "--data", str(data), "--out", str(tmp_path / "s.csv")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "no champion" in err[0]


@pytest.mark.slow
def test_tuning_keeps_the_best_trial_on_validation(claims_file, store):
    result = train(str(claims_file), "synthetic", store, TrainingConfig(refit=False), tune_trials=2)
    for task in ("fraud", "fast_track"):
        trials = result.bundles[task].metadata["tuning"]
        assert len(trials) == 3 and trials[1]["num_leaves"] != trials[2]["num_leaves"]  # defaults + 2 draws
        best = max(t["validation_score"] for t in trials)
        assert result.metrics[f"{task}.valid.average_precision"] == pytest.approx(best)

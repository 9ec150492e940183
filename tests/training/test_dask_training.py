"""``claimscore train --dask-workers 2``: features built on Dask and boosters fitted by LightGBM's
distributed training land within :data:`training.distributed.METRIC_TOLERANCE` of an in-process run
on the same claims, through the same split, calibration, routing and registration.

The early-stopping rule applied to a Dask booster's validation curve is held to LightGBM's own
callback on the same booster recipe, so "the best round" means the same thing on both paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.build import available_features, build_features
from features.config import Settings
from pipelines.distributed import local_cluster
from serving.model.registry import load_bundle
from training import registry
from training.config import TrainingConfig
from training.distributed import METRIC_TOLERANCE, DaskTrainer, early_stopping, validation_curve

pytestmark = pytest.mark.slow  # trains on Dask clusters


@pytest.fixture(scope="module")
def in_process(champion) -> tuple[Path, dict, dict]:
    """The session's champion (40,000 claims, no refit, trained in process): its data, and its run's
    parameters and metrics."""
    import mlflow

    home = champion[0]
    registry.configure(Settings(home=home).resolved())
    run = mlflow.get_run(registry.version_for("fraud", registry.CHAMPION).run_id)
    return home / "claims.parquet", run.data.params, run.data.metrics


@pytest.fixture(scope="module")
def on_dask(in_process, tmp_path_factory):
    """``claimscore train --dask-workers 2 --no-refit`` on the champion's claims, as a user runs it
    (worker processes; identifiers hashed with the champion's secret), and its state."""
    import contextlib
    import io

    from pipelines.cli import main

    home = tmp_path_factory.mktemp("on_dask")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv("CLAIMSCORE_HOME", str(home))
        mp.setenv("CLAIMSCORE_DEMO", "1")
        code = main(["train", "--data", str(in_process[0]), "--dask-workers", "2", "--no-refit"])
    assert code == 0, out.getvalue()
    return home, out.getvalue()


def test_dask_training_lands_within_the_stated_tolerance_of_in_process(in_process, on_dask):
    import mlflow

    _, local_params, local_metrics = in_process
    home, stdout = on_dask
    assert "training on Dask: lightgbm.dask on 2 Dask worker(s)" in stdout
    experiment = registry.configure(Settings(home=home).resolved())
    runs = mlflow.search_runs(experiment_ids=[experiment], output_format="list")
    assert len(runs) == 1
    params, metrics = runs[0].data.params, runs[0].data.metrics
    assert params["fitted"] == "lightgbm.dask on 2 Dask worker(s)" and local_params["fitted"] == "in process"
    # the same claims, hashed alike, cut into the same periods
    assert params["data_fingerprint"] == local_params["data_fingerprint"]
    assert {k: v for k, v in params.items() if k.startswith("period.")} == {
        k: v for k, v in local_params.items() if k.startswith("period.")
    }
    for task in ("fraud", "fast_track"):
        for metric, tolerance in METRIC_TOLERANCE.items():
            dask_value, local_value = metrics[f"{task}.test.{metric}"], local_metrics[f"{task}.test.{metric}"]
            print(f"{task}.test.{metric}: Dask {dask_value:.4f}, in process {local_value:.4f}")
            assert abs(dask_value - local_value) <= tolerance, (task, metric, dask_value, local_value)
        bundle = load_bundle(task, registry.CHALLENGER)
        assert bundle.metadata["fitted"] == "lightgbm.dask on 2 Dask worker(s)"
        assert 0 < bundle.booster.current_iteration() < TrainingConfig().lightgbm.max_rounds  # stopped early


def test_boosters_of_fixed_rounds_on_dask_are_reproducible_and_rank_as_in_process():
    """The refit's and its calibration folds' boosters: a fixed number of rounds, no validation."""
    from sklearn.metrics import roc_auc_score

    from training.fit import IN_PROCESS

    rng = np.random.default_rng(9)
    x = rng.normal(size=(8_000, 6))
    y = (x[:, 0] - x[:, 1] * x[:, 2] + rng.normal(size=len(x)) > 1.0).astype(float)
    weight = np.where(y > 0, 3.0, 1.0)
    params = {"objective": "binary", "verbose": -1, "seed": 1, "num_threads": 1, "deterministic": True}
    trees = []
    for _ in range(2):  # fresh clusters: other ports, other task names, the same ranks for the same rows
        with local_cluster(n_workers=2) as client:
            on_dask = DaskTrainer(client).fit(params, x[:6_000], y[:6_000], weight[:6_000], [], 60)
        trees.append(on_dask.model_to_string().split("parameters:")[0])
    assert trees[0] == trees[1]  # the workers' ranks were drawn anew each fit: one of two models
    local = IN_PROCESS.fit(params, x[:6_000], y[:6_000], weight[:6_000], [], 60)
    assert on_dask.current_iteration() == local.current_iteration() == 60
    auc = [roc_auc_score(y[6_000:], b.predict(x[6_000:])) for b in (on_dask, local)]
    assert abs(auc[0] - auc[1]) <= METRIC_TOLERANCE["roc_auc"], auc


def test_features_built_on_dask_equal_features_built_in_process(in_process):
    import pandas as pd

    claims = pd.read_parquet(in_process[0]).head(6_000)
    feats = available_features(claims)
    with local_cluster(n_workers=2, processes=False) as client:
        on_dask = DaskTrainer(client).features(claims, feats, None)
    local = build_features(claims, feats)
    pd.testing.assert_frame_equal(on_dask, local, check_dtype=False)


def test_the_early_stopping_rule_is_lightgbms_own():
    import lightgbm as lgb

    rng = np.random.default_rng(5)
    x = rng.normal(size=(6_000, 8))
    y = (x[:, 0] + 0.8 * x[:, 1] * x[:, 2] + rng.normal(scale=1.5, size=len(x)) > 1.2).astype(float)
    xv = rng.normal(size=(3_000, 8))
    yv = (xv[:, 0] + 0.8 * xv[:, 1] * xv[:, 2] + rng.normal(scale=1.5, size=len(xv)) > 1.2).astype(float)
    params = {"objective": "binary", "metric": "average_precision", "verbose": -1, "seed": 3, "num_threads": 1}
    params |= {"learning_rate": 0.3, "num_leaves": 31, "deterministic": True}
    for patience in (5, 20):
        stopped = lgb.train(
            params,
            lgb.Dataset(x, y),
            400,
            valid_sets=[lgb.Dataset(xv, yv)],
            callbacks=[lgb.early_stopping(patience, verbose=False)],
        )
        assert stopped.best_iteration < 400 - patience  # it did stop early: the rule is exercised
        full = lgb.train(params, lgb.Dataset(x, y), 400)
        best, did_stop = early_stopping(validation_curve(full, xv, yv), patience)
        assert did_stop and best == stopped.best_iteration, (patience, best, stopped.best_iteration)
    curve = np.array([0.1, 0.3, 0.3, 0.2])
    assert early_stopping(curve, 5) == (2, False)  # the first of equal bests; the curve ends before patience


def test_a_bad_dask_option_is_one_line(cli, in_process):
    claims_file = in_process[0]
    result = cli("train", "--data", claims_file, "--dask-workers", "2", "--scheduler", "tcp://127.0.0.1:9")
    assert result.code == 2 and "give --dask-workers or --scheduler, not both" in result.err
    result = cli("train", "--data", claims_file, "--scheduler", "tcp://127.0.0.1:9")
    assert result.code != 0 and "no Dask scheduler answers at tcp://127.0.0.1:9" in result.err + result.out
    assert "Traceback" not in result.err + result.out

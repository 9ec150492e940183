"""Fit one LightGBM model: early stopping on validation only, class balance, monotone constraints,
then calibration on the validation period."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.catalog import Feature
from serving.model.bundle import Calibration, ModelBundle
from serving.model.encoding import FeatureEncoder
from training.config import TrainingConfig


def fit_model(
    task: str,
    label: str,
    features: Sequence[Feature],
    train_table: pd.DataFrame,
    y_train: np.ndarray,
    valid_table: pd.DataFrame,
    y_valid: np.ndarray,
    cfg: TrainingConfig,
    metadata: dict | None = None,
    trainer: Trainer | None = None,
) -> ModelBundle:
    """Train, early-stop and calibrate a binary model; deterministic for a config and data (and,
    on Dask, for the workers' share of the rows). ``trainer``: where the booster is fitted (in this
    process by default, :class:`training.distributed.DaskTrainer` on a cluster)."""
    encoder = FeatureEncoder.fit(train_table, features)
    x_train, x_valid = encoder.transform(train_table), encoder.transform(valid_table)
    y_train, y_valid = np.asarray(y_train, dtype=np.float64), np.asarray(y_valid, dtype=np.float64)
    lg = cfg.lightgbm
    weights = class_weights(y_train, cfg)
    params = lgb_params(task, features, cfg)
    cats = encoder.categorical_indices
    booster = (trainer or IN_PROCESS).fit(
        params, x_train, y_train, weights, cats, lg.max_rounds, (x_valid, y_valid), lg.early_stopping_rounds
    )
    raw_valid = booster.predict(x_valid)
    calibration = fit_calibration(raw_valid, y_valid, cfg.calibration)
    meta = {
        "best_iteration": booster.current_iteration(),
        "train_rows": len(y_train),
        "params": params,
        "positive_weight": float(weights.max()) if weights is not None else 1.0,
        "fitted": (trainer or IN_PROCESS).describe(),
        **(metadata or {}),
    }
    return ModelBundle(task, label, booster, encoder, calibration, meta)


def lgb_params(task: str, features: Sequence[Feature], cfg: TrainingConfig) -> dict:
    """LightGBM parameters for a task: the config's settings, the seed, monotone constraints."""
    lg = cfg.lightgbm
    params = {
        "objective": "binary",
        "metric": "average_precision",
        "verbose": -1,
        "seed": cfg.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": lg.num_threads,
        "num_leaves": lg.num_leaves,
        "learning_rate": lg.learning_rate,
        "min_child_samples": lg.min_child_samples,
        "feature_fraction": lg.feature_fraction,
        "bagging_fraction": lg.bagging_fraction,
        "bagging_freq": lg.bagging_freq,
        "lambda_l2": lg.lambda_l2,
        "cat_smooth": lg.cat_smooth,
        "max_cat_to_onehot": lg.max_cat_to_onehot,
    }
    if lg.monotone and task == "fraud":
        params["monotone_constraints"] = [f.monotone if f.kind == "numeric" else 0 for f in features]
        params["monotone_constraints_method"] = "advanced"
    return params


def class_weights(y: np.ndarray, cfg: TrainingConfig) -> np.ndarray | None:
    """Weights that lift the positives to a quarter of the weight (None when balance is off or not needed)."""
    pos, neg = y.sum(), len(y) - y.sum()
    if cfg.lightgbm.balance_classes and 0 < pos < neg / 3:
        return np.where(y > 0, neg / (3 * pos), 1.0)
    return None


def train_booster(
    params: dict,
    x: np.ndarray,
    y: np.ndarray,
    cats: list[int],
    rounds: int,
    cfg: TrainingConfig,
    trainer: Trainer | None = None,
):
    """A booster with a fixed number of rounds (no early stopping): for refits."""
    y = np.asarray(y, dtype=np.float64)
    return (trainer or IN_PROCESS).fit(params, x, y, class_weights(y, cfg), cats, rounds)


class Trainer:
    """Where boosters are fitted and feature tables built: in this process. The Dask trainer
    (:class:`training.distributed.DaskTrainer`) does both on a cluster; everything else in a training
    run (split, calibration, evaluation, routing, registration) is the same code either way."""

    def describe(self) -> str:
        return "in process"

    def features(self, frame: pd.DataFrame, features: Sequence[Feature], extras) -> pd.DataFrame:
        from features.build import build_features

        return build_features(frame, features, extras)

    def fit(
        self,
        params: dict,
        x: np.ndarray,
        y: np.ndarray,
        weight: np.ndarray | None,
        cats: list[int],
        rounds: int,
        valid: tuple[np.ndarray, np.ndarray] | None = None,
        patience: int = 0,
    ):
        """A booster of at most ``rounds`` rounds; with ``valid``, early-stopped on it (no gain in
        ``patience`` rounds) and cut to its best round."""
        import lightgbm as lgb

        train_set = lgb.Dataset(x, y, weight=weight, categorical_feature=cats, free_raw_data=valid is None)
        if valid is None:
            return lgb.train(params, train_set, num_boost_round=rounds)
        valid_set = lgb.Dataset(valid[0], valid[1], categorical_feature=cats, reference=train_set)
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=rounds,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(patience, verbose=False)],
        )
        return booster if booster.best_iteration <= 0 else trim(booster, booster.best_iteration)


IN_PROCESS = Trainer()


def trim(booster, rounds: int):
    """Keep only the trees of the first ``rounds`` rounds (the best validation round: so predict
    needs no arguments)."""
    import lightgbm as lgb

    return lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds))


def fit_calibration(raw: np.ndarray, y: np.ndarray, kind: str) -> Calibration:
    """Isotonic (or Platt) mapping of raw validation scores to observed rates."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    raw = np.asarray(raw, dtype=np.float64)
    if kind == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
        return Calibration("isotonic", tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)))
    q = np.clip(raw, 1e-12, 1 - 1e-12)
    lr = LogisticRegression(C=1e6).fit(np.log(q / (1 - q)).reshape(-1, 1), y)
    return Calibration("platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))

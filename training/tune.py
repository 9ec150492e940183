"""``--tune N``: N trials of seeded random search over LightGBM settings, each judged on the
time-ordered validation period (never on random folds). The best trial's model is kept."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from serving.model.bundle import ModelBundle
from training.config import TrainingConfig


def sample_settings(rng: np.random.Generator) -> dict:
    return {
        "num_leaves": int(rng.integers(8, 128)),
        "learning_rate": float(np.exp(rng.uniform(np.log(0.02), np.log(0.2)))),
        "min_child_samples": int(rng.integers(20, 300)),
        "feature_fraction": float(rng.uniform(0.5, 1.0)),
        "lambda_l2": float(np.exp(rng.uniform(np.log(0.1), np.log(30)))),
    }


def tune(
    trials: int,
    cfg: TrainingConfig,
    fit: Callable[[TrainingConfig], ModelBundle],
    score: Callable[[ModelBundle], float],
) -> tuple[ModelBundle, list[dict]]:
    """Fit the default settings and ``trials`` sampled ones; return the best by ``score`` (higher is
    better, computed on validation) and every trial's settings and score."""
    rng = np.random.default_rng(cfg.seed)
    candidates = [{}] + [sample_settings(rng) for _ in range(trials)]
    best, best_score, log = None, -np.inf, []
    for i, settings in enumerate(candidates):
        trial_cfg = cfg.model_copy(update={"lightgbm": cfg.lightgbm.model_copy(update=settings)})
        bundle = fit(trial_cfg)
        value = score(bundle)
        log.append({"trial": i, **settings, "validation_score": value})
        if value > best_score:
            best, best_score = bundle, value
    assert best is not None
    best.metadata["tuning"] = log
    return best, log

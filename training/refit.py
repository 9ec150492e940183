"""Refit the chosen model on all matured labelled data before it is registered and served.

Selection (early stopping on the validation period) and judgement (the test period) belong to the
model fitted on the train period; its test figures are the run's honest ``{task}.test.*`` metrics.
The model that is registered is then refitted with the same settings on every labelled claim
reported at least ``gap_days`` before the data's last report date (later claims' outcomes may still
be maturing, so they are left out): train, validation and test periods together.

Iterations (:func:`scaled_iterations`): the early-stopped number of boosting rounds times the growth
in training rows, ``round(best_iteration * refit_rows / train_rows)``, at least 1 and at most
``lightgbm.max_rounds``. With the learning rate and leaves fixed, a larger sample supports
proportionally more rounds before it over-fits; this is the usual rule after early stopping on a
hold-out (k-fold practice scales by k/(k-1) for the same reason).

Calibration is refitted on out-of-fold predictions, not on the refit booster's own (in-sample,
over-confident) scores. The refit data is cut at report-date quantiles into :data:`FOLDS` blocks;
for each block after the first, a booster of the same recipe and the same number of rounds as the
refit booster is fitted on the claims reported before it, less the gap, and scores the block (same
rounds, because with class weighting and early-stopped round counts the raw score's scale depends
mostly on the rounds: fold boosters with fewer rounds calibrated the refit booster 3x too high on
synthetic data). The calibrator maps those
scores, of claims the booster never saw, to observed rates, and is applied to the full refit
booster. Holding the latest period out of the refit booster instead would calibrate honestly too,
but the served model would then never see the newest labelled claims, which is what the refit is
for. When the out-of-fold blocks hold no positive (or no negative), the selected model's calibration
is kept and the metadata says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.catalog import Feature
from serving.model.bundle import ModelBundle
from serving.model.encoding import FeatureEncoder
from training.config import TrainingConfig
from training.fit import Trainer, fit_calibration, train_booster

FOLDS = 3
RULE = "round(best_iteration * refit_rows / train_rows), clipped to [1, lightgbm.max_rounds]"


def scaled_iterations(best_iteration: int, train_rows: int, rows: int, max_rounds: int) -> int:
    """Boosting rounds for ``rows`` training rows, from early stopping on ``train_rows`` (:data:`RULE`)."""
    return int(min(max_rounds, max(1, round(best_iteration * rows / max(train_rows, 1)))))


def refit_model(
    selected: ModelBundle,
    features: Sequence[Feature],
    table: pd.DataFrame,
    y: np.ndarray,
    report_date: pd.Series,
    rows: np.ndarray,
    gap_days: int,
    cfg: TrainingConfig,
    trainer: Trainer | None = None,
) -> ModelBundle:
    """The selected model's recipe refitted on the labelled claims in ``rows`` (matured claims)."""
    lab = np.asarray(rows) & ~np.isnan(y)
    t = pd.to_datetime(report_date)[lab].reset_index(drop=True)
    part, yy = table[lab], np.asarray(y[lab], dtype=np.float64)
    encoder = FeatureEncoder.fit(part, features)
    x = encoder.transform(part)
    cats = encoder.categorical_indices
    params = selected.metadata["params"]
    best, train_rows = int(selected.metadata["best_iteration"]), int(selected.metadata["train_rows"])

    def rounds(n: int) -> int:
        return scaled_iterations(best, train_rows, n, cfg.lightgbm.max_rounds)

    booster = train_booster(params, x, yy, cats, rounds(len(yy)), cfg, trainer)
    calibration, how = _oof_calibration(params, x, yy, t, cats, gap_days, cfg, booster.current_iteration(), trainer)
    if calibration is None:
        calibration = selected.calibration
    start, end = t.min(), t.max()
    info = {
        "refit": True,
        "period": f"{start:%Y-%m-%d} to {end:%Y-%m-%d}",
        "start": f"{start:%Y-%m-%d}",
        "end": f"{end:%Y-%m-%d}",
        "rows": int(len(yy)),
        "positives": int(yy.sum()),
        "iterations": booster.current_iteration(),
        "selection_iterations": best,
        "selection_rows": train_rows,
        "iterations_rule": RULE,
        "calibration": how,
        "maturity": f"claims reported at least {gap_days} days before the data's last report date",
    }
    meta = {
        **selected.metadata,
        "best_iteration": booster.current_iteration(),
        "train_rows": int(len(yy)),
        "refit": info,
        "seen_until": info["end"],
    }
    return ModelBundle(selected.task, selected.label, booster, encoder, calibration, meta)


def _oof_calibration(params, x, y, t: pd.Series, cats, gap_days: int, cfg: TrainingConfig, rounds: int, trainer):
    """A calibrator fitted on time-ordered out-of-fold predictions, and a sentence saying how."""
    gap = pd.Timedelta(days=gap_days)
    bounds = [t.quantile(j / FOLDS) for j in range(1, FOLDS)]
    raw, truth, used = [], [], []
    for j, lo in enumerate(bounds):
        hi = bounds[j + 1] if j + 1 < len(bounds) else None
        fit = (t < lo - gap).to_numpy()
        score = ((t >= lo) & (t < hi) if hi is not None else t >= lo).to_numpy()
        if not score.any() or y[fit].sum() < 1 or y[fit].sum() == fit.sum():
            continue
        booster = train_booster(params, x[fit], y[fit], cats, rounds, cfg, trainer)
        raw.append(booster.predict(x[score]))
        truth.append(y[score])
        used.append(f"{t[score].min():%Y-%m-%d} to {t[score].max():%Y-%m-%d}")
    if not raw or not 0 < np.concatenate(truth).sum() < len(np.concatenate(truth)):
        return None, "kept from the selected model (no out-of-fold block with both outcomes)"
    raw_all, y_all = np.concatenate(raw), np.concatenate(truth)
    how = (
        f"{cfg.calibration} on out-of-fold predictions of {len(y_all):,} claims "
        f"({int(y_all.sum()):,} positives; blocks {', '.join(used)}), each scored by a booster fitted "
        f"only on claims reported before it (less the {gap_days}-day gap), {rounds} rounds"
    )
    return fit_calibration(raw_all, y_all, cfg.calibration), how

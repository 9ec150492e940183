"""Training on Dask: ``claimscore train --dask-workers N`` (or ``--scheduler ADDRESS``).

Two parts of a training run move to the cluster; everything else (validation, the time split,
calibration, evaluation, the routing policy, the MLflow run and the registration) is the very code of
an in-process run (:func:`training.pipeline.train` with a :class:`DaskTrainer`):

- **features**: :func:`pipelines.distributed.build_features_dask`, partition by partition (the
  point-in-time history and link features with their shuffles), collected in the claims' order;
- **boosters**: LightGBM's own distributed training (``lightgbm.dask``, data-parallel: each worker
  holds its share of the rows, histograms are summed over the network LightGBM opens between the
  workers), for the model of the train period, the refit and the refit's out-of-fold calibration
  boosters alike.

Early stopping: ``lightgbm.dask`` does not support it (LightGBM issue #3712; with an early-stopping
callback each worker judges its own share of the validation rows and one may stop while the others
wait, #6197). So the booster is fitted for a number of rounds, the validation period is scored round
by round in this process (raw scores summed tree by tree) and LightGBM's own rule is applied to that
curve: the best round so far, stop once ``patience`` rounds bring no gain. When the best round is
too close to the end to know it is the best, the booster is fitted again with twice the rounds (the
same rows on the same workers: its first rounds are the same trees). The booster is then cut to its
best round, as in process.

Results are not bit-equal to in-process training: data-parallel LightGBM finds its feature bins on
each worker's share and sums histograms across workers, so splits can differ in the last bits.
``tests/training/test_dask_training.py`` holds the test metrics to the in-process run's within
:data:`METRIC_TOLERANCE`.

Memory: the workers hold the training rows (float64, encoded) split between them; this process holds
the claims and the feature table as an in-process run does (validation, the split and the policy read
the whole table), so training's peak per process is lower but not bounded by a partition.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.catalog import Feature
from training.fit import Trainer, trim

if TYPE_CHECKING:
    from distributed import Client

METRIC_TOLERANCE = {"roc_auc": 0.02, "average_precision": 0.03}
"""How far a Dask-trained model's test metrics may lie from the in-process model's on the same data
(the test holds to it). Both are small against the metrics' own sampling error on a test period of
a few dozen frauds (68 in the tests' 40,000 synthetic claims: ROC-AUC 0.86 has a standard error of
about 0.04 there); measured: fraud ROC-AUC 0.866 on Dask against 0.855 in process."""
FIRST_ROUNDS_PER_PATIENCE = 4
"""The first fit's rounds, in units of the early-stopping patience (doubled while the curve has not
turned)."""


class DaskTrainer(Trainer):
    """Features and boosters on the Dask cluster a ``distributed`` client is connected to."""

    def __init__(self, client: Client):
        self.client = client

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info()["workers"]))

    def describe(self) -> str:
        return f"lightgbm.dask on {self.workers} Dask worker(s)"

    def features(self, frame: pd.DataFrame, features: Sequence[Feature], extras) -> pd.DataFrame:
        """``build_features(frame, features, extras)``, built on the cluster (rows in ``frame``'s order)."""
        import dask.dataframe as dd

        from pipelines.distributed import PARTITION_ROWS, build_features_dask

        parts = max(2 * self.workers, math.ceil(len(frame) / PARTITION_ROWS))
        bounds = np.linspace(0, len(frame), parts + 1).astype(int)
        # sent to the workers once, not written into the graph (which the scheduler would hold)
        pieces = self.client.scatter([frame.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
        claims = dd.from_delayed(pieces, meta=frame.iloc[:0], verify_meta=False)
        table = build_features_dask(claims, features, extras).compute()
        return table.reindex(frame["claim_id"].to_numpy()).reset_index(drop=True)

    def fit(self, params, x, y, weight, cats, rounds, valid=None, patience=0):
        rows = self._persist(x, y, weight)
        if valid is None:
            return self._boost(params, rows, cats, rounds)
        n = min(rounds, FIRST_ROUNDS_PER_PATIENCE * max(patience, 1))
        while True:
            booster = self._boost(params, rows, cats, n)
            best, stopped = early_stopping(validation_curve(booster, *valid), patience)
            if stopped or n >= rounds:
                return trim(booster, best)
            n = min(rounds, 2 * n)

    def _persist(self, x, y, weight):
        """The rows as dask arrays held on the workers, split evenly (one block per worker): every
        fit of this data sees the same rows on the same workers."""
        import dask.array as da

        bounds = np.linspace(0, len(x), self.workers + 1).astype(int)
        blocks = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        workers = list(self.client.scheduler_info()["workers"])
        arrays = []
        for values in (x, y, weight):
            if values is None:
                arrays.append(None)
                continue
            parts = []
            for i, (a, b) in enumerate(blocks):  # block i on worker i: every array's rows i on one worker
                future = self.client.scatter(values[a:b], workers=[workers[i % len(workers)]])
                parts.append(da.from_delayed(future, shape=(b - a, *values.shape[1:]), dtype=values.dtype))
            arrays.append(da.concatenate(parts))
        return tuple(arrays)

    def _boost(self, params: dict, rows, cats: list[int], rounds: int):
        from lightgbm.dask import DaskLGBMClassifier

        x, y, weight = rows
        own = {k: v for k, v in params.items() if k != "num_threads"}  # each worker uses its own threads
        model = DaskLGBMClassifier(client=self.client, n_estimators=rounds, **own)
        self.client.who_has = self._who_has_in_worker_order
        try:
            with warnings.catch_warnings():  # it sets each worker's threads itself, and says so
                warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
                model.fit(x, y, sample_weight=weight, categorical_feature=cats)
        finally:
            del self.client.who_has  # the client's own method again
        return model.to_local().booster_

    def _who_has_in_worker_order(self, *args, **kwargs) -> dict:
        """``Client.who_has``, listed in the order of the workers that hold the blocks (block i on the
        i-th worker).

        ``lightgbm.dask`` ranks the workers (LightGBM's machine 0, 1, ...) in the order this lists
        them, and the scheduler lists them in the order of a set of random task names. A worker's
        rank decides which features' bins it finds from its rows, so with the ranks drawn anew each
        fit, the same rows gave one of two models (seen: 2 of every 3 runs alike). In block order,
        the same rows give the same trees every time (the test checks)."""
        from distributed import Client

        found = Client.who_has(self.client, *args, **kwargs)
        rank = {w: i for i, w in enumerate(self.client.scheduler_info()["workers"])}
        last = len(rank)
        return dict(sorted(found.items(), key=lambda kv: min((rank.get(w, last) for w in kv[1]), default=last)))


def validation_curve(booster, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The average precision on ``(x, y)`` after each round (LightGBM's ``average_precision``: the
    step-wise precision-recall area, as scikit-learn computes it)."""
    from sklearn.metrics import average_precision_score

    raw = np.zeros(len(x))
    curve = np.empty(booster.current_iteration())
    for i in range(len(curve)):
        raw += booster.predict(x, raw_score=True, start_iteration=i, num_iteration=1)
        curve[i] = average_precision_score(y, raw)
    return curve


def early_stopping(curve: np.ndarray, patience: int) -> tuple[int, bool]:
    """LightGBM's early-stopping rule on a validation curve (higher is better): the best round (1-based,
    the first of equal bests) and whether ``patience`` rounds after it brought no gain within the curve."""
    best = 0
    for i in range(1, len(curve)):
        if curve[i] > curve[best]:
            best = i
        elif i - best >= patience:
            return best + 1, True
    return best + 1, False

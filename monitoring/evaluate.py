"""How the champion models do on labelled claims: the figures training reported for its test period,
computed on any later table."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from features.schema import LABELS
from monitoring.metrics import binary_metrics
from serving.model.scorer import Scorer


def evaluate(
    scorer: Scorer, claims: pd.DataFrame, capacity: float, extras: Mapping[str, object] | None = None
) -> dict[str, dict[str, float]]:
    """Per model task with labelled claims in ``claims``: :func:`binary_metrics` of its scores (the
    referral ``capacity`` is the SIU's share of claims). Tasks with no labelled claim are left out."""
    scored = scorer.score_table(claims, extras)
    out: dict[str, dict[str, float]] = {}
    for task in scorer.bundles:
        y = claims[LABELS[task]].astype("float64").to_numpy()
        labelled = ~np.isnan(y)
        if labelled.any():
            out[task] = binary_metrics(y[labelled], scored[f"{task}_score"].to_numpy()[labelled], capacity)
    return out

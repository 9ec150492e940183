"""Time-ordered split by report date: train, validation, test (the latest claims), with gaps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import ClaimScoreError
from training.config import SplitConfig


class SplitError(ClaimScoreError):
    """The data cannot be split as configured (too little of it, or dates outside it)."""


@dataclass(frozen=True)
class TimeSplit:
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    valid_start: pd.Timestamp
    test_start: pd.Timestamp
    start: pd.Timestamp
    end: pd.Timestamp

    def periods(self) -> dict[str, str]:
        fmt = "%Y-%m-%d"
        return {
            "train": f"{self.start:{fmt}} to {self.valid_start:{fmt}}",
            "valid": f"{self.valid_start:{fmt}} to {self.test_start:{fmt}}",
            "test": f"{self.test_start:{fmt}} to {self.end:{fmt}}",
        }


def time_split(report_date: pd.Series, cfg: SplitConfig) -> TimeSplit:
    """Masks for the three periods; the gap before each boundary is left out of the earlier period."""
    t = pd.to_datetime(report_date)
    if t.isna().any():
        raise SplitError("report_date has missing values: cannot order claims in time")
    start, end = t.min(), t.max()
    test_start = pd.Timestamp(cfg.test_start) if cfg.test_start else t.quantile(1 - cfg.test_fraction)
    valid_start = (
        pd.Timestamp(cfg.valid_start)
        if cfg.valid_start
        else t[t < test_start].quantile(1 - cfg.valid_fraction / (1 - cfg.test_fraction))
    )
    if not start < valid_start < test_start <= end:
        raise SplitError(
            f"split dates must fall inside the data ({start:%Y-%m-%d} to {end:%Y-%m-%d}) in order: "
            f"validation from {valid_start:%Y-%m-%d}, test from {test_start:%Y-%m-%d}"
        )
    gap = pd.Timedelta(days=cfg.gap_days)
    train = (t < valid_start - gap).to_numpy()
    valid = ((t >= valid_start) & (t < test_start - gap)).to_numpy()
    test = (t >= test_start).to_numpy()
    for name, mask in (("train", train), ("validation", valid), ("test", test)):
        if not mask.any():
            raise SplitError(f"the {name} period is empty: shorten split.gap_days or move the split dates")
    return TimeSplit(train, valid, test, valid_start, test_start, start, end)

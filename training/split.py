"""Time-ordered split by report date: train, validation, test (the latest claims), with gaps.

The default split is relative to the data. The test period starts at the report-date quantile
``1 - test_fraction``, moved earlier until it holds ``min_positives`` positives of every label being
trained (at most to :data:`MAX_TEST_SHARE` of the claims); the validation period is chosen the same
way before it (at most :data:`MAX_VALID_SHARE`). Between periods, claims reported within the
label-maturity gap of the next period's start are left out of the earlier period. Explicit dates in
the config replace the quantiles and are not moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import ClaimScoreError
from training.config import DEFAULT_GAP_DAYS, SplitConfig

MAX_TEST_SHARE = 0.4
"""The test period is widened for positives up to this share of the claims, no further."""
MAX_VALID_SHARE = 0.3
"""The validation period is widened for positives up to this share of the claims, no further."""


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
    gap_days: int = DEFAULT_GAP_DAYS
    matured: np.ndarray | None = None
    """Claims reported at least ``gap_days`` before the last report date: their labels have had time
    to mature, so the refit may learn from them."""
    notes: tuple[str, ...] = ()
    """What was chosen for the user and why (gap capped, a period widened), printed and logged."""

    def periods(self) -> dict[str, str]:
        fmt = "%Y-%m-%d"
        return {
            "train": f"{self.start:{fmt}} to {self.valid_start:{fmt}}",
            "valid": f"{self.valid_start:{fmt}} to {self.test_start:{fmt}}",
            "test": f"{self.test_start:{fmt}} to {self.end:{fmt}}",
        }

    @property
    def matured_until(self) -> pd.Timestamp:
        return self.end - pd.Timedelta(days=self.gap_days)


def resolve_gap(cfg: SplitConfig, start: pd.Timestamp, end: pd.Timestamp) -> tuple[int, str | None]:
    """The gap in days and, when the default was capped to the data's span, a note saying so."""
    if cfg.gap_days is not None:
        return cfg.gap_days, None
    span = int((end - start).days)
    cap = int(span * cfg.max_gap_share)
    if cap >= DEFAULT_GAP_DAYS:
        return DEFAULT_GAP_DAYS, None
    return cap, (
        f"label-maturity gap {cap} days instead of {DEFAULT_GAP_DAYS}: capped at {cfg.max_gap_share:.0%} "
        f"of the data's {span}-day span (set split.gap_days to choose)"
    )


def time_split(
    report_date: pd.Series,
    cfg: SplitConfig,
    labels: Mapping[str, np.ndarray] | None = None,
    min_positives: int = 30,
) -> TimeSplit:
    """Masks for the three periods; the gap before each boundary is left out of the earlier period.

    ``labels`` (name -> values, NaN where unlabelled) are the labels being trained: quantile
    boundaries move earlier until each of them has ``min_positives`` positives in the period.
    """
    t = pd.to_datetime(report_date)
    if t.isna().any():
        raise SplitError("report_date has missing values: cannot order claims in time")
    if len(t) < 3:
        raise SplitError(f"{len(t)} claim(s): too few to split into train, validation and test periods")
    start, end = t.min(), t.max()
    gap_days, gap_note = resolve_gap(cfg, start, end)
    gap = pd.Timedelta(days=gap_days)
    notes = [gap_note] if gap_note else []
    labels = dict(labels or {})

    if cfg.test_start:
        test_start = pd.Timestamp(cfg.test_start)
    else:
        test_start = _widen(
            t, t.quantile(1 - cfg.test_fraction), end + pd.Timedelta(days=1), labels, min_positives, MAX_TEST_SHARE
        )
        if test_start < t.quantile(1 - cfg.test_fraction):
            notes.append(f"test period widened to start {test_start:%Y-%m-%d} to hold {min_positives} positives")
    if cfg.valid_start:
        valid_start = pd.Timestamp(cfg.valid_start)
    else:
        before = t[t < test_start]
        if before.empty:
            raise SplitError(f"no claims reported before the test period ({test_start:%Y-%m-%d})")
        quantile = before.quantile(1 - cfg.valid_fraction / (1 - cfg.test_fraction))
        valid_start = _widen(t, quantile, test_start - gap, labels, min_positives, MAX_VALID_SHARE)
        if valid_start < quantile:
            notes.append(f"validation period widened to start {valid_start:%Y-%m-%d} to hold {min_positives} positives")
    if not start < valid_start < test_start <= end:
        raise SplitError(
            f"split dates must fall inside the data ({start:%Y-%m-%d} to {end:%Y-%m-%d}) in order: "
            f"validation from {valid_start:%Y-%m-%d}, test from {test_start:%Y-%m-%d}"
        )
    train = (t < valid_start - gap).to_numpy()
    valid = ((t >= valid_start) & (t < test_start - gap)).to_numpy()
    test = (t >= test_start).to_numpy()
    for name, mask in (("train", train), ("validation", valid), ("test", test)):
        if not mask.any():
            raise SplitError(f"the {name} period is empty: shorten split.gap_days or move the split dates")
    matured = (t <= end - gap).to_numpy()
    return TimeSplit(train, valid, test, valid_start, test_start, start, end, gap_days, matured, tuple(notes))


def _widen(
    t: pd.Series,
    boundary: pd.Timestamp,
    period_end: pd.Timestamp,
    labels: Mapping[str, np.ndarray],
    min_positives: int,
    max_share: float,
) -> pd.Timestamp:
    """Move a period's start earlier than ``boundary`` until every label has ``min_positives``
    positives in [start, period_end), but never so far that the period (from the start up to
    ``period_end``) holds more than ``max_share`` of all claims."""
    dates = t.to_numpy()
    in_reach = dates < np.datetime64(period_end)
    reach = np.sort(dates[in_reach])
    k = min(int(max_share * len(dates)), len(reach))
    floor = pd.Timestamp(reach[-k]) if k else boundary
    start = boundary
    for y in labels.values():
        positive = np.sort(dates[in_reach & (np.nan_to_num(y) > 0)])
        if len(positive) >= min_positives:
            start = min(start, pd.Timestamp(positive[-min_positives]))
    return max(start, min(floor, boundary))

"""Monitoring configuration: drift methods and thresholds, performance, fairness, KPI targets.

``claimscore monitor --monitor-config FILE.yaml`` replaces the defaults key by key (unknown keys are
refused by name, as in the training configuration). The defaults and where they come from:

- drift: Evidently's defaults. At ``large_sample`` rows or more, Wasserstein distance over the
  reference's standard deviation for numbers and Jensen-Shannon distance for categories, each at
  0.1; below it, a Kolmogorov-Smirnov or chi-square test at p < 0.05. A data set has drifted when
  half its columns have. The multivariate signal is NannyML's: the error of reconstructing the
  claims from the reference's principal components, alerting beyond three standard deviations of the
  reference's own chunks.
- fairness: the four-fifths rule (a group's rate at least 0.8 of the most favoured group's), with
  bootstrap intervals as fairlearn's ``MetricFrame`` gives them.
- KPIs: the insurer's plan (fast-tracked claims paid within 3 working days on average, every red
  flag seen by a person, SIU referrals within capacity, fast-track leakage within its cap).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from features.config import load_yaml_model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DriftConfig(_Strict):
    large_sample: int = Field(1_000, ge=1)
    """Values in the window (of a feature, not null) from which distances replace statistical tests
    (small samples get tests: a distance between few values is mostly noise)."""
    numeric_threshold: float = Field(0.1, gt=0)
    """Wasserstein distance over the reference's standard deviation from which a number drifted."""
    categorical_threshold: float = Field(0.1, gt=0, le=1)
    """Jensen-Shannon distance (base 2) from which a category drifted."""
    p_value: float = Field(0.05, gt=0, lt=1)
    """Kolmogorov-Smirnov / chi-square p-value below which a column drifted (small windows), for all
    columns together: each is tested at ``p_value`` over the number of columns (Bonferroni)."""
    score_threshold: float = Field(0.1, gt=0)
    """Wasserstein distance over the reference's standard deviation from which a score drifted."""
    dataset_share: float = Field(0.5, gt=0, le=1)
    """Share of drifted columns from which the data set as a whole has drifted."""
    multivariate_sigmas: float = Field(3.0, gt=0)
    """Reconstruction error beyond the reference's mean by this many of its standard deviations."""
    route_share_change: float = Field(0.05, gt=0, le=1)
    """Change of a route's share of claims (absolute, e.g. 0.05 = 5 points) that alerts."""
    null_rate_change: float = Field(0.1, gt=0, le=1)
    """Rise of a feature's share of missing values (absolute) that alerts."""
    top: int = Field(10, ge=1)
    """Drifted features ranked and plotted in the report."""


class PerformanceConfig(_Strict):
    min_labelled: int = Field(200, ge=1)
    """Labelled claims from which measured performance is reported and judged."""
    min_positives: int = Field(20, ge=1)
    """Positive labels from which measured ranking metrics are judged."""
    min_maturity: float = Field(0.8, ge=0, le=1)
    """Share of the window labelled from which measured figures are judged. Below it the labelled
    claims are the quick ones (a claim settles simply sooner than one disputed), so their figures
    are shown, not alerted on."""
    roc_auc_drop: float = Field(0.05, ge=0, le=1)
    """Fall of ROC-AUC below the test period's (estimated or measured) that alerts."""
    average_precision_drop: float = Field(0.3, ge=0, le=1)
    """Relative fall of average precision below the test period's (measured) that alerts."""
    calibration_error: float = Field(0.05, gt=0, le=1)
    """Expected calibration error (measured) from which calibration alerts."""
    period: str = Field("MS", pattern=r"^(D|W|MS|QS)$")
    """Buckets of the series over time: D (day), W (week), MS (month), QS (quarter)."""


class FairnessConfig(_Strict):
    attributes: tuple[str, ...] = ("claimant_gender", "age_band", "region")
    """Claim columns to compare groups by; ``age_band`` is ``claimant_age`` in ``age_bands``."""
    age_bands: tuple[int, ...] = (25, 40, 60)
    """Edges of the age bands: under 25, 25-39, 40-59, 60 and over."""
    min_ratio: float = Field(0.8, gt=0, le=1)
    """A group's rate against the most favoured group's below which fairness alerts."""
    alert_on: Literal["interval", "estimate"] = "interval"
    """``interval``: alert when the ratio's whole bootstrap interval is below ``min_ratio`` (the gap
    is more than chance); ``estimate``: whenever the point estimate is. Rows below the ratio are
    marked in the report either way."""
    min_group_claims: int = Field(100, ge=1)
    """Claims a group needs to be judged (smaller groups are shown, not judged)."""
    min_group_events: int = Field(10, ge=1)
    """Events (referrals, fast tracks, ...) the most favoured group needs for a ratio to be judged."""
    bootstrap: int = Field(200, ge=10)
    """Bootstrap resamples for the intervals."""
    confidence: float = Field(0.9, gt=0, lt=1)
    promotion_margin: float = Field(0.05, ge=0, le=1)
    """How far a challenger's ratio may fall below the champion's before promotion is refused."""
    seed: int = 0


class KpiConfig(_Strict):
    cycle_time_target_days: float = Field(3.0, gt=0)
    """Average working days from report to payment of fast-tracked claims (the plan's target)."""
    red_flag_score: float | None = Field(None, ge=0, le=1)
    """Fraud score from which a claim is red-flagged (besides a rule firing); unset: the score of the
    reference's riskiest 10% of claims."""
    red_flag_min_share: float = Field(0.99, ge=0, le=1)
    """Share of red-flagged claims that must reach a person (not be fast-tracked)."""
    siu_capacity_tolerance: float = Field(0.1, ge=0)
    """SIU referral rate may exceed the policy's capacity by this share before alerting."""
    leakage_cap: float | None = Field(None, ge=0, le=1)
    """Confirmed-fraud rate among fast-tracked labelled claims that alerts; unset: the training cap
    recorded with the policy, else 0.004."""
    holidays: tuple[str, ...] = ()
    """The insurer's non-working days (YYYY-MM-DD) besides weekends, for working-day cycle times."""
    weekmask: str = "Mon Tue Wed Thu Fri"
    period: str = Field("W", pattern=r"^(D|W|MS|QS)$")
    """Buckets of the KPI series over time."""


class MonitorConfig(_Strict):
    drift: DriftConfig = DriftConfig()
    performance: PerformanceConfig = PerformanceConfig()
    fairness: FairnessConfig = FairnessConfig()
    kpis: KpiConfig = KpiConfig()


def load_monitor_config(path: str | Path | None) -> MonitorConfig:
    """Defaults, overridden by a YAML file; errors name the key."""
    return load_yaml_model(path, MonitorConfig, "monitoring config")

"""Training configuration: the split, LightGBM settings, routing constraints, refit and promotion.

Which file is read (:func:`resolve_training_config`): ``--training-config FILE.yaml`` if given; else
the built-in source's recommended file ``training/configs/<source>.yaml`` if there is one; else the
defaults, whose split is relative to the data (report-date quantiles widened until each period holds
``min_positives`` positives). A file replaces the defaults key by key; it is never merged with the
source's file. Unknown keys are refused by name, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.config import load_yaml_model
from monitoring.config import FairnessConfig
from training.poisoning import PoisoningConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_GAP_DAYS = 60


class SplitConfig(_Strict):
    """Time-ordered split by report date: train, then validation, then test (the latest claims).

    By default the boundaries are relative to the data (:func:`training.split.time_split`): the test
    period is the latest ``test_fraction`` of claims and validation the ``valid_fraction`` before it,
    each widened back in time (up to a bound) until it holds ``min_positives`` positives of every
    label being trained. Explicit ``valid_start`` / ``test_start`` dates replace that.
    """

    valid_fraction: float = Field(0.15, gt=0, lt=0.5)
    """Smallest share of claims in the validation period (widened to hold enough positives)."""
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    """Smallest share of claims in the test period (widened to hold enough positives)."""
    gap_days: int | None = Field(None, ge=0)
    """Label-maturity gap: claims reported this many days before the next period starts are dropped,
    so that outcomes still maturing at the boundary never reach the earlier period's labels; the
    refit leaves out claims reported this close to the data's last report date. Unset: 60 days, or
    ``max_gap_share`` of the data's span when that is shorter (two months of data get a 6-day gap)."""
    max_gap_share: float = Field(0.1, ge=0, lt=0.3)
    """Cap on the default gap as a share of the span from first to last report date."""
    valid_start: str | None = None
    """Explicit first report date of the validation period (overrides valid_fraction)."""
    test_start: str | None = None
    """Explicit first report date of the test period (overrides test_fraction), e.g. "1995-01-01"."""


class LightGBMConfig(_Strict):
    num_leaves: int = Field(31, ge=2)
    learning_rate: float = Field(0.05, gt=0, le=1)
    max_rounds: int = Field(2000, ge=1)
    early_stopping_rounds: int = Field(100, ge=1)
    min_child_samples: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(1.0, ge=0)
    cat_smooth: float = Field(10.0, ge=0)
    max_cat_to_onehot: int = Field(8, ge=1)
    balance_classes: bool = True
    """Weight the positive class up to a quarter of the data during fitting; calibration on the
    untouched validation set brings probabilities back to the real rate."""
    monotone: bool = True
    """Use the catalog's monotone directions (e.g. more prior confirmed fraud never lowers the fraud
    score) as LightGBM monotone constraints for the fraud model."""
    num_threads: int = Field(0, ge=0)


class RoutingRule(_Strict):
    name: str
    when: str
    """A pandas expression over feature columns, e.g. ``days_since_policy_start < 30 and claimed_amount > 2000``."""
    route: Literal["siu_referral", "specialist", "standard"]


class RoutingConfig(_Strict):
    siu_capacity: float = Field(0.03, gt=0, lt=1)
    """Largest share of claims the investigations unit can take."""
    fast_track_leakage_cap: float = Field(0.004, ge=0, lt=1)
    """Largest confirmed-fraud rate allowed among fast-tracked claims (validation period)."""
    fast_track_min_score: float = Field(0.5, ge=0, le=1)
    """Fast track only claims at least this likely to settle simply."""
    fast_track_amount_limit: float = Field(5_000, ge=0)
    large_loss_limit: float = Field(50_000, ge=0)
    """Claims above this amount, or of high severity, go to specialists."""
    specialist_severities: tuple[str, ...] = ("high", "severe", "fatal")
    rules: tuple[RoutingRule, ...] = (
        RoutingRule(
            name="early_claim_high_amount",
            when="days_since_policy_start < 30 and claimed_amount > 3000",
            route="siu_referral",
        ),
    )


class PromotionConfig(_Strict):
    metric: Literal["roc_auc", "average_precision"] = "average_precision"
    margin: float = Field(0.0, ge=0)
    """The challenger must beat the champion by more than this on the same test period (an equal
    challenger is refused)."""


class TrainingConfig(_Strict):
    seed: int = 0
    split: SplitConfig = SplitConfig()
    lightgbm: LightGBMConfig = LightGBMConfig()
    routing: RoutingConfig = RoutingConfig()
    promotion: PromotionConfig = PromotionConfig()
    calibration: Literal["isotonic", "platt"] = "isotonic"
    min_positives: int = Field(30, ge=1)
    """A model is trained only when each period has at least this many positive labels."""
    poisoning: PoisoningConfig = PoisoningConfig()
    """How far a challenger's training data and behaviour may move from the champion's before
    ``claimscore promote`` refuses it (``--override`` promotes it anyway, recorded)."""
    fairness: FairnessConfig = FairnessConfig()
    """Groups the routes' fairness is measured by on the test period, and how far a challenger's
    ratio may fall below the champion's before ``claimscore promote`` refuses it."""
    refit: bool = True
    """Refit the chosen model on all matured labelled data before registering it (training/refit.py);
    false registers the model fitted on the train period only."""

    @model_validator(mode="after")
    def _fractions(self) -> TrainingConfig:
        if self.split.valid_fraction + self.split.test_fraction >= 0.8:
            raise ValueError("split: valid_fraction + test_fraction must leave at least 20% for training")
        return self


def source_config_path(source: str) -> Path | None:
    """The built-in source's recommended training config (``training/configs/<source>.yaml``), if any."""
    path = CONFIG_DIR / f"{source}.yaml"
    return path if ":" not in source and "/" not in source and path.is_file() else None


def resolve_training_config(source: str, path: str | Path | None) -> tuple[TrainingConfig, str]:
    """The training config for a run and where it came from (recorded in the run and printed):
    the user's file, else the source's recommended file, else the defaults."""
    if path is not None:
        origin = f"user file {path}"
        if source_config_path(source):
            origin += f" (replaces {source_config_path(source).relative_to(CONFIG_DIR.parent.parent)})"
        return load_training_config(path), origin
    recommended = source_config_path(source)
    if recommended is not None:
        return load_training_config(recommended), f"source file {recommended.relative_to(CONFIG_DIR.parent.parent)}"
    return TrainingConfig(), "defaults (split relative to the data)"


def load_training_config(path: str | Path | None) -> TrainingConfig:
    """Defaults, overridden by a YAML file; errors name the key."""
    return load_yaml_model(path, TrainingConfig, "training config")

"""Fairness of routing decisions by group: who is referred to the SIU, who is fast-tracked, who is
referred without being a fraud, and on how strong evidence, per gender, age band and region.

Per attribute, group and metric: the rate with a bootstrap interval, and the rate against the most
favoured group's (the four-fifths rule: a ratio below ``FairnessConfig.min_ratio`` alerts). Ratios
are always taken so that 1 is parity and lower is worse for the group:

- an *adverse* rate (``referral_rate``, ``false_positive_rate``): favoured_rate / group_rate, the
  favoured group having the lowest rate;
- a *favourable* rate (``fast_track_rate``, ``hit_rate``): group_rate / favoured_rate, the favoured
  group having the highest. A group referred on weaker evidence has a lower hit rate.

Who is judged. A group is *eligible* when its metric's denominator (claims; claims confirmed not
fraud; referred claims with an outcome) has at least ``min_group_claims`` and its rate is defined;
the favoured group is chosen among eligible groups only. Smaller groups are shown (rate, interval)
without a ratio. A ratio is *judged* (may alert) when the group is eligible and the favoured group
had at least ``min_group_events`` events: a favoured rate resting on a handful of referrals would
make every other group look unfair by chance. 0/0 ratios (no group had any event) are undefined.

Intervals. A rate's bootstrap draws are Binomial(n, rate) / n per group (the resampling of a
proportion, vectorised: fast for millions of claims), ``bootstrap`` of them at the ``confidence``
level, seeded. A ratio's draws divide the group's draws by the favoured group's (the favoured group
fixed at its point estimate), so a ratio's interval may pass 1 where two groups cannot be told
apart. Each (attribute, metric) draws from its own stream, so adding an attribute changes no other
attribute's intervals.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.errors import ConfigError
from monitoring.alerts import Alert
from monitoring.config import FairnessConfig

UNKNOWN = "unknown"
AGE_BAND = "age_band"
AGE_COLUMN = "claimant_age"

Direction = Literal["adverse", "favourable"]


@dataclass(frozen=True)
class _Metric:
    direction: Direction
    denominator: str
    """What the rate is a share of, in messages."""
    masks: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    """(routes, fraud labels) -> (claims in the denominator, claims that are events)."""


def _everyone(routes: np.ndarray) -> np.ndarray:
    return np.ones(len(routes), bool)


def _referred(routes: np.ndarray) -> np.ndarray:
    return routes == "siu_referral"


METRICS: dict[str, _Metric] = {
    "referral_rate": _Metric("adverse", "claims", lambda r, y: (_everyone(r), _referred(r))),
    "fast_track_rate": _Metric("favourable", "claims", lambda r, y: (_everyone(r), r == "fast_track")),
    "false_positive_rate": _Metric("adverse", "claims confirmed not fraud", lambda r, y: (y == 0, _referred(r))),
    "hit_rate": _Metric(
        "favourable", "referred claims with an outcome", lambda r, y: (_referred(r) & ~np.isnan(y), y == 1)
    ),
}
"""Metric -> whether a higher rate is worse (adverse) or better (favourable) for a group."""

COLUMNS = (
    "attribute",
    "group",
    "metric",
    "claims",
    "events",
    "rate",
    "rate_low",
    "rate_high",
    "ratio",
    "ratio_low",
    "ratio_high",
    "favoured_group",
    "favoured_rate",
    "judged",
)


@dataclass
class FairnessResult:
    rows: pd.DataFrame
    """One row per attribute, group and metric (:data:`COLUMNS`); ``claims`` is the metric's
    denominator, ``events`` its numerator."""
    alerts: list[Alert] = field(default_factory=list)
    """One per judged row whose ratio is below ``min_ratio``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (NaN -> None), for summary.json and the training artefact."""
        rows = self.rows.astype(object).where(self.rows.notna(), None).to_dict("records")
        return {
            "rows": [{k: _plain(v) for k, v in r.items()} for r in rows],
            "alerts": [a.to_dict() for a in self.alerts],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FairnessResult:
        """Back from :meth:`to_dict` (e.g. the training run's artefact, for :func:`promotion_check`)."""
        rows = _typed(pd.DataFrame(list(d.get("rows", [])), columns=list(COLUMNS)))
        return cls(rows, [Alert(**a) for a in d.get("alerts", [])])


# --- groups -------------------------------------------------------------------------------------


def group_columns(claims: pd.DataFrame, cfg: FairnessConfig) -> dict[str, pd.Series]:
    """Attribute -> group label per claim (text; missing -> ``unknown``), for the attributes of
    ``cfg.attributes`` the frame has with at least one value. ``age_band`` comes from
    ``claimant_age`` cut at ``cfg.age_bands`` (bands include their lower edge: 25 is in "25-39")."""
    out: dict[str, pd.Series] = {}
    for attribute in cfg.attributes:
        source = AGE_COLUMN if attribute == AGE_BAND else attribute
        if source not in claims.columns or claims[source].isna().all():
            continue
        if attribute == AGE_BAND:
            out[attribute] = age_bands(claims[source], cfg.age_bands)
        else:
            out[attribute] = claims[source].astype("str").fillna(UNKNOWN).rename(attribute)
    return out


def age_bands(age: pd.Series, edges: tuple[int, ...]) -> pd.Series:
    """Age band labels ("under 25", "25-39", "40-59", "60+" for edges 25, 40, 60); missing -> unknown."""
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ConfigError(f"fairness.age_bands must increase, got {list(edges)}")
    if not edges:
        labels = np.array(["all ages"], dtype=object)
    else:
        inner = [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])]
        labels = np.array([f"under {edges[0]}", *inner, f"{edges[-1]}+"], dtype=object)
    values = pd.to_numeric(age, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    band = labels[np.searchsorted(np.asarray(edges, dtype=np.float64), np.nan_to_num(values), side="right")]
    band = np.where(np.isnan(values), UNKNOWN, band)
    return pd.Series(band, index=age.index, name=AGE_BAND, dtype="str")


# --- fairness -----------------------------------------------------------------------------------


def fairness(
    groups: Mapping[str, pd.Series], routes: np.ndarray, y_fraud: np.ndarray, cfg: FairnessConfig
) -> FairnessResult:
    """Every metric of :data:`METRICS` per attribute and group, against the most favoured group, with
    bootstrap intervals; alerts for judged ratios below ``cfg.min_ratio``. ``y_fraud`` is the fraud
    label per claim as floats, NaN where unknown."""
    routes = np.asarray(routes, dtype=object)
    y = np.asarray(y_fraud, dtype=np.float64)
    if len(y) != len(routes):
        raise ValueError(f"fairness: {len(routes)} routes but {len(y)} fraud labels")
    masks = {name: m.masks(routes, y) for name, m in METRICS.items()}
    frames = []
    for attribute, labels in groups.items():
        values = np.asarray(labels.astype("str").fillna(UNKNOWN).to_numpy(), dtype=object)
        if len(values) != len(routes):
            raise ValueError(f"fairness: attribute '{attribute}' has {len(values)} values for {len(routes)} claims")
        codes, names = pd.factorize(values, sort=True)
        for metric, (denominator, event) in masks.items():
            rng = np.random.default_rng([cfg.seed, zlib.crc32(attribute.encode()), list(METRICS).index(metric)])
            frame = _metric_rows(codes, [str(n) for n in names], denominator, denominator & event, metric, cfg, rng)
            frame.insert(0, "attribute", attribute)
            frames.append(frame)
    rows = pd.concat(frames, ignore_index=True) if frames else _typed(pd.DataFrame(columns=list(COLUMNS)))
    rows = rows[list(COLUMNS)]
    return FairnessResult(rows, fairness_alerts(rows, cfg))


def _metric_rows(
    codes: np.ndarray,
    names: list[str],
    denominator: np.ndarray,
    event: np.ndarray,
    metric: str,
    cfg: FairnessConfig,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One metric for every group of one attribute (``names`` in ``codes`` order)."""
    n_groups, direction = len(names), METRICS[metric].direction
    n = np.bincount(codes[denominator], minlength=n_groups).astype(np.int64)
    e = np.bincount(codes[event], minlength=n_groups).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, e / np.maximum(n, 1), np.nan)
        draws = rng.binomial(n[:, None], np.nan_to_num(rate)[:, None], size=(n_groups, cfg.bootstrap)) / n[:, None]
    eligible = (n >= cfg.min_group_claims) & ~np.isnan(rate)

    ratio = np.full(n_groups, np.nan)
    ratio_draws = np.full_like(draws, np.nan)
    favoured: int | None = None
    if eligible.any():
        candidates = np.where(eligible, rate, np.inf if direction == "adverse" else -np.inf)
        favoured = int(np.argmin(candidates) if direction == "adverse" else np.argmax(candidates))
        with np.errstate(invalid="ignore", divide="ignore"):
            if direction == "adverse":
                ratio = rate[favoured] / rate
                ratio_draws = draws[favoured][None, :] / draws
            else:
                ratio = rate / rate[favoured]
                ratio_draws = draws / draws[favoured][None, :]
        ratio = np.where(eligible, ratio, np.nan)
        ratio_draws[~eligible] = np.nan
    enough_events = favoured is not None and e[favoured] >= cfg.min_group_events
    judged = eligible & np.isfinite(ratio) & enough_events
    low, high = (1 - cfg.confidence) / 2, 1 - (1 - cfg.confidence) / 2
    rate_low, rate_high = _quantiles(draws, low, high)
    ratio_low, ratio_high = _quantiles(ratio_draws, low, high)
    return pd.DataFrame(
        {
            "group": names,
            "metric": metric,
            "claims": n,
            "events": e,
            "rate": rate,
            "rate_low": rate_low,
            "rate_high": rate_high,
            "ratio": ratio,
            "ratio_low": ratio_low,
            "ratio_high": ratio_high,
            "favoured_group": names[favoured] if favoured is not None else None,
            "favoured_rate": rate[favoured] if favoured is not None else np.nan,
            "judged": judged,
        }
    )


def _quantiles(draws: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``low`` and ``high`` quantiles of the defined draws (NaN where none is)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: groups without claims
        q = np.nanquantile(draws, [low, high], axis=1) if draws.shape[1] else np.full((2, len(draws)), np.nan)
    return q[0], q[1]


def fairness_alerts(rows: pd.DataFrame, cfg: FairnessConfig) -> list[Alert]:
    """One alert per judged row whose ratio is below ``cfg.min_ratio``: with ``cfg.alert_on``
    ``interval`` (the default), only where its whole interval is below (the gap is more than chance
    at ``cfg.confidence``); with ``estimate``, wherever the point estimate is."""
    below = rows["ratio"] < cfg.min_ratio
    if cfg.alert_on == "interval":
        below &= rows["ratio_high"] < cfg.min_ratio
    alerts = []
    for r in rows[rows["judged"].astype(bool) & below].itertuples(index=False):
        unit = METRICS[r.metric].denominator
        alerts.append(
            Alert(
                section="fairness",
                subject=f"{r.attribute}={r.group}: {r.metric}",
                value=float(r.ratio),
                threshold=cfg.min_ratio,
                message=(
                    f"fairness: {r.attribute}={r.group} {r.metric} {r.rate:.3f} is {r.ratio:.2f} of the most "
                    f"favoured group's ({r.favoured_group}, {r.favoured_rate:.3f}); threshold {cfg.min_ratio:g} "
                    f"(interval {r.ratio_low:.2f}-{r.ratio_high:.2f}, {int(r.claims):,} {unit})"
                ),
            )
        )
    return alerts


# --- promotion ----------------------------------------------------------------------------------


def promotion_check(
    challenger: pd.DataFrame, champion: pd.DataFrame, margin: float, min_ratio: float = 1.0
) -> list[str]:
    """Why a challenger must not replace the champion on fairness grounds: one line per attribute,
    group and metric judged in both ``rows`` frames (the two models' routes of the same claims) where
    the challenger's ratio is below the champion's by more than ``margin`` and below ``min_ratio``
    (the four-fifths rule's 0.8 in the gate: a challenger at 0.91 against a champion's 0.98 is
    still fair, and such moves are mostly the noise of a small favoured group). A row judged in one
    frame only is not compared: an unjudged ratio rests on too few claims or events to refuse a
    model on. Empty: no objection."""
    keys = ["attribute", "group", "metric"]
    a, b = _typed(challenger), _typed(champion)
    both = a.merge(b, on=keys, suffixes=("", "_champion"))
    worse = (
        both["judged"]
        & both["judged_champion"]
        & (both["ratio_champion"] - both["ratio"] > margin + 1e-12)
        & (both["ratio"] < min(min_ratio, 1.0))
    )
    return [
        f"{r.attribute}={r.group}: {r.metric} ratio {r.ratio:.2f} against the champion's "
        f"{r.ratio_champion:.2f} (margin {margin:g}, threshold {min_ratio:g})"
        for r in both[worse].itertuples(index=False)
    ]


def _typed(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows read back from JSON (None for NaN) with numeric and boolean columns as such."""
    rows = rows.copy()
    for c in ("claims", "events", "rate", "rate_low", "rate_high", "ratio", "ratio_low", "ratio_high", "favoured_rate"):
        if c in rows:
            rows[c] = pd.to_numeric(rows[c], errors="coerce").astype(np.float64)
    if "judged" in rows:
        rows["judged"] = rows["judged"].astype(object).where(rows["judged"].notna(), False).astype(bool)
    return rows


def _plain(v: Any) -> Any:
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v

"""The insurer's KPIs over a window: how claims were routed, what the SIU caught and within what
capacity, what fast-tracking let through, how long claims and investigations take in working days,
what is still open, and whether every red flag reached a person.

Conventions:

- Working days are numpy's ``busday_count`` with the configured week mask and holidays: the working
  days from the start date (included) to the end date (excluded), on calendar dates (time of day
  dropped). Reported on a Friday and settled the next Monday is 1; settled the same day is 0.
- A fraud outcome is known where ``fraud_confirmed`` is not null; rates over labelled claims count
  those only (investigations follow high scores, so labelled fast-tracked claims are few).
- :func:`kpis` returns plain JSON types; a figure with nothing to compute it from (a rate over no
  claims, a mean over no settled claim) is ``None``. :func:`kpi_series` is a DataFrame and keeps NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.errors import ConfigError
from features.schema import LABELS
from monitoring.alerts import Alert
from monitoring.config import KpiConfig
from monitoring.window import Window
from serving.model.routing import ROUTES

DEFAULT_LEAKAGE_CAP = 0.004
"""Fast-track leakage cap when neither the monitoring configuration nor the caller gives one (the
training default)."""
MIN_LEAKAGE_LABELLED = 50
"""Labelled fast-tracked claims from which leakage is judged."""
MIN_SETTLED_FAST_TRACK = 20
"""Settled fast-tracked claims from which their cycle time is judged."""
MIN_RED_FLAGS = 20
"""Red-flagged claims from which the share reaching a person is judged."""
SIU_QUEUE = "siu_referral"
CLOSED = "closed"
_PERIODS = {"D": "D", "W": "W", "MS": "M", "QS": "Q"}
"""KpiConfig.period (offset alias) -> pandas period: buckets labelled by their first day."""


# --- per claim ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claims:
    """What every KPI reads, one value per claim."""

    routes: np.ndarray
    y: np.ndarray
    """Fraud outcome as floats, NaN unknown."""
    flagged: np.ndarray
    cycle_days: np.ndarray
    """Working days from report to settlement, NaN while unsettled."""


def _per_claim(window: Window, cfg: KpiConfig, red_flag_score: float) -> _Claims:
    claims = window.claims
    routes = np.asarray(window.routes, dtype=object)
    y = window.label("fraud") if LABELS["fraud"] in claims else np.full(len(claims), np.nan)
    fired = np.fromiter((len(r) > 0 for r in window.rules), dtype=bool, count=len(routes))
    score = window.scores.get("fraud")
    scored = np.asarray(score, dtype=np.float64) >= red_flag_score if score is not None else np.zeros(len(routes), bool)
    cycle = working_days(_dates(claims, "report_date"), _dates(claims, "settlement_date"), cfg)
    return _Claims(routes, y, fired | scored, cycle)


def working_days(start: np.ndarray, end: np.ndarray, cfg: KpiConfig) -> np.ndarray:
    """Working days from each ``start`` date (included) to its ``end`` date (excluded), as floats; NaN
    where either is missing. Dates are ``datetime64[D]`` arrays."""
    try:
        holidays = np.array(cfg.holidays, dtype="datetime64[D]")
    except ValueError:
        raise ConfigError(f"kpis.holidays: not all of {list(cfg.holidays)} are dates (YYYY-MM-DD)") from None
    out = np.full(len(start), np.nan)
    ok = ~np.isnat(start) & ~np.isnat(end)
    out[ok] = np.busday_count(start[ok], end[ok], weekmask=cfg.weekmask, holidays=holidays)
    return out


def _dates(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column's calendar dates as ``datetime64[D]`` (NaT where missing or the column is absent)."""
    if column not in frame:
        return np.full(len(frame), np.datetime64("NaT"), dtype="datetime64[D]")
    return _naive(pd.to_datetime(frame[column])).to_numpy(dtype="datetime64[D]")


def _naive(t: pd.Series) -> pd.Series:
    return t.dt.tz_convert("UTC").dt.tz_localize(None) if t.dt.tz is not None else t


def _as_of(window: Window) -> pd.Timestamp:
    t = pd.Timestamp(window.as_of)
    return t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t


# --- the main rates, overall or per period --------------------------------------------------------


def _main_rates(c: _Claims, codes: np.ndarray, buckets: int) -> pd.DataFrame:
    """The rates :func:`kpis` and :func:`kpi_series` share, per bucket ``codes`` (0..buckets-1)."""

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(codes[mask], minlength=buckets).astype(np.int64)

    def share(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.full(buckets, np.nan), where=den > 0)

    known = ~np.isnan(c.y)
    fast, referred = c.routes == "fast_track", c.routes == "siu_referral"
    settled_fast = fast & ~np.isnan(c.cycle_days)
    days = np.bincount(codes[settled_fast], weights=c.cycle_days[settled_fast], minlength=buckets)
    n = {
        "claims": np.bincount(codes, minlength=buckets).astype(np.int64),
        "fast_tracked": count(fast),
        "referred": count(referred),
        "referred_labelled": count(referred & known),
        "fraud_caught": count(referred & (c.y == 1)),
        "fast_tracked_labelled": count(fast & known),
        "leaked": count(fast & (c.y == 1)),
        "red_flags": count(c.flagged),
        "red_flags_to_person": count(c.flagged & ~fast),
        "fast_track_settled": count(settled_fast),
    }
    rates = {
        "fast_track_rate": share(n["fast_tracked"], n["claims"]),
        "siu_referral_rate": share(n["referred"], n["claims"]),
        "hit_rate": share(n["fraud_caught"], n["referred_labelled"]),
        "leakage_rate": share(n["leaked"], n["fast_tracked_labelled"]),
        "red_flag_share_to_person": share(n["red_flags_to_person"], n["red_flags"]),
        "fast_track_cycle_time_mean": share(days, n["fast_track_settled"]),
    }
    return pd.DataFrame(n | rates)


def kpi_series(window: Window, cfg: KpiConfig, red_flag_score: float) -> pd.DataFrame:
    """The main rates (route rates, hit rate, leakage, red flags reaching a person, fast-track cycle
    time) per ``cfg.period`` bucket of ``window.decided_at`` with at least one decision; ``period`` is
    the bucket's first day.
    Claims without a decision time are left out. NaN where a rate has no denominator."""
    c = _per_claim(window, cfg, red_flag_score)
    periods = _naive(pd.to_datetime(window.decided_at)).dt.to_period(_PERIODS[cfg.period])
    codes, uniques = pd.factorize(periods, sort=True)
    dated = codes >= 0
    kept = _Claims(c.routes[dated], c.y[dated], c.flagged[dated], c.cycle_days[dated])
    out = _main_rates(kept, codes[dated], len(uniques))
    out.insert(0, "period", pd.PeriodIndex(uniques).start_time if len(uniques) else pd.DatetimeIndex([]))
    return out


# --- every KPI ----------------------------------------------------------------------------------


def kpis(window: Window, cfg: KpiConfig, red_flag_score: float, capacity: float) -> dict[str, Any]:
    """Every KPI of the window (plain JSON types, ``None`` where undefined). ``capacity`` is the SIU's
    share of claims it can investigate (the training configuration's ``siu_capacity``); a claim is
    red-flagged when a routing rule fired on it or its fraud score is at least ``red_flag_score``."""
    if not capacity > 0:
        raise ValueError(f"kpis: capacity must be a share of claims above 0, got {capacity}")
    claims = window.claims
    c = _per_claim(window, cfg, red_flag_score)
    main = _main_rates(c, np.zeros(len(c.routes), np.int64), 1).iloc[0]
    fast, referred = c.routes == "fast_track", c.routes == "siu_referral"
    claimed, settled = _floats(claims, "claimed_amount"), _floats(claims, "settled_amount")
    paid = np.where(np.isnan(settled), claimed, settled)
    caught, leaked = referred & (c.y == 1), fast & (c.y == 1)
    confirmed = int((c.y == 1).sum())
    rate = _num(main["siu_referral_rate"])
    return {
        "claims": len(c.routes),
        "routes": {r: _route(c.routes == r) for r in ROUTES},
        "fast_track_rate": _num(main["fast_track_rate"]),
        "siu": {
            "referred": int(main["referred"]),
            "rate": rate,
            "capacity": float(capacity),
            "against_capacity": None if rate is None else rate / capacity,
            "referred_labelled": int(main["referred_labelled"]),
            "hit_rate": _num(main["hit_rate"]),
            "fraud_caught": int(caught.sum()),
            "fraud_caught_claimed_amount": float(np.nansum(claimed[caught])),
            "confirmed_fraud": confirmed,
            "share_of_confirmed_fraud_referred": _share(caught.sum(), confirmed),
        },
        "leakage": {
            "fast_tracked_labelled": int(main["fast_tracked_labelled"]),
            "count": int(leaked.sum()),
            "amount": float(np.nansum(paid[leaked])),
            "rate": _num(main["leakage_rate"]),
        },
        "cycle_time": {
            **{r: _cycle(c.cycle_days[c.routes == r]) for r in ROUTES},
            "all": _cycle(c.cycle_days),
        },
        "referral_to_disposition": _referral_to_disposition(window, cfg),
        "open_cases": _open_cases(window, cfg),
        "red_flags": {
            "score": float(red_flag_score),
            "count": int(main["red_flags"]),
            "to_person": int(main["red_flags_to_person"]),
            "fast_tracked": int(main["red_flags"] - main["red_flags_to_person"]),
            "share_to_person": _num(main["red_flag_share_to_person"]),
        },
    }


def _route(mask: np.ndarray) -> dict[str, Any]:
    return {"claims": int(mask.sum()), "share": _share(mask.sum(), len(mask))}


def _cycle(days: np.ndarray) -> dict[str, Any]:
    """Settled and unsettled claims, and working days report -> settlement of the settled ones."""
    settled = days[~np.isnan(days)]
    return {"settled": len(settled), "unsettled": int(np.isnan(days).sum()), **_summary(settled)}


def _referral_to_disposition(window: Window, cfg: KpiConfig) -> dict[str, Any]:
    """Working days from referral to the SIU's decision: closed SIU cases (opened -> closed) where the
    window has cases, else investigated claims (report -> investigation closed)."""
    if window.cases is not None:
        cases = window.cases
        closed = cases["closed_at"].notna().to_numpy()
        if "status" in cases:
            closed = closed & (cases["status"] == CLOSED).to_numpy()
        if "queue" in cases:
            closed = closed & (cases["queue"] == SIU_QUEUE).to_numpy()
        days = working_days(_dates(cases, "opened_at")[closed], _dates(cases, "closed_at")[closed], cfg)
        return {"source": "cases", **_summary(days)}
    claims = window.claims
    investigated = np.ones(len(claims), bool)
    if "investigated" in claims:
        investigated = claims["investigated"].fillna(False).to_numpy(dtype=bool)
    start, end = _dates(claims, "report_date")[investigated], _dates(claims, "investigation_closed_date")[investigated]
    days = working_days(start, end, cfg)
    return {"source": "claims", **_summary(days[~np.isnan(days)])}


def _open_cases(window: Window, cfg: KpiConfig) -> dict[str, Any] | None:
    """Cases not closed at ``window.as_of``: how many, their age in working days since opening, and
    how many are past their due time (``past_sla`` None without a ``due_at`` column). None without a
    case store."""
    if window.cases is None:
        return None
    cases = window.cases
    is_open = (cases["status"] != CLOSED).to_numpy() if "status" in cases else cases["closed_at"].isna().to_numpy()
    as_of = _as_of(window)
    opened = _dates(cases, "opened_at")[is_open]
    age = working_days(opened, np.full(len(opened), as_of.to_datetime64().astype("datetime64[D]")), cfg)
    age = age[~np.isnan(age)]
    past_sla = None
    if "due_at" in cases:
        due = _naive(pd.to_datetime(cases["due_at"]))[is_open]
        past_sla = int((due < as_of).sum())
    return {
        "count": int(is_open.sum()),
        "mean_age": float(age.mean()) if len(age) else None,
        "max_age": float(age.max()) if len(age) else None,
        "past_sla": past_sla,
    }


def _summary(days: np.ndarray) -> dict[str, Any]:
    if not len(days):
        return {"count": 0, "mean": None, "median": None, "p90": None}
    return {
        "count": len(days),
        "mean": float(np.mean(days)),
        "median": float(np.median(days)),
        "p90": float(np.percentile(days, 90)),
    }


def _floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _share(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def _num(v: float) -> float | None:
    return None if pd.isna(v) else float(v)


# --- alerts -------------------------------------------------------------------------------------


def kpi_alerts(
    k: dict[str, Any],
    window: Window,
    cfg: KpiConfig,
    capacity: float | None = None,
    leakage_cap: float = DEFAULT_LEAKAGE_CAP,
) -> list[Alert]:
    """Alerts on :func:`kpis`' figures: SIU referrals beyond capacity (plus ``cfg.siu_capacity_tolerance``),
    fast-track leakage above its cap (``cfg.leakage_cap`` when set, else ``leakage_cap``: the training
    cap), fast-track cycle time above target, red flags not reaching a person. Each judged only from
    :data:`MIN_LEAKAGE_LABELLED`, :data:`MIN_SETTLED_FAST_TRACK`, :data:`MIN_RED_FLAGS` claims.
    ``capacity`` defaults to the one ``k`` was computed with.

    Cycle time is judged on decided windows only: a table's routes are what the champion would decide
    now, while its settlement dates come from however the claims were actually handled, so a table's
    "fast-tracked" claims were not fast-tracked and their cycle time says nothing of the fast track."""
    alerts: list[Alert] = []
    siu = k["siu"]
    capacity = siu["capacity"] if capacity is None else capacity
    limit = capacity * (1 + cfg.siu_capacity_tolerance)
    if siu["rate"] is not None and siu["rate"] > limit:
        alerts.append(
            Alert(
                "kpis",
                "siu_referral_rate",
                siu["rate"],
                limit,
                f"kpis: SIU referral rate {siu['rate']:.2%} ({siu['referred']:,} of {k['claims']:,} claims) is above "
                f"capacity {capacity:.2%} plus {cfg.siu_capacity_tolerance:.0%} (threshold {limit:.2%})",
            )
        )
    cap = cfg.leakage_cap if cfg.leakage_cap is not None else leakage_cap
    leak = k["leakage"]
    if leak["fast_tracked_labelled"] >= MIN_LEAKAGE_LABELLED and leak["rate"] is not None and leak["rate"] > cap:
        alerts.append(
            Alert(
                "kpis",
                "fast_track_leakage",
                leak["rate"],
                cap,
                f"kpis: fast-track leakage {leak['rate']:.2%} ({leak['count']:,} of {leak['fast_tracked_labelled']:,} "
                f"labelled fast-tracked claims confirmed fraud, {leak['amount']:,.0f} paid) is above the cap {cap:.2%}",
            )
        )
    ft = k["cycle_time"]["fast_track"]
    target = cfg.cycle_time_target_days
    decided = window.kind != "table"
    if decided and ft["settled"] >= MIN_SETTLED_FAST_TRACK and ft["mean"] is not None and ft["mean"] > target:
        alerts.append(
            Alert(
                "kpis",
                "fast_track_cycle_time",
                ft["mean"],
                target,
                f"kpis: fast-tracked claims took {ft['mean']:.1f} working days on average from report to "
                f"settlement ({ft['settled']:,} settled); target {target:g}",
            )
        )
    flags = k["red_flags"]
    minimum = cfg.red_flag_min_share
    if flags["count"] >= MIN_RED_FLAGS and flags["share_to_person"] is not None and flags["share_to_person"] < minimum:
        alerts.append(
            Alert(
                "kpis",
                "red_flag_share_to_person",
                flags["share_to_person"],
                minimum,
                f"kpis: {flags['share_to_person']:.1%} of {flags['count']:,} red-flagged claims reached a person "
                f"({flags['fast_tracked']:,} fast-tracked); minimum {minimum:.0%}",
            )
        )
    return alerts

"""Build model features from canonical claims: one code path for a training table and a live claim.

:func:`build_features` computes, for every row of a canonical frame, the catalog's features from
what was known strictly before that claim's report time: the claim itself, and the other rows of the
frame reported earlier (and outcomes decided earlier). A training table passes all its claims; the
online path passes one live claim together with the history rows that share its keys. Because
features only look at earlier rows sharing a key, both give the same numbers.

Pure: no files, no databases; vectorised numpy and compiled sweeps (see :mod:`features.pit`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from features import catalog, links, pit, schema
from features.catalog import Feature
from features.columns import Columns, Reader

NS_PER_S = 1_000_000_000
DAY_S = 86_400


def provided_columns(frame: pd.DataFrame) -> set[str]:
    """Columns present in ``frame`` and not entirely null."""
    return {c for c in frame.columns if frame[c].notna().any()}


def date_precision(frame: pd.DataFrame, column: str) -> str:
    """``time`` when times of day are recorded, ``day``, or ``month`` when every date is a 1st
    (month-level sources such as the bodily-injury data, where weekdays mean nothing)."""
    s = frame[column].dropna()
    if s.empty:
        return "day"
    if (s != s.dt.normalize()).any():
        return "time"
    return "month" if (s.dt.day == 1).all() and len(s) > 1 else "day"


def reported_late(frame: pd.DataFrame) -> bool:
    """Whether accidents are often reported long after they happen (see ``catalog.LATE_REPORT_SHARE``)."""
    delay = (frame["report_date"] - frame["incident_date"]).dropna()
    late = delay >= pd.Timedelta(days=catalog.LATE_REPORT_DAYS)
    return bool(len(delay)) and float(late.mean()) >= catalog.LATE_REPORT_SHARE


def available_features(frame: pd.DataFrame, extras: Mapping[str, object] | None = None) -> list[Feature]:
    """The catalog features this frame can support, plus the source's extras.

    ``extras`` maps ``x_`` column -> an object with ``type`` and ``description`` (the mapping's
    ExtraSpec). A model records the list it was trained on; scoring asks for exactly that list.
    """
    have = provided_columns(frame)
    out = []
    for f in catalog.FEATURES:
        if not set(f.needs) <= have or (f.needs_any and not set(f.needs_any) & have):
            continue
        if f.name == "report_hour" and date_precision(frame, "report_date") != "time":
            continue
        if f.name == "incident_month" and not reported_late(frame):
            continue
        if f.name in ("report_weekday", "incident_weekday"):
            col = "report_date" if f.name == "report_weekday" else "incident_date"
            if date_precision(frame, col) == "month":
                continue
        out.append(f)
    for col, spec in (extras or {}).items():
        if col in frame.columns and col in have:
            out.append(catalog.extra_feature(col, spec.type, spec.description))
    return out


def resolve(features: Iterable[Feature | str], extras: Mapping[str, object] | None = None) -> list[Feature]:
    """Feature objects for names (catalog names or the source's ``x_`` extras)."""
    out = []
    for f in features:
        if isinstance(f, Feature):
            out.append(f)
        elif f in catalog.BY_NAME:
            out.append(catalog.BY_NAME[f])
        elif extras and f in extras:
            spec = extras[f]
            out.append(catalog.extra_feature(f, spec.type, spec.description))
        else:
            raise KeyError(f"unknown feature '{f}'")
    return out


def build_features(
    frame: pd.DataFrame | Columns,
    features: Sequence[Feature | str] | None = None,
    extras: Mapping[str, object] | None = None,
    *,
    rows: slice | None = None,
) -> pd.DataFrame | Columns:
    """Features for every row of a canonical ``frame``, in the order asked for.

    ``frame`` is a DataFrame (the answer is a DataFrame with the same index) or a
    :data:`features.columns.Columns` dict (the answer is a dict of arrays: the live path, with no
    pandas per claim; ``features`` must then be given). Numeric features are float64 (NaN when
    unknown); categorical ones are strings (missing: NaN in a DataFrame, ``None`` in arrays).

    ``rows``: answer for these rows only (positions); every row of ``frame`` still counts as history.
    The online path asks for its live claims, which follow the stored rows that can reach them.
    """
    q = rows if rows is not None else slice(None)
    data = Reader(frame)
    if features is None and not data.is_frame:
        raise TypeError("build_features on arrays needs the model's feature list (features=...)")
    wanted = available_features(frame, extras) if features is None else resolve(features, extras)  # type: ignore[arg-type]
    names = {f.name for f in wanted}
    cols: dict[str, np.ndarray] = {}
    _notice(data, names, cols, q)
    if names & _HISTORY:
        _history(data, names, cols, q)
    if names & _LINK:
        _link_features(data, names, cols, q)
    out = {}
    for f in wanted:
        if f.name in cols:
            value = cols[f.name]
        elif f.family == "extra" or f.kind == "categorical":
            value = data.get(f.name)[q]
        else:  # pragma: no cover - every catalog feature is computed above
            raise KeyError(f.name)
        if data.is_frame:
            series = pd.Series(value, index=frame.index[q])  # type: ignore[union-attr]
            out[f.name] = (
                series.astype("str")
                if f.kind == "categorical"
                else pd.to_numeric(series, errors="coerce").astype("float64")
            )
        elif f.kind == "categorical":
            out[f.name] = np.array([None if _missing(v) else str(v) for v in value], dtype=object)
        else:
            out[f.name] = value if value.dtype == np.float64 else np.array([_float(v) for v in value])
    return pd.DataFrame(out, index=frame.index[q]) if data.is_frame else out  # type: ignore[union-attr]


def _missing(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))


def _float(v: object) -> float:
    """A value as a number, NaN where it is not one (as ``pd.to_numeric(errors="coerce")``)."""
    if _missing(v) or isinstance(v, bool):
        return float(v) if isinstance(v, bool) else np.nan
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return np.nan


# --- notice -------------------------------------------------------------------------------------

_SECOND = np.timedelta64(1, "s")


def _days(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    return (later - earlier) / _SECOND / DAY_S


def _notice(data: Reader, names: set[str], cols: dict, q: slice) -> None:
    def get(name: str) -> np.ndarray:
        return data.get(name)[q]

    amount = get("claimed_amount")
    pairs = {
        "days_since_policy_start": ("incident_date", "policy_start_date"),
        "days_to_policy_end": ("policy_end_date", "incident_date"),
        "days_since_cover_increase": ("incident_date", "cover_increase_date"),
        "reporting_delay_days": ("report_date", "incident_date"),
    }
    for name, (later, earlier) in pairs.items():
        if name in names:
            cols[name] = _days(get(later), get(earlier))
    with np.errstate(divide="ignore", invalid="ignore"):
        if "amount_to_sum_insured" in names:
            si = get("sum_insured")
            # a sum insured below one unit counts as one (as the deductible does): 1e9 over a
            # denormal sum insured was infinite, and an infinity is no JSON number in the log
            cols["amount_to_sum_insured"] = np.where(si > 0, amount / np.maximum(si, 1.0), np.nan)
        if "amount_to_deductible" in names:
            cols["amount_to_deductible"] = amount / np.maximum(get("deductible"), 1.0)
    if "gap_below_authority_limit" in names:
        gap = np.full(len(amount), np.nan)
        for limit in sorted(catalog.AUTHORITY_LIMITS, reverse=True):  # the nearest limit above wins
            below = amount < limit
            gap[below] = (limit - amount[below]) / limit
        cols["gap_below_authority_limit"] = gap
    if "report_hour" in names:
        r = get("report_date")
        minutes = (r - r.astype("datetime64[D]")) / np.timedelta64(1, "m")
        cols["report_hour"] = np.floor(minutes / 60) + np.floor(minutes % 60) / 60
    for name, col in (("report_weekday", "report_date"), ("incident_weekday", "incident_date")):
        if name in names:  # Monday = 0; 1970-01-01 was a Thursday
            days = get(col).astype("datetime64[D]")
            cols[name] = np.where(np.isnat(days), np.nan, (days.astype(np.int64) + 3) % 7)
    if "incident_month" in names:  # months since January 1970, whatever the dates' precision
        months = get("incident_date").astype("datetime64[M]")
        cols["incident_month"] = np.where(np.isnat(months), np.nan, months.astype(np.int64).astype(np.float64))
    for name in names & _PASSTHROUGH:  # numeric features that are canonical columns as they are
        cols[name] = get(name)


_PASSTHROUGH = {
    f.name for f in catalog.FEATURES if f.family == "notice" and f.kind == "numeric" and f.name in schema.BY_NAME
}


# --- history ------------------------------------------------------------------------------------

_HISTORY = {f.name for f in catalog.FEATURES if f.family == "history"}
_LINK = {f.name for f in catalog.FEATURES if f.family == "link"}
_NEVER = np.iinfo(np.int64).max // 4
"""The time of something that never happened (after every claim)."""


def _seconds(values: np.ndarray) -> np.ndarray:
    """Datetimes as int64 seconds; NaT as a time after every claim (never before anything)."""
    ns = values.astype("datetime64[ns]")
    out = ns.astype("int64") // NS_PER_S
    out[np.isnat(ns)] = _NEVER
    return out


def _codes(values, drop: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Integer codes of an identifier column (``NO_KEY`` where missing or ``drop``), and how many."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = codes.astype(np.int64)
    if drop is not None:
        codes[drop] = pit.NO_KEY
    return codes, len(uniques)


def _decisions(data: Reader) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows with a decided investigation: mask, decision time, investigated (1), fraud (0/1)."""
    if "investigation_closed_date" not in data:
        n = data.n
        return np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n), np.zeros(n)
    closed = data.get("investigation_closed_date")
    inv = np.nan_to_num(data.get("investigated"))
    fraud = np.nan_to_num(data.get("fraud_confirmed"))
    return ~np.isnat(closed), _seconds(closed), inv, fraud


def _history(data: Reader, names: set[str], cols: dict, q: slice) -> None:
    t = _seconds(data.get("report_date"))
    amount = np.nan_to_num(data.get("claimed_amount"))
    decided, dtime, inv, fraud = _decisions(data)
    w = {k: v * DAY_S for k, v in catalog.WINDOWS_DAYS.items()}

    if names & {n for n in _HISTORY if n.startswith("claimant_")}:
        key, _ = _codes(data.keys("claimant_id"))
        for label in ("90d", "365d", "3y"):
            name = f"claimant_claims_{label}"
            if name in names:
                cols[name] = pit.window_stats(key, t, None, key[q], t[q], w[label])[0]
        if "claimant_amount_365d" in names:
            cols["claimant_amount_365d"] = pit.window_stats(key, t, amount, key[q], t[q], w["365d"])[1]
        if "claimant_days_since_last_claim" in names:
            last = pit.window_stats(key, t, None, key[q], t[q], None)[2]
            cols["claimant_days_since_last_claim"] = (t[q] - last) / DAY_S
        if names & {"claimant_prior_investigations", "claimant_prior_fraud"}:
            dk = np.where(decided, key, pit.NO_KEY)
            cols["claimant_prior_investigations"] = pit.window_stats(dk, dtime, inv, key[q], t[q], None)[1]
            cols["claimant_prior_fraud"] = pit.window_stats(dk, dtime, fraud, key[q], t[q], None)[1]
    if "policy_prior_claims" in names:
        key, _ = _codes(data.keys("policy_id"))
        cols["policy_prior_claims"] = pit.window_stats(key, t, None, key[q], t[q], None)[0]
    for prefix, col in (("provider", "provider_id"), ("payee", "payee_account")):
        if not any(n.startswith(prefix + "_") and n in _HISTORY for n in names):
            continue
        key, _ = _codes(data.keys(col))
        claims = pit.window_stats(key, t, None, key[q], t[q], w["365d"])[0]
        cols[f"{prefix}_claims_365d"] = claims
        dk = np.where(decided, key, pit.NO_KEY)
        for rate, values in (("referral", inv), ("fraud", fraud)):
            name = f"{prefix}_{rate}_rate_365d"
            if name in names:
                events = pit.window_stats(dk, dtime, values, key[q], t[q], w["365d"])[1]
                prior = catalog.RATE_PRIOR[rate]
                cols[name] = (events + catalog.RATE_STRENGTH * prior) / (claims + catalog.RATE_STRENGTH)


# --- links --------------------------------------------------------------------------------------


def _link_features(data: Reader, names: set[str], cols: dict, q: slice) -> None:
    t = _seconds(data.get("report_date"))
    member, n_members = _codes(data.keys("claimant_id"))
    window = catalog.LINK_WINDOW_DAYS * DAY_S
    for name, col in (
        ("phone_claimants_365d", "phone"),
        ("account_claimants_365d", "payee_account"),
        ("address_claimants_365d", "address"),
        ("provider_claimants_365d", "provider_id"),
    ):
        if name in names:
            key, _ = _codes(data.keys(col))
            cols[name] = pit.distinct_in_window(key, t, member, key[q], t[q], member[q], window, max(n_members, 1))
    if names & {"group_size", "group_prior_fraud"}:
        # node codes: claimants first, then each identifier kind in its own range; a value that
        # does not join a group (links.joining: a provider's account) is no node
        offset = n_members
        nodes = []
        for col in catalog.LINK_IDENTIFIERS:
            if not data.provided(col):
                continue
            codes, n = _codes(data.keys(col), ~links.joining(col, data.get(links.PAYEE_TYPE)))
            nodes.append(np.where(codes >= 0, codes + offset, pit.NO_KEY))
            offset += n
        link_arr = np.stack(nodes, axis=1) if nodes else np.full((data.n, 1), pit.NO_KEY)
        decided, dtime, _, fraud = _decisions(data)
        size, group_fraud = pit.linked_groups(
            t, member, link_arr, np.where(decided, dtime, _NEVER), decided & (fraud > 0), max(offset, 1)
        )
        cols["group_size"], cols["group_prior_fraud"] = size[q], group_fraud[q]

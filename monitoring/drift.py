"""Drift: live claims against the reference of the model's test period (:mod:`monitoring.reference`).

Methods as Evidently chooses them. A column with at least ``large_sample`` values in the window gets
a distance: the Wasserstein-1 distance over the reference's standard deviation for numbers, the
Jensen-Shannon distance (base 2) for categories. Fewer values get a test: two-sample
Kolmogorov-Smirnov for numbers, chi-square goodness of fit for categories. Both sides come from the
reference's quantiles and frequencies, so the training data is never read again. The multivariate
signal is NannyML's reconstruction error from the reference's principal components.

Every frame ranks its rows by ``drift_score``: the distance over its threshold, or for a test
``-log10 p`` over ``-log10`` of the p-value threshold; above 1 is drifted either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from monitoring.alerts import Alert
from monitoring.config import DriftConfig
from monitoring.reference import (
    LEVELS,
    TAIL,
    Reference,
    as_floats,
    category_counts,
    quantiles,
    reconstruction_errors,
    sorted_values,
    tail_means,
)

COLUMNS = [
    "feature",
    "kind",
    "method",
    "statistic",
    "threshold",
    "drifted",
    "drift_score",
    "null_rate_reference",
    "null_rate_current",
    "null_rate_change_alert",
    "unseen",
    "rows",
]
"""Columns of :func:`feature_drift` and :func:`score_drift`. ``statistic`` is the distance, or the
test's p-value; ``rows`` counts the window's values present (the ones compared)."""
UNSEEN_SHOWN = 20
"""Unseen categories listed per feature (the most frequent first)."""
MIN_EXPECTED = 5.0
"""Chi-square: categories expected fewer times than this are pooled (Cochran's rule)."""
METHOD_NAMES = {
    "wasserstein": "Wasserstein/std",
    "jensen_shannon": "Jensen-Shannon",
    "ks": "Kolmogorov-Smirnov",
    "chi_square": "chi-square",
}
_P_FLOOR = 1e-300


def feature_drift(reference: Reference, current: pd.DataFrame, cfg: DriftConfig) -> pd.DataFrame:
    """One row per reference feature (:data:`COLUMNS`), most drifted first; the window's other
    columns are ignored. A feature the window lacks has method ``missing`` (drifted); one without
    values in the window or in the reference has method ``empty`` (drifted unless both lack them).

    Tests (small windows) are corrected for testing every feature at once (Bonferroni: ``p_value``
    over the number of features), so a window of 40 features drawn like the reference has about a
    ``p_value`` chance of any false alarm, not two false alarms expected."""
    cfg = cfg.model_copy(update={"p_value": cfg.p_value / max(1, len(reference.numeric) + len(reference.categorical))})
    rows = []
    for name, ref in reference.numeric.items():
        if name not in current:
            rows.append(_missing(name, "numeric", ref))
        else:
            rows.append(_numeric_row(name, "numeric", ref, as_floats(current[name]), cfg, cfg.numeric_threshold))
    for name, ref in reference.categorical.items():
        if name not in current:
            rows.append(_missing(name, "categorical", ref))
        else:
            rows.append(_categorical_row(name, ref, current[name], cfg))
    return _frame(rows)


def score_drift(reference: Reference, scores: Mapping[str, np.ndarray], cfg: DriftConfig) -> pd.DataFrame:
    """:func:`feature_drift` for the scores (kind ``score``, threshold ``score_threshold``); a task
    the reference lacks is skipped, one the window lacks is ``missing``. Tests are corrected for the
    number of scores, as :func:`feature_drift` does for features."""
    cfg = cfg.model_copy(update={"p_value": cfg.p_value / max(1, len(reference.scores))})
    rows = []
    for task, ref in reference.scores.items():
        if task not in scores:
            rows.append(_missing(task, "score", ref))
        else:
            x = as_floats(np.asarray(scores[task], dtype=np.float64))
            rows.append(_numeric_row(task, "score", ref, x, cfg, cfg.score_threshold))
    return _frame(rows)


def route_shift(reference: Reference, routes: np.ndarray, cfg: DriftConfig) -> pd.DataFrame:
    """Share of claims per route, reference against window: ``route, reference_share, current_share,
    change, alert`` (``|change| >= route_share_change``), largest change first."""
    routes = np.asarray(routes).astype(str)
    names, counts = np.unique(routes, return_counts=True)
    current = {str(n): c / len(routes) for n, c in zip(names, counts)}
    out = []
    for route in dict.fromkeys([*reference.routes, *current]):
        ref, cur = float(reference.routes.get(route, 0.0)), float(current.get(route, 0.0))
        change = cur - ref if len(routes) else math.nan
        # a hair of tolerance: 0.40 - 0.35 must count as the 5 points it is
        alert = bool(abs(change) >= cfg.route_share_change - 1e-12) if len(routes) else False
        out.append({"route": route, "reference_share": ref, "current_share": cur, "change": change, "alert": alert})
    frame = pd.DataFrame(out, columns=["route", "reference_share", "current_share", "change", "alert"])
    order = frame["change"].abs().sort_values(ascending=False, kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def multivariate_drift(
    reference: Reference, current: pd.DataFrame, cfg: DriftConfig, errors: np.ndarray | None = None
) -> dict:
    """NannyML's data reconstruction drift. The window's rows are reconstructed from the reference's
    principal components; its mean error is compared with the reference's.

    The reference's ``error_std`` is the spread of mean errors over chunks of ``chunk_size`` rows. A
    window (or a chunk of it) of ``n`` rows alerts above ``error_mean + sigmas * error_std *
    sqrt(max(1, chunk_size / n))``: smaller windows are noisier (their mean error's noise grows as
    ``1/sqrt(n)``), while larger ones keep the chunk's threshold, so a big window does not alert for a
    difference too small to matter. The window is also cut in chunks of about ``chunk_size`` rows,
    each judged the same way (``chunks``), as NannyML reports them.

    Returns ``error, reference_error, reference_std, threshold, drifted, components, features, rows,
    chunk_size, missing`` (reference features the window lacks, counted at the median) and
    ``chunks`` (``chunk, start, rows, error, threshold, drifted``).

    ``errors``: the rows' :func:`~monitoring.reference.reconstruction_errors`, where they were made
    already (beside the rows, on Dask); ``current`` is then read for its column names only.
    """
    model = reference.multivariate
    if not model:
        none = dict.fromkeys(["error", "reference_error", "reference_std", "threshold", "chunk_size"])
        return none | {
            "drifted": False,
            "components": 0,
            "features": 0,
            "rows": len(current),
            "missing": [],
            "chunks": [],
        }
    errors = reconstruction_errors(model, current) if errors is None else np.asarray(errors, dtype=np.float64)
    chunk = int(model["chunk_size"])
    chunks, start = [], 0
    for i, part in enumerate(np.array_split(errors, max(1, round(len(errors) / chunk)))):
        chunks.append({"chunk": i, "start": start, "rows": len(part), **_judge_errors(part, model, cfg)})
        start += len(part)
    return {
        **_judge_errors(errors, model, cfg),
        "reference_error": model["error_mean"],
        "reference_std": model["error_std"],
        "components": len(model["components"]),
        "features": len(model["features"]),
        "rows": len(current),
        "chunk_size": chunk,
        "missing": [f for f in model["features"] if f not in current],
        "chunks": chunks if len(errors) else [],
    }


def _judge_errors(errors: np.ndarray, model: Mapping, cfg: DriftConfig) -> dict:
    """Mean reconstruction error of some rows against the reference's, with the noise of a mean over
    ``len(errors)`` rows (never less than a chunk's)."""
    noise = model["error_std"] * math.sqrt(max(1.0, model["chunk_size"] / max(len(errors), 1)))
    threshold = float(model["error_mean"] + cfg.multivariate_sigmas * noise)
    if not len(errors):
        return {"error": math.nan, "threshold": threshold, "drifted": False}
    error = float(errors.mean())
    return {"error": error, "threshold": threshold, "drifted": bool(error > threshold + 1e-12)}


def drift_alerts(
    features: pd.DataFrame, scores: pd.DataFrame, routes: pd.DataFrame, multivariate: Mapping, cfg: DriftConfig
) -> list[Alert]:
    """One alert per drifted feature and score, per route whose share moved, per feature whose missing
    share rose, one for the multivariate signal and one for the data set as a whole."""
    alerts = [_drift_alert(row, "") for row in features.itertuples(index=False) if row.drifted]
    alerts += [_drift_alert(row, " score") for row in scores.itertuples(index=False) if row.drifted]
    points = f"{cfg.route_share_change * 100:g} points"
    for r in routes.itertuples(index=False):
        if r.alert:
            message = (
                f"routes: {r.route} share {r.current_share:.1%} against {r.reference_share:.1%} at training "
                f"(threshold ±{points})"
            )
            alerts.append(Alert("drift", r.route, float(r.change), cfg.route_share_change, message))
    for r in features.itertuples(index=False):
        if r.null_rate_change_alert:
            message = (
                f"drift: {r.feature} missing in {r.null_rate_current:.1%} of claims against "
                f"{r.null_rate_reference:.1%} at training (threshold +{cfg.null_rate_change * 100:g} points)"
            )
            change = float(r.null_rate_current - r.null_rate_reference)
            alerts.append(Alert("drift", r.feature, change, cfg.null_rate_change, message))
    mv = multivariate
    if mv.get("drifted"):
        message = (
            f"drift: multivariate reconstruction error {mv['error']:.3g} against {mv['reference_error']:.3g} "
            f"± {mv['reference_std']:.2g} at training (threshold {mv['threshold']:.3g}, "
            f"{cfg.multivariate_sigmas:g} sigmas)"
        )
        alerts.append(Alert("drift", "multivariate", mv["error"], mv["threshold"], message))
    drifted = int(features["drifted"].sum()) if len(features) else 0
    if drifted and drifted / len(features) >= cfg.dataset_share:
        share = drifted / len(features)
        message = (
            f"drift: {drifted} of {len(features)} features drifted ({share:.0%}; threshold {cfg.dataset_share:.0%})"
        )
        alerts.append(Alert("drift", "dataset", share, cfg.dataset_share, message))
    return alerts


# --- numbers ------------------------------------------------------------------------------------


def wasserstein_from_quantiles(ref: Mapping, values: np.ndarray) -> float:
    """Wasserstein-1 distance between the reference and sorted ``values``: the mean over quantile
    levels of ``|q_ref - q_cur|`` (trapezoids over 0.01..0.99), the extreme 1% at each end compared
    through their means (exact when one distribution's tail lies beyond the other's)."""
    d = np.abs(np.asarray(ref["quantiles"]) - quantiles(values))
    inner = np.trapezoid(d[1:-1], LEVELS[1:-1])
    (ref_low, ref_high), (low, high) = ref["tails"], tail_means(values)
    return float(inner + TAIL * (abs(ref_low - low) + abs(ref_high - high)))


def ks_from_quantiles(ref: Mapping, values: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value of sorted ``values`` against the reference.

    The reference's distribution function is the line through its quantiles (exact to 0.01 in
    level); the supremum is taken at every jump of either side, from the left and the right. The
    p-value is scipy's asymptotic two-sample one with the reference's count of values as its n."""
    q = np.asarray(ref["quantiles"], dtype=np.float64)
    values = _snapped(values, q)
    points = np.union1d(values, q)
    n = len(values)
    cur_right = np.searchsorted(values, points, side="right") / n
    cur_left = np.searchsorted(values, points, side="left") / n
    d = max(
        np.max(np.abs(cur_right - _ref_cdf(q, points, "right"))),
        np.max(np.abs(cur_left - _ref_cdf(q, points, "left"))),
    )
    m = max(1, int(round(ref["rows"] * (1 - ref["null_rate"]))))
    big, small = max(m, n), min(m, n)
    return float(d), float(stats.kstwo.sf(d, round(big * small / (big + small))))


def _snapped(values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Sorted values, those within a millionth of a reference quantile set to it: the reference
    rounds its figures (and a float32 source rounds too), and an atom such as a rate of 1/7 must meet
    its own quantile, not fall just beside it (which would look like a jump of the whole atom)."""
    i = np.clip(np.searchsorted(q, values), 1, len(q) - 1)
    nearest = np.where(np.abs(values - q[i - 1]) <= np.abs(values - q[i]), q[i - 1], q[i])
    close = np.abs(values - nearest) <= 1e-6 * np.maximum(np.abs(nearest), 1e-12)
    return np.sort(np.where(close, nearest, values))


def _ref_cdf(q: np.ndarray, x: np.ndarray, side: str) -> np.ndarray:
    """The reference's distribution function at ``x`` (``side="left"``: its limit from the left),
    linear between quantiles; at a quantile shared by several levels (an atom) it jumps."""
    i = np.searchsorted(q, x, side=side)  # levels whose quantile is below (left) or at most (right) x
    lo, hi = np.clip(i - 1, 0, len(q) - 1), np.clip(i, 0, len(q) - 1)
    span = q[hi] - q[lo]
    frac = np.divide(x - q[lo], span, out=np.zeros_like(x), where=span > 0)
    f = LEVELS[lo] + np.clip(frac, 0, 1) * (LEVELS[hi] - LEVELS[lo])
    return np.where(i == 0, 0.0, np.where(i >= len(q), 1.0, f))


def _numeric_row(name: str, kind: str, ref: Mapping, x: np.ndarray, cfg: DriftConfig, threshold: float) -> dict:
    values = sorted_values(x)
    row = _base(name, kind, ref, len(x), len(values), cfg)
    if not len(values) or not ref["quantiles"]:
        return row | _empty(len(values) > 0 or bool(ref["quantiles"]))
    if len(values) >= cfg.large_sample:
        # a column constant in the reference is judged against a thousandth of its size
        scale = ref["std"] if ref["std"] > 0 else 1e-3 * max(abs(ref["mean"]), 1.0)
        return row | _distance("wasserstein", wasserstein_from_quantiles(ref, values) / scale, threshold)
    return row | _test("ks", ks_from_quantiles(ref, values)[1], cfg.p_value)


# --- categories ---------------------------------------------------------------------------------


def _categorical_row(name: str, ref: Mapping, col: pd.Series, cfg: DriftConfig) -> dict:
    counts = category_counts(col)
    present = int(counts.sum())
    row = _base(name, "categorical", ref, len(col), present, cfg)
    freq: dict[str, float] = ref["frequencies"]
    unlisted = counts[~counts.index.isin(list(freq))]
    if ref["other"] == 0:
        row["unseen"] = [str(c) for c in unlisted.index[:UNSEEN_SHOWN]]
    if not present or not freq:
        return row | _empty(present > 0 or bool(freq))
    # buckets: the listed categories, then the reference's "other" (or, when it listed them all, the unseen)
    expected = np.array([*freq.values(), ref["other"]], dtype=np.float64)
    expected /= expected.sum()
    observed = np.array([*counts.reindex(list(freq), fill_value=0), unlisted.sum()], dtype=np.float64)
    if present >= cfg.large_sample:
        distance = float(jensenshannon(expected, observed / present, base=2))
        return row | _distance("jensen_shannon", distance, cfg.categorical_threshold)
    return row | _test("chi_square", _chi_square(observed, expected * present), cfg.p_value)


def _chi_square(observed: np.ndarray, expected: np.ndarray) -> float:
    """p-value of observed counts against expected ones, categories expected fewer than
    :data:`MIN_EXPECTED` times pooled into one (with the next rarest if still too rare)."""
    small = expected < MIN_EXPECTED
    if small.any():
        pool_e, pool_o = expected[small].sum(), observed[small].sum()
        expected, observed = expected[~small], observed[~small]
        if pool_e < MIN_EXPECTED and len(expected):
            j = int(np.argmin(expected))
            pool_e, pool_o = pool_e + expected[j], pool_o + observed[j]
            expected, observed = np.delete(expected, j), np.delete(observed, j)
        expected, observed = np.append(expected, pool_e), np.append(observed, pool_o)
    if len(expected) < 2:
        return 1.0
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return float(stats.chi2.sf(statistic, len(expected) - 1))


# --- rows ---------------------------------------------------------------------------------------


def _base(name: str, kind: str, ref: Mapping, rows: int, present: int, cfg: DriftConfig) -> dict:
    null_ref = float(ref["null_rate"]) if ref.get("null_rate") is not None else math.nan
    null_cur = 1 - present / rows if rows else math.nan
    return {
        "feature": name,
        "kind": kind,
        "null_rate_reference": null_ref,
        "null_rate_current": null_cur,
        "null_rate_change_alert": bool(null_cur - null_ref > cfg.null_rate_change),
        "unseen": [],
        "rows": present,
    }


def _judged(method: str, statistic: float, threshold: float, drifted: bool, score: float) -> dict:
    return {"method": method, "statistic": statistic, "threshold": threshold, "drifted": drifted, "drift_score": score}


def _distance(method: str, value: float, threshold: float) -> dict:
    return _judged(method, value, threshold, bool(value >= threshold), value / threshold)


def _test(method: str, p: float, threshold: float) -> dict:
    score = -math.log10(max(p, _P_FLOOR)) / -math.log10(threshold)
    return _judged(method, p, threshold, bool(p < threshold), score)


def _empty(drifted: bool) -> dict:
    return _judged("empty", math.nan, math.nan, drifted, math.inf if drifted else 0.0)


def _missing(name: str, kind: str, ref: Mapping) -> dict:
    null_ref = ref.get("null_rate")
    row = {"feature": name, "kind": kind, "null_rate_reference": math.nan if null_ref is None else null_ref}
    row |= {"null_rate_current": math.nan, "null_rate_change_alert": False, "unseen": [], "rows": 0}
    return row | _judged("missing", math.nan, math.nan, True, math.inf)


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame = frame.sort_values("drift_score", ascending=False, kind="stable").reset_index(drop=True)
    return frame.astype({"drifted": bool, "null_rate_change_alert": bool, "rows": np.int64})


def _drift_alert(row, suffix: str) -> Alert:
    name = f"{row.feature}{suffix}"
    if row.method == "missing":
        message = f"drift: {name} is missing from the claims (the model reads it)"
    elif row.method == "empty" and row.rows == 0:
        message = f"drift: {name} has no values in the window"
    elif row.method == "empty":
        message = f"drift: {name} had no values at training"
    elif row.method == "wasserstein":
        message = f"drift: {name} moved {row.statistic:.2f} (Wasserstein/std; threshold {row.threshold:g})"
    elif row.method == "jensen_shannon":
        message = f"drift: {name} Jensen-Shannon {row.statistic:.2f} (threshold {row.threshold:g})"
    else:
        message = f"drift: {name} {METHOD_NAMES[row.method]} p={row.statistic:.2g} (threshold {row.threshold:g})"
    if row.unseen:
        message += f"; unseen: {', '.join(row.unseen)}"
    value = None if math.isnan(row.statistic) else float(row.statistic)
    threshold = None if math.isnan(row.threshold) else float(row.threshold)
    return Alert("drift", name, value, threshold, message)

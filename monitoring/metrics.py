"""Metrics a claims team reads: ranking, capacity, calibration, lift, the same per slice, and what a
routing policy does (route shares, fraud caught, hit rate, leakage).

Training reports its test-period figures with these functions and monitoring its live ones, so the
two are comparable by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.model.routing import ROUTES, RoutingPolicy

AMOUNT_BANDS = (0, 1_000, 5_000, 25_000, np.inf)
SLICE_COLUMNS = ("line_of_business", "channel", "region")


def binary_metrics(y: np.ndarray, p: np.ndarray, capacity: float) -> dict[str, float]:
    """ROC-AUC, average precision, Brier, expected calibration error, and precision (hit rate) and
    recall when the top ``capacity`` share of claims is referred."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    out: dict[str, float] = {
        "claims": float(len(y)),
        "positives": float(y.sum()),
        "positive_rate": float(y.mean()) if len(y) else float("nan"),
        "mean_score": float(p.mean()) if len(p) else float("nan"),
    }
    both = 0 < y.sum() < len(y)
    out["roc_auc"] = float(roc_auc_score(y, p)) if both else float("nan")
    out["average_precision"] = float(average_precision_score(y, p)) if both else float("nan")
    out["brier"] = float(brier_score_loss(y, p)) if len(y) else float("nan")
    out["calibration_error"] = expected_calibration_error(y, p)
    k = max(1, int(round(capacity * len(y))))
    top = np.argsort(-p, kind="stable")[:k]
    out["precision_at_capacity"] = float(y[top].mean()) if len(y) else float("nan")
    out["recall_at_capacity"] = float(y[top].sum() / y.sum()) if y.sum() else float("nan")
    return out


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean score| over equal-count score bins, weighted by bin size."""
    if len(y) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    err = 0.0
    for chunk in np.array_split(order, min(bins, len(y))):
        err += len(chunk) * abs(y[chunk].mean() - p[chunk].mean())
    return float(err / len(y))


def lift_table(y: np.ndarray, p: np.ndarray, groups: int = 10) -> pd.DataFrame:
    """Claims ranked by score in ``groups`` equal bands (highest first): rate, lift, cumulative recall."""
    order = np.argsort(-np.asarray(p), kind="stable")
    y = np.asarray(y, dtype=np.float64)
    base = y.mean() if len(y) else np.nan
    rows, caught = [], 0.0
    for i, chunk in enumerate(np.array_split(order, groups), start=1):
        caught += y[chunk].sum()
        rate = y[chunk].mean() if len(chunk) else np.nan
        rows.append(
            {
                "band": i,
                "claims": len(chunk),
                "min_score": float(np.min(p[chunk])) if len(chunk) else np.nan,
                "positives": int(y[chunk].sum()),
                "rate": rate,
                "lift": rate / base if base else np.nan,
                "cumulative_recall": caught / y.sum() if y.sum() else np.nan,
            }
        )
    return pd.DataFrame(rows)


def amount_band(amount: pd.Series) -> pd.Series:
    labels = [
        f"{lo:,.0f}-{hi:,.0f}" if np.isfinite(hi) else f"{lo:,.0f}+" for lo, hi in zip(AMOUNT_BANDS, AMOUNT_BANDS[1:])
    ]
    return pd.cut(amount, AMOUNT_BANDS, labels=labels, right=False).astype("str").where(amount.notna(), "unknown")


def slice_metrics(
    frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, capacity: float, min_claims: int = 200
) -> pd.DataFrame:
    """``binary_metrics`` per line of business, channel, region and amount band (slices with at least
    ``min_claims`` claims)."""
    slices = {
        c: frame[c].astype("str").fillna("unknown") for c in SLICE_COLUMNS if c in frame and frame[c].notna().any()
    }
    if "claimed_amount" in frame and frame["claimed_amount"].notna().any():
        slices["amount_band"] = amount_band(frame["claimed_amount"])
    rows = []
    for column, values in slices.items():
        values = values.to_numpy()
        for value in pd.unique(values):
            mask = values == value
            if mask.sum() < min_claims:
                continue
            rows.append({"slice": column, "value": value, **binary_metrics(y[mask], p[mask], capacity)})
    return pd.DataFrame(rows)


def routing_kpis(
    policy: RoutingPolicy,
    table: pd.DataFrame,
    fraud: np.ndarray | None,
    fast: np.ndarray | None,
    y_fraud: np.ndarray | None,
) -> dict[str, float]:
    """Route shares (of all claims), and where the fraud label exists: fraud caught, SIU hit rate,
    fast-track leakage (over the claims with a fraud outcome: NaN marks a claim without one)."""
    routes, _ = policy.route_table(table, fraud, fast)
    out = {f"share_{r}": float((routes == r).mean()) for r in ROUTES}
    if y_fraud is not None and len(y_fraud):
        y = np.asarray(y_fraud, dtype=np.float64)
        known = ~np.isnan(y)
        referred, fast_tracked = known & (routes == "siu_referral"), known & (routes == "fast_track")
        positives = y[known].sum()
        out["fraud_caught"] = float(y[referred].sum() / positives) if positives else float("nan")
        out["siu_hit_rate"] = float(y[referred].mean()) if referred.any() else float("nan")
        out["fast_track_leakage"] = float(y[fast_tracked].mean()) if fast_tracked.any() else 0.0
    return out

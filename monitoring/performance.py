"""How well the scores rank and are calibrated while labels are still arriving.

A fraud label arrives when an investigation closes, months after the decision; a fast-track label
when the claim settles. Until then performance is *estimated* from the calibrated scores
(confidence-based performance estimation, NannyML's CBPE): a claim scored 0.2 counts as 0.2 of a
positive and 0.8 of a negative, which gives the expected confusion matrix at every threshold and so
the expected ROC-AUC, average precision and precision at the SIU's capacity. It holds as long as the
scores stay calibrated, which the *measured* figures check once labels arrive. Label maturity (the
share of the window labelled yet) says how far to trust which.

Measured figures are computed on the labelled claims only. Fraud labels exist mostly for claims
someone investigated, and investigations follow high scores, so measured fraud figures describe the
investigated claims, not the book: the report says so beside them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring.alerts import Alert
from monitoring.config import PerformanceConfig
from monitoring.metrics import binary_metrics


def estimated_metrics(p: np.ndarray, capacity: float) -> dict[str, float]:
    """Expected ROC-AUC, average precision, precision and recall at ``capacity`` (share of claims
    referred) and positive rate of claims scored ``p``, were the scores calibrated."""
    p = np.asarray(p, dtype=np.float64)
    p = p[~np.isnan(p)]
    n = len(p)
    out = {"claims": float(n), "expected_positive_rate": float(p.mean()) if n else float("nan")}
    pos = p.sum()
    neg = n - pos
    if n == 0 or pos <= 0 or neg <= 0:
        return out | {k: float("nan") for k in ("roc_auc", "average_precision", "precision_at_capacity")}
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    # group tied scores: a threshold cannot separate them
    last = np.r_[np.flatnonzero(np.diff(ps) != 0), n - 1]
    tp = np.cumsum(ps)[last]
    fp = np.cumsum(1.0 - ps)[last]
    tpr = np.r_[0.0, tp / pos]
    fpr = np.r_[0.0, fp / neg]
    out["roc_auc"] = float(np.trapezoid(tpr, fpr))
    precision = tp / (tp + fp)
    recall_step = np.diff(np.r_[0.0, tp]) / pos
    out["average_precision"] = float(np.sum(precision * recall_step))
    k = max(1, int(round(capacity * n)))
    out["precision_at_capacity"] = float(ps[:k].mean())
    out["recall_at_capacity"] = float(ps[:k].sum() / pos)
    return out


def calibration_bins(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Labelled claims in ``bins`` equal-count score bins: mean score against observed rate."""
    order = np.argsort(p, kind="stable")
    rows = [
        {
            "claims": len(chunk),
            "mean_score": float(p[chunk].mean()),
            "observed_rate": float(y[chunk].mean()),
            "positives": int(y[chunk].sum()),
        }
        for chunk in np.array_split(order, min(bins, len(y)))
        if len(chunk)
    ]
    return pd.DataFrame(rows, columns=["claims", "mean_score", "observed_rate", "positives"])


def performance(
    task: str,
    p: np.ndarray,
    y: np.ndarray,
    decided_at: pd.Series,
    capacity: float,
    test: dict[str, float] | None,
    cfg: PerformanceConfig,
    test_estimated: dict[str, float] | None = None,
) -> dict:
    """One model's figures over a window: label maturity, estimated (all claims) and measured
    (labelled claims, once there are ``min_labelled``) metrics, the test period's for comparison
    (measured, and estimated the same way as the window's: ``test_estimated``), a series per
    ``cfg.period`` and calibration bins of the labelled claims."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    labelled = ~np.isnan(y) & ~np.isnan(p)
    n_lab, positives = int(labelled.sum()), int(np.nansum(y[labelled]))
    out: dict = {
        "task": task,
        "claims": int((~np.isnan(p)).sum()),
        "labelled": n_lab,
        "positives": positives,
        "maturity": n_lab / max(1, int((~np.isnan(p)).sum())),
        "estimated": estimated_metrics(p, capacity),
        "measured": None,
        "test": dict(test or {}),
        "test_estimated": dict(test_estimated or {}),
        "calibration": [],
    }
    if n_lab >= cfg.min_labelled:
        out["measured"] = binary_metrics(y[labelled], p[labelled], capacity)
        out["calibration"] = calibration_bins(y[labelled], p[labelled]).to_dict("records")
    out["series"] = _series(p, y, decided_at, capacity, cfg)
    return out


def _series(p: np.ndarray, y: np.ndarray, decided_at: pd.Series, capacity: float, cfg: PerformanceConfig) -> list:
    if not len(p):
        return []
    buckets = pd.Series(pd.to_datetime(decided_at).to_numpy()).dt.to_period(_PERIODS[cfg.period]).dt.start_time
    rows = []
    for start, index in buckets.groupby(buckets, sort=True).indices.items():
        pb, yb = p[index], y[index]
        lab = ~np.isnan(yb) & ~np.isnan(pb)
        est = estimated_metrics(pb, capacity)
        row = {
            "period": f"{pd.Timestamp(start):%Y-%m-%d}",
            "claims": int(len(index)),
            "maturity": float(lab.mean()),
            "mean_score": float(np.nanmean(pb)) if (~np.isnan(pb)).any() else None,
            "estimated_roc_auc": est["roc_auc"],
            "measured_roc_auc": None,
            "observed_rate": float(yb[lab].mean()) if lab.any() else None,
        }
        if lab.sum() >= cfg.min_labelled and 0 < yb[lab].sum() < lab.sum():
            row["measured_roc_auc"] = binary_metrics(yb[lab], pb[lab], capacity)["roc_auc"]
        rows.append(row)
    return rows


_PERIODS = {"D": "D", "W": "W", "MS": "M", "QS": "Q"}


def performance_alerts(result: dict, cfg: PerformanceConfig) -> list[Alert]:
    """Falls below the test period's figures: estimated ROC-AUC on every claim; measured ROC-AUC,
    average precision and calibration once enough labels (and positives) have arrived and the window
    is mature (``cfg.min_maturity``)."""
    task, test, alerts = result["task"], result["test"], []
    ref_auc = test.get("roc_auc")
    # an estimate is compared with the test period's estimate (the same method on the same kind of
    # claims), where the reference has one: measured and estimated differ by the calibration's error
    ref_est = (result.get("test_estimated") or {}).get("roc_auc", ref_auc)
    est = result["estimated"].get("roc_auc")
    if _finite(ref_est) and _finite(est) and est < ref_est - cfg.roc_auc_drop:
        alerts.append(
            Alert(
                "performance",
                f"{task}: estimated roc_auc",
                est,
                ref_est - cfg.roc_auc_drop,
                f"performance: {task} estimated ROC-AUC {est:.3f} against {ref_est:.3f} estimated on the test "
                f"period (threshold: a fall of {cfg.roc_auc_drop:.2f})",
            )
        )
    measured = result["measured"]
    if (
        not measured
        or result["maturity"] < cfg.min_maturity
        or result["positives"] < cfg.min_positives
        or result["positives"] >= result["labelled"]
    ):
        return alerts
    auc = measured.get("roc_auc")
    if _finite(ref_auc) and _finite(auc) and auc < ref_auc - cfg.roc_auc_drop:
        alerts.append(
            Alert(
                "performance",
                f"{task}: roc_auc",
                auc,
                ref_auc - cfg.roc_auc_drop,
                f"performance: {task} measured ROC-AUC {auc:.3f} on {result['labelled']:,} labelled claims against "
                f"{ref_auc:.3f} on the test period (threshold: a fall of {cfg.roc_auc_drop:.2f})",
            )
        )
    ref_ap, ap = test.get("average_precision"), measured.get("average_precision")
    if _finite(ref_ap) and _finite(ap) and ap < ref_ap * (1 - cfg.average_precision_drop):
        alerts.append(
            Alert(
                "performance",
                f"{task}: average_precision",
                ap,
                ref_ap * (1 - cfg.average_precision_drop),
                f"performance: {task} measured average precision {ap:.3f} against {ref_ap:.3f} on the test "
                f"period (threshold: a fall of {cfg.average_precision_drop:.0%})",
            )
        )
    ece = measured.get("calibration_error")
    if _finite(ece) and ece > cfg.calibration_error:
        alerts.append(
            Alert(
                "performance",
                f"{task}: calibration_error",
                ece,
                cfg.calibration_error,
                f"performance: {task} calibration error {ece:.3f} on {result['labelled']:,} labelled claims "
                f"(threshold {cfg.calibration_error:.3f})",
            )
        )
    return alerts


def _finite(v) -> bool:
    return v is not None and np.isfinite(v)

"""Evaluation plots for a run: ROC, precision-recall, calibration, threshold curves, SHAP summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SHAP_SAMPLE = 2_000


def write_plots(folder: Path, frame: pd.DataFrame, table: pd.DataFrame, split, bundles: dict, policy) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for task, bundle in bundles.items():
        y = frame[bundle.label].astype("float64").to_numpy()
        mask = split.test & ~np.isnan(y)
        matrix = bundle.encoder.transform(table[mask])
        p, y = bundle.predict(matrix), y[mask]
        fig, ax = plt.subplots(2, 2, figsize=(11, 9))
        fpr, tpr, _ = roc_curve(y, p)
        ax[0, 0].plot(fpr, tpr)
        ax[0, 0].plot([0, 1], [0, 1], ls=":", c="grey")
        ax[0, 0].set(title="ROC (test period)", xlabel="false positive rate", ylabel="true positive rate")
        prec, rec, _ = precision_recall_curve(y, p)
        ax[0, 1].plot(rec, prec)
        ax[0, 1].axhline(y.mean(), ls=":", c="grey")
        ax[0, 1].set(title="Precision-recall (test period)", xlabel="recall", ylabel="precision")
        order = np.argsort(p)
        bins = np.array_split(order, 10)
        ax[1, 0].plot([p[b].mean() for b in bins], [y[b].mean() for b in bins], marker="o")
        hi = max(p.max(), y.mean() * 2, 1e-3)
        ax[1, 0].plot([0, hi], [0, hi], ls=":", c="grey")
        ax[1, 0].set(title="Calibration (10 equal-count bins)", xlabel="mean score", ylabel="observed rate")
        share = np.linspace(0.005, 0.3, 60)
        ranked = y[np.argsort(-p, kind="stable")]
        k = np.maximum((share * len(y)).astype(int), 1)
        cum = np.cumsum(ranked)
        ax[1, 1].plot(share, cum[k - 1] / np.maximum(y.sum(), 1), label="recall")
        ax[1, 1].plot(share, cum[k - 1] / k, label="precision (hit rate)")
        ax[1, 1].set(title="Referring the top share of claims", xlabel="share of claims", ylabel="")
        ax[1, 1].legend()
        fig.suptitle(f"{task} model")
        fig.tight_layout()
        path = folder / f"{task}_evaluation.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
        paths.append(_shap_summary(folder, task, bundle, matrix, plt))
    return paths


def _shap_summary(folder: Path, task: str, bundle, matrix: np.ndarray, plt) -> Path:
    """Mean absolute SHAP value per feature on a sample of test claims (exact TreeSHAP)."""
    rng = np.random.default_rng(0)
    sample = matrix[rng.choice(len(matrix), min(SHAP_SAMPLE, len(matrix)), replace=False)]
    contrib = bundle.explainer.contributions(sample)
    mean_abs = np.abs(contrib).mean(axis=0)
    top = np.argsort(mean_abs)[::-1][:20][::-1]
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.barh([bundle.features[i] for i in top], mean_abs[top])
    ax.set(title=f"{task}: mean |SHAP| on {len(sample):,} test claims (log-odds)")
    fig.tight_layout()
    path = folder / f"{task}_shap_summary.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

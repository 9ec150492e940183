"""The model card logged with every training run (markdown)."""

from __future__ import annotations

import pandas as pd

INTENDED_USE = (
    "Ranks and routes insurance claims at first notice of loss: fraud risk for referral to the special "
    "investigations unit, and the chance that a claim settles simply for fast-track handling. Scores "
    "support handlers and investigators; they are not a decision to decline or pay a claim."
)


def model_card(source, frame, split, feats, bundles, skipped, metrics, tables, policy) -> str:
    lines = [
        f"# ClaimScore models: {source}",
        "",
        "## Intended use",
        "",
        INTENDED_USE,
        "",
        "## Data",
        "",
        f"- source `{source}`, {len(frame):,} claims reported {frame['report_date'].min():%Y-%m-%d} to "
        f"{frame['report_date'].max():%Y-%m-%d}",
        *(f"- {name}: {period}" for name, period in split.periods().items()),
        f"- {len(feats)} features ({', '.join(sorted({f.family for f in feats}))})",
        "",
    ]
    lines += ["## Test-period results", ""]
    for task in bundles:
        keys = (
            "roc_auc",
            "average_precision",
            "precision_at_capacity",
            "recall_at_capacity",
            "brier",
            "calibration_error",
            "positive_rate",
        )
        lines.append(
            f"**{task}**: " + ", ".join(f"{k} {metrics.get(f'{task}.test.{k}', float('nan')):.4f}" for k in keys)
        )
        slices = tables.get(f"{task}_slices.csv")
        if slices is not None and len(slices):
            lines += [
                "",
                "Per slice (test period):",
                "",
                _markdown(slices[["slice", "value", "claims", "positives", "roc_auc", "average_precision"]]),
                "",
            ]
    for task, why in skipped.items():
        lines.append(f"- **{task} not trained**: {why}")
    lines += ["", "## The registered model", ""]
    for task, bundle in bundles.items():
        info = bundle.metadata.get("refit", {})
        if info.get("refit"):
            lines.append(
                f"- **{task}**: refitted on all matured labelled claims, {info['period']} ({info['rows']:,} claims, "
                f"{info['positives']:,} positives), {info['iterations']} boosting rounds "
                f"({info['selection_iterations']} chosen by early stopping on {info['selection_rows']:,} claims, "
                f"scaled as {info['iterations_rule']}); calibration: {info['calibration']}. The test figures "
                "above are those of the model fitted on the train period (the refit has seen the test period)."
            )
        else:
            lines.append(f"- **{task}**: the model fitted on the train period (refit off).")
    lines += [
        "",
        "## Routing policy (chosen on the validation period)",
        "",
        "```json",
        pd.Series(policy.to_dict()).to_json(indent=2),
        "```",
        "",
        "## Limits",
        "",
        "- Fraud labels are confirmed investigation outcomes: fraud that was never investigated is "
        "labelled as not fraud, so scores learn what investigators found, with their biases.",
        "- Later periods may differ (new fraud patterns, policy changes): monitor drift and performance.",
        "- Protected attributes (gender, marital status) are not features; check fairness by slice.",
    ]
    return "\n".join(lines) + "\n"


def _markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        out.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(out)

"""``claimscore evaluate``: the champions on labelled claims, logged as an MLflow run."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.cli.common import ConfigOpt, DataOpt, SourceOpt, TrainingConfigOpt, area, settings

app = area("Monitoring the champion models.")


@app.command()
def evaluate(
    data: DataOpt = None,
    source: SourceOpt = "synthetic",
    since: Annotated[str | None, typer.Option(help="Only claims reported on or after this date (YYYY-MM-DD).")] = None,
    config: ConfigOpt = None,
    training_config: TrainingConfigOpt = None,
) -> None:
    """Evaluate the champion models on labelled claims; logs an evaluation run to MLflow."""
    import mlflow
    import numpy as np
    import pandas as pd

    from features.data.sources import load_claims
    from monitoring.evaluate import evaluate as evaluate_champions
    from serving.model.scorer import Scorer
    from training import registry
    from training.config import load_training_config

    state = settings(config)
    capacity = load_training_config(training_config).routing.siu_capacity
    scorer = Scorer.from_registry(state)
    loaded = load_claims(data, source, state)
    frame = loaded.frame
    if since:
        try:
            frame = frame[frame["report_date"] >= pd.Timestamp(since)]
        except ValueError:
            raise typer.BadParameter(f"'{since}' is not a date", param_hint="--since") from None
    results = evaluate_champions(scorer, frame, capacity, loaded.extras)
    for task in scorer.bundles:
        m = results.get(task)
        if m is None:
            typer.echo(f"{task}: no labelled claims to evaluate on")
            continue
        typer.echo(
            f"{task} v{scorer.versions[task]} on {int(m['claims']):,} labelled claims: "
            f"ROC-AUC {m['roc_auc']:.3f}, average precision {m['average_precision']:.3f}, "
            f"calibration error {m['calibration_error']:.4f}, "
            f"recall at {capacity:.0%} capacity {m['recall_at_capacity']:.1%}"
        )
    metrics = {f"{task}.{k}": float(v) for task, m in results.items() for k, v in m.items()}
    with registry.start_run(state, run_name="evaluation"):
        mlflow.set_tags({"kind": "evaluation", "source": source, "since": since or "all"})
        mlflow.log_params({f"{t}_version": v for t, v in scorer.versions.items()} | {"claims": len(frame)})
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})

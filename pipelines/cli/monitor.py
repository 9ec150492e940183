"""``claimscore monitor``: drift, data quality, performance, fairness and KPIs over a window of
decisions or a table of claims, as a report and ``summary.json`` (exit 3 when something alerts);
``claimscore evaluate``: the champions on labelled claims, logged as an MLflow run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
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


@app.command()
def monitor(
    since: Annotated[
        str | None,
        typer.Option(
            help="Decisions made (with --data: claims reported) on or after this time (YYYY-MM-DD or ISO, UTC)."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Decisions made (with --data: claims reported) before this time.")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            help="A table of claims to monitor instead of the decision log, scored with the champion; "
            "its earlier claims are the window's history.",
        ),
    ] = None,
    source: SourceOpt = "synthetic",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for report.html and summary.json (default: a new one under the reports folder)."
        ),
    ] = None,
    monitor_config: Annotated[
        Path | None,
        typer.Option("--monitor-config", help="YAML file of thresholds (monitoring/config.py has the defaults)."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Monitor the champion: drift, data quality, performance, fairness and KPIs. Exit 3 on alerts."""
    from monitoring.config import load_monitor_config
    from pipelines.monitoring import run_monitoring

    state = settings(config).ensure_dirs()
    cfg = load_monitor_config(monitor_config)
    window = (_moment(since, "--since") if since else None, _moment(until, "--until") if until else None)
    summary, folder = run_monitoring(
        state, cfg, out=out, window=window, data=str(data) if data else None, source=source
    )
    typer.echo(
        f"monitored {summary.data['window']['claims']:,} claims: {len(summary.alerts)} alert(s); "
        f"report {folder / 'report.html'}"
    )
    for alert in summary.alerts:
        typer.echo(alert.message)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def _moment(text: str, option: str) -> datetime:
    import pandas as pd

    try:
        t = pd.Timestamp(text)
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a date or time (YYYY-MM-DD or ISO)", param_hint=option) from None
    if pd.isna(t):
        raise typer.BadParameter(f"'{text}' is not a date or time", param_hint=option)
    t = t.tz_localize(UTC) if t.tzinfo is None else t.tz_convert(UTC)
    return t.to_pydatetime()

"""``claimscore backtest``: routing policies replayed on labelled claims, side by side, swept and
optimised; ``claimscore monitor``: drift, data quality, performance, fairness and KPIs over a window of
decisions or a table of claims, as a report and ``summary.json`` (exit 3 when something alerts);
``claimscore evaluate``: the champions on labelled claims, logged as an MLflow run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import (
    ConfigOpt,
    DataOpt,
    SchedulerOpt,
    SourceOpt,
    TrainingConfigOpt,
    area,
    dask_workers_option,
    one_cluster,
    settings,
)

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
    dask_workers: Annotated[
        int | None,
        dask_workers_option(
            "With --data (canonical claims in a Parquet file or folder): make the window on this many worker "
            "processes, for tables larger than memory; the same figures as in one process"
        ),
    ] = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Monitor the champion: drift, data quality, performance, fairness and KPIs. Exit 3 on alerts."""
    from contextlib import ExitStack

    from monitoring.config import load_monitor_config
    from pipelines.monitoring import run_monitoring

    state = settings(config).ensure_dirs()
    cfg = load_monitor_config(monitor_config)
    window = (_moment(since, "--since") if since else None, _moment(until, "--until") if until else None)
    on_dask = one_cluster(dask_workers, scheduler)
    if on_dask and data is None:
        raise typer.BadParameter(
            "Dask monitors a table: give --data (canonical claims, a Parquet file or folder)",
            param_hint="--scheduler" if scheduler else "--dask-workers",
        )
    with ExitStack() as stack:
        client = None
        if on_dask:
            from pipelines.distributed import dask_client

            client = stack.enter_context(dask_client(dask_workers, scheduler))
        summary, folder = run_monitoring(
            state, cfg, out=out, window=window, data=str(data) if data else None, source=source, client=client
        )
    typer.echo(
        f"monitored {summary.data['window']['claims']:,} claims: {len(summary.alerts)} alert(s); "
        f"report {folder / 'report.html'}"
    )
    for alert in summary.alerts:
        typer.echo(alert.message)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def _figure(v: float) -> str:
    return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"


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


@app.command()
def backtest(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", "-d", help="Labelled claims to replay (without it: the decision log against the shadow)."
        ),
    ] = None,
    source: SourceOpt = "synthetic",
    policy: Annotated[
        list[Path] | None,
        typer.Option("--policy", help="A routing policy file to replay beside the champion's (repeatable)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="[NAME:]KEY=VALUE,...",
            help="The champion's policy with these thresholds (siu_threshold, fast_track_threshold, "
            "fast_track_max_fraud, fast_track_amount_limit, large_loss_limit); repeatable.",
        ),
    ] = None,
    challenger: Annotated[
        bool, typer.Option("--challenger", help="Also the challenger model with its policy and with the champion's.")
    ] = False,
    since: Annotated[str | None, typer.Option(help="Replay claims reported on or after this date.")] = None,
    until: Annotated[str | None, typer.Option(help="Replay claims reported before this date.")] = None,
    cost_model: Annotated[
        Path | None,
        typer.Option("--cost-model", help="YAML cost and time model (monitoring/costs.py has the defaults)."),
    ] = None,
    capacity_per_week: Annotated[
        float | None,
        typer.Option(help="SIU referrals per week the unit can take (default: the training capacity's share)."),
    ] = None,
    leakage_cap: Annotated[
        float | None, typer.Option(help="Largest confirmed-fraud rate among fast-tracked claims (default: training's).")
    ] = None,
    cycle_days: Annotated[
        float | None, typer.Option(help="Largest average working days from report to payment (--optimise).")
    ] = None,
    sweep: Annotated[
        bool, typer.Option("--sweep", help="Evaluate a grid of thresholds and draw the frontiers.")
    ] = False,
    optimise: Annotated[
        bool, typer.Option("--optimise", help="With the sweep: write the cheapest policy within the constraints.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for backtest.json, report.html, policy.json.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Replay labelled claims under routing policies side by side: routes, SIU load, fraud caught,
    leakage, cycle time and claim cost; --sweep and --optimise search thresholds. Without --data:
    the champion's live decisions against the service's shadow's, on the decision log."""
    from monitoring.backtest_report import side_by_side
    from monitoring.costs import load_cost_model
    from pipelines.backtest import policy_with, run_backtest, run_log_backtest, write_outputs
    from serving.model.routing import load_policy
    from serving.model.scorer import Scorer

    state = settings(config).ensure_dirs()
    costs = load_cost_model(cost_model)
    policies = [(p.name, load_policy(p)) for p in policy or []]
    if set_:
        base = Scorer.from_registry(state).policy
        policies += [policy_with(base, text) for text in set_]
    if data is None:  # the decision log: the champion's live decisions, the shadow's, the policies given
        if challenger or sweep or optimise:
            raise typer.BadParameter(
                "on the decision log the champion is compared with the service's shadow and the policies "
                "given: --challenger, --sweep and --optimise need --data",
                param_hint="--data",
            )
        result = run_log_backtest(
            state,
            costs,
            policies=policies,
            since=_moment(since, "--since") if since else None,
            until=_moment(until, "--until") if until else None,
            capacity_per_week=capacity_per_week,
        )
        typer.echo(side_by_side(result.table).to_string(float_format=_figure))
        if out is not None:
            typer.echo("wrote " + ", ".join(str(p) for p in write_outputs(result, out)))
        return
    result = run_backtest(
        state,
        str(data),
        source,
        costs,
        policies=policies,
        challenger=challenger,
        since=_moment(since, "--since") if since else None,
        until=_moment(until, "--until") if until else None,
        capacity_per_week=capacity_per_week,
        leakage_cap=leakage_cap,
        cycle_days=cycle_days,
        sweep=sweep or optimise,
    )
    shown = side_by_side(result.table)
    typer.echo(shown.to_string(float_format=_figure))
    if result.swept is not None:
        feasible = int(result.swept["feasible"].sum())
        typer.echo(f"sweep: {len(result.swept)} policies, {feasible} within the constraints")
    if optimise:
        if result.best is None:
            typer.echo("optimise: no policy of the sweep meets every constraint")
        else:
            r = result.best_row
            typer.echo(
                f"optimised: siu_threshold {_or_none(r['siu_threshold'], '.4f')}, fast_track_threshold "
                f"{_or_none(r['fast_track_threshold'], '.3f')}, fast_track_amount_limit "
                f"{_or_none(r['fast_track_amount_limit'], ',.0f')}: total cost {r['cost_total']:,.0f} "
                f"({r['cost_total'] - result.table['cost_total'].iloc[0]:+,.0f})"
            )
    if out is not None:
        written = write_outputs(result, out)
        typer.echo("wrote " + ", ".join(str(p) for p in written))


def _or_none(value, spec: str) -> str:
    """A threshold as text; "none" where the policy has none (a route its model cannot reach, e.g.
    no fast-track model on a small book)."""
    return "none" if value is None or value != value else format(value, spec)

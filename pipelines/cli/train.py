"""``claimscore train`` and ``claimscore promote``: challengers, and the gate to champion."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import (
    ConfigOpt,
    DataOpt,
    SchedulerOpt,
    SourceOpt,
    Stages,
    TrainingConfigOpt,
    area,
    dask_workers_option,
    one_cluster,
    settings,
)

app = area("Training and promotion.")


@app.command()
def train(
    data: DataOpt = None,
    source: SourceOpt = "synthetic",
    config: ConfigOpt = None,
    training_config: TrainingConfigOpt = None,
    tune: Annotated[
        int,
        typer.Option(
            "--tune", min=0, help="Trials of random search over LightGBM settings, judged on the validation period."
        ),
    ] = 0,
    refit: Annotated[
        bool | None,
        typer.Option(
            "--refit/--no-refit",
            help="Refit the chosen model on all matured labelled data before registering it "
            "(default: the training config's 'refit', true). --no-refit registers the train-period model.",
        ),
    ] = None,
    dask_workers: Annotated[
        int | None,
        dask_workers_option(
            "Build the features and fit the boosters on this many worker processes, with LightGBM's "
            "distributed training; the rest of the run is the same"
        ),
    ] = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Train the fraud and fast-track models on a time-ordered split; register them as challengers.

    The training config is --training-config if given, else the source's recommended
    training/configs/<source>.yaml, else the defaults (a split relative to the data).
    --source history trains on the claim history store's matured labels: claims whose outcome has
    not been recorded yet are left out of each model's rows (and counted).
    With --dask-workers N (or --scheduler ADDRESS) features and boosters are made on Dask
    (training/distributed.py says how, and how close the result is to an in-process run)."""
    from features.schema import LABELS
    from training.config import resolve_training_config
    from training.pipeline import STAGES
    from training.pipeline import train as run_training

    state = settings(config)
    cfg, origin = resolve_training_config(source, training_config)
    if refit is not None:
        cfg = cfg.model_copy(update={"refit": refit})
        origin += f", refit {'on' if refit else 'off'} by option"
    typer.echo(f"training config: {origin}")
    t0 = time.perf_counter()
    on_dask = one_cluster(dask_workers, scheduler)
    with ExitStack() as stack:
        trainer = None
        if on_dask:
            from pipelines.distributed import dask_client
            from training.distributed import DaskTrainer

            trainer = DaskTrainer(stack.enter_context(dask_client(dask_workers, scheduler)))
            typer.echo(f"training on Dask: {trainer.describe()}")
        with Stages(len(STAGES), "validating claims") as bar:
            result = run_training(
                data,
                source,
                state,
                cfg,
                on_stage=bar.advance,
                tune_trials=tune,
                config_origin=origin,
                trainer=trainer,
            )
    for note in result.notes:
        typer.echo(f"split: {note}")
    for task, why in result.skipped.items():
        typer.echo(f"{task} model not trained: {why}")
    for task, n in result.unlabelled.items():
        if n:
            typer.echo(
                f"{task}: {n:,} claims without a {LABELS[task]} outcome left out of training and evaluation "
                "(still history for other claims' features)"
            )
    for line in result.poisoning:
        typer.echo(f"warning: against the champion: {line} (claimscore promote will refuse it without --override)")
    for rule, why in result.policy.skipped_rules.items():
        typer.echo(f"routing rule '{rule}' not applied: {why}")
    for task, model in result.models.items():
        m = result.metrics
        typer.echo(
            f"{model.name} v{model.version} (challenger): test ROC-AUC {m[f'{task}.test.roc_auc']:.3f}, "
            f"average precision {m[f'{task}.test.average_precision']:.3f}, "
            f"calibration error {m[f'{task}.test.calibration_error']:.4f} (model fitted on the train period)"
        )
        info = result.bundles[task].metadata.get("refit", {})
        if info.get("refit"):
            typer.echo(
                f"  registered: refit on {info['period']} ({info['rows']:,} claims, {info['positives']:,} positives), "
                f"{info['iterations']} rounds ({info['selection_iterations']} from early stopping x rows "
                f"{info['rows']:,}/{info['selection_rows']:,})"
            )
        else:
            typer.echo("  registered: the model fitted on the train period (no refit)")
    k = result.policy.expected_kpis
    typer.echo("routing on the test period: " + ", ".join(f"{key} {value:.1%}" for key, value in k.items()))
    typer.echo(
        f"run {result.run_id} in {time.perf_counter() - t0:.0f} s; periods: "
        + "; ".join(f"{n} {p}" for n, p in result.periods.items())
    )


@app.command()
def promote(
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded on the model versions).")] = "retrained",
    by: Annotated[str, typer.Option("--by", help="Who (recorded on the model versions).")] = os.environ.get(
        "USER", "unknown"
    ),
    config: ConfigOpt = None,
    training_config: TrainingConfigOpt = None,
    override: Annotated[
        str | None,
        typer.Option(
            "--override",
            metavar="WHY",
            help="Promote although the challenger's data or behaviour moved beyond the poisoning limits "
            "(a real change); WHY is recorded on the model versions.",
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Instead: make this routing policy file (e.g. from claimscore backtest --optimise) the "
            "champion's, with the same models.",
        ),
    ] = None,
) -> None:
    """Make the challengers champions if they beat the champions on the latest test period (or, with
    --policy, give the champion models a new routing policy)."""
    from training import registry
    from training.config import load_training_config

    state = settings(config)
    if policy is not None:
        from serving.model.routing import load_policy

        registry.configure(state)
        for row in registry.promote_policy(state, load_policy(policy), policy.name, by, reason):
            typer.echo(
                f"{row['model']} v{row['champion']} is champion: the models of v{row['replaced']} under {row['policy']}"
            )
        return
    cfg = load_training_config(training_config)
    registry.configure(state)
    rows = registry.promote_as_configured(cfg, by, reason, override)
    typer.echo(registry.format_table(rows))


@app.command()
def retrain(
    data: DataOpt = None,
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="Where the matured labels come from: 'history' (the claim history store, the default) or "
            "a source mapping for --data.",
        ),
    ] = "history",
    out: Annotated[
        Path, typer.Option("--out", help="Folder for retrain.json, the backtest and the monitoring report.")
    ] = Path(".claimscore/reports/retrain"),
    by: Annotated[str, typer.Option("--by", help="Who (recorded on promoted versions).")] = "scheduled",
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded on promoted versions).")
    ] = "claimscore retrain",
    override: Annotated[
        str | None,
        typer.Option(
            "--override",
            metavar="WHY",
            help="Promote although the data or behaviour moved beyond the poisoning limits (a real change); recorded.",
        ),
    ] = None,
    config: ConfigOpt = None,
    training_config: TrainingConfigOpt = None,
) -> None:
    """The scheduled loop in one run: matured labels, validation, a challenger, a backtest against
    the champion, the promotion gate (metric, fairness, poisoning), the monitoring report.

    Exits 0 when the challenger was promoted, 4 when it was refused (the reasons are printed and kept
    in --out/retrain.json), 1 or 2 on an error."""
    from pipelines.retrain import REFUSED
    from pipelines.retrain import retrain as run_retrain
    from training.config import load_training_config, resolve_training_config

    state = settings(config)
    cfg = load_training_config(training_config) if training_config else resolve_training_config(source, None)[0]
    summary = run_retrain(
        state,
        data,
        source,
        out,
        training_config=cfg,
        by=by,
        reason=reason,
        override=override,
        on_step=lambda s: typer.echo(f"- {s}"),
    )
    for line in summary.poisoning:
        typer.echo(f"data moved against the champion: {line}")
    for row in summary.backtest:
        typer.echo(
            f"backtest {row['policy']}: SIU {row.get('siu_per_week', 0):.1f}/week, fraud caught (est.) "
            f"{row.get('fraud_caught_estimated', 0):,.0f}, fast-track {row.get('share_fast_track', 0):.1%}, "
            f"cost change {row.get('cost_change', 0):+,.0f}"
        )
    for alert in summary.monitoring["alerts"]:
        typer.echo(f"monitoring: {alert}")
    versions = ", ".join(f"{name} v{v}" for name, v in summary.challenger.items())
    if summary.promoted:
        typer.echo(f"promoted: {versions} are champions (summary: {out / 'retrain.json'})")
        return
    typer.echo(f"refused: {versions} stay challengers:")
    for line in summary.reasons:
        typer.echo(f"  {line}")
    typer.echo(f"(summary: {out / 'retrain.json'})")
    raise typer.Exit(REFUSED)

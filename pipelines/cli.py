"""The ``claimscore`` command.

Each subcommand is a thin edge: it parses options, calls the stage that does the work and turns a
:class:`~features.errors.ClaimScoreError` into one readable line and an exit code. Heavy libraries
are imported inside the commands so that ``claimscore --help`` answers at once.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer._click import exceptions as click_exc  # typer 0.29 vendors click

from features.errors import ClaimScoreError, DataFileError, ValidationFailed

app = typer.Typer(
    name="claimscore",
    help="Fraud and triage scoring for insurance claims.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

from pipelines.history_cli import history_app  # noqa: E402  (imports only typer)

app.add_typer(history_app, name="history")

keys_app = typer.Typer(help="API keys for the scoring service (shown once; only hashes are kept).",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option("--role", help="scorer (claim systems), investigator or admin.")],
    name: Annotated[str, typer.Option("--name", help="Who or what the key is for.")] = "",
    config: ConfigOpt = None,
) -> None:
    """Create a key and print it once."""
    from serving.keys import KeyStore

    key, record = KeyStore(_settings(config).home / "keys.json").create(role, name)
    typer.echo(key)
    typer.echo(f"key {record.key_id} for role {record.role} created; it is not shown again", err=True)


@keys_app.command("list")
def keys_list(config: ConfigOpt = None) -> None:
    """List keys (ids, roles, names; never the keys)."""
    from serving.keys import KeyStore

    for r in KeyStore(_settings(config).home / "keys.json").list():
        typer.echo(f"{r.key_id}  {r.role:<12}  {r.created_at}  {'revoked' if r.revoked else 'active '}  {r.name}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id shown by 'claimscore keys list'.")],
                config: ConfigOpt = None) -> None:
    """Revoke a key."""
    from serving.keys import KeyStore

    record = KeyStore(_settings(config).home / "keys.json").revoke(key_id)
    typer.echo(f"key {record.key_id} revoked")


SOURCE_HELP = ("Where the claims come from: synthetic (canonical Parquet/CSV), vehicle_fraud, "
               "aus_bodily_injury, or mapping:FILE.yaml for your own table.")
SourceOpt = Annotated[str, typer.Option("--source", "-s", help=SOURCE_HELP)]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="Config file (TOML); default ./claimscore.toml or $CLAIMSCORE_CONFIG.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output file: .parquet or .csv.")]
DataOpt = Annotated[Optional[str], typer.Option("--data", "-d", help="Claims file (or a SQLAlchemy URL for SQL mappings). The built-in real sources default to ../shared/data.")]
TrainingConfigOpt = Annotated[Optional[Path], typer.Option("--training-config", help="YAML overriding training defaults: split, LightGBM, routing constraints, promotion metric and margin (training/config.py).")]


def _settings(config: Path | None):
    from features.config import load_settings

    return load_settings(config).ensure_dirs()


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


class _Stages:
    """A rich progress bar over the named stages of a long command."""

    def __init__(self, total: int, description: str):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        console = _console()
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                  console=console, transient=True, disable=not console.is_terminal)
        self._task = self._progress.add_task(description, total=total)

    def __enter__(self) -> "_Stages":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def advance(self, description: str) -> None:
        self._progress.update(self._task, advance=1, description=description)


@app.command()
def generate(
    out: OutOpt,
    claims: Annotated[int, typer.Option("--claims", "-n", min=1, help="Number of claims.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same claims.")] = 0,
    start: Annotated[str, typer.Option(help="First report date (YYYY-MM-DD).")] = "2021-01-01",
    years: Annotated[float, typer.Option(min=0.1, help="Years of claims.")] = 4.0,
) -> None:
    """Generate synthetic claims with realistic fraud patterns, in the canonical schema."""
    from features.synthetic import STAGES, generate_claims

    _check_output(out)
    try:
        import numpy as np

        np.datetime64(start, "D")
    except ValueError:
        raise typer.BadParameter(f"'{start}' is not a date (YYYY-MM-DD)", param_hint="--start") from None
    t0 = time.perf_counter()
    with _Stages(len(STAGES) + 1, "generating claims") as bar:
        frame = generate_claims(claims, seed=seed, start=start, years=years, on_stage=bar.advance)
        bar.advance(f"writing {out.name}")
        _write_table(frame, out)
    elapsed = time.perf_counter() - t0
    confirmed = frame["fraud_confirmed"].mean()
    typer.echo(f"wrote {len(frame):,} claims to {out} in {elapsed:.1f} s "
               f"({frame['report_date'].min():%Y-%m-%d} to {frame['report_date'].max():%Y-%m-%d}; "
               f"confirmed fraud {confirmed:.2%}, investigated {frame['investigated'].mean():.2%})")


@app.command()
def validate(
    data: DataOpt = None,
    source: SourceOpt = "synthetic",
    config: ConfigOpt = None,
) -> None:
    """Check claims against the canonical schema with great-expectations; exit 1 if any check fails."""
    from features.sources import load_claims
    from features.validation import validate_claims

    settings = _settings(config)
    with _Stages(2, "reading claims") as bar:
        loaded = load_claims(data, source, settings)
        bar.advance("checking claims")
        name = Path(data).stem if data and "://" not in data else source.replace(":", "_").replace("/", "_")
        result = validate_claims(loaded.frame, loaded.type_problems, report_dir=settings.reports_dir,
                                 name=name, null_rates=loaded.null_rates)
        bar.advance("done")
    for reason, count in loaded.excluded:
        typer.echo(f"excluded {count:,} row(s): {reason}")
    for reason, count in loaded.adjusted:
        typer.echo(f"adjusted {count:,} row(s): {reason}")
    result.raise_for_failure()
    typer.echo(f"valid: {len(loaded.frame):,} claims passed {len(result.checks)} checks; "
               f"report: {result.report_path}")


@app.command()
def features(
    out: OutOpt,
    data: DataOpt = None,
    source: SourceOpt = "synthetic",
    config: ConfigOpt = None,
    dask_workers: Annotated[int, typer.Option(min=0, help="Build on a local Dask cluster with this many worker processes (canonical Parquet input only; writes a Parquet folder). 0: in-process pandas.")] = 0,
) -> None:
    """Build point-in-time claim, claimant and link features for every claim of a table."""
    from features.build import available_features, build_features
    from features.schema import LABELS
    from features.sources import load_claims

    settings = _settings(config)
    _check_output(out)
    t0 = time.perf_counter()
    if dask_workers:
        n = _features_on_dask(data, source, out, dask_workers)
        typer.echo(f"wrote features for {n:,} claims to {out}/ on {dask_workers} Dask workers "
                   f"in {time.perf_counter() - t0:.1f} s")
        return
    with _Stages(3, "reading claims") as bar:
        loaded = load_claims(data, source, settings)
        bar.advance(f"building features for {len(loaded.frame):,} claims")
        wanted = available_features(loaded.frame, loaded.extras)
        table = build_features(loaded.frame, wanted, loaded.extras)
        keys = loaded.frame[["claim_id", "report_date", *LABELS.values()]]
        table = keys.join(table)
        bar.advance(f"writing {out.name}")
        _write_table(table, out)
    typer.echo(f"wrote {len(wanted)} features for {len(table):,} claims to {out} in {time.perf_counter() - t0:.1f} s")


@app.command()
def train(
    data: DataOpt = None,
    source: SourceOpt = "synthetic",
    config: ConfigOpt = None,
    training_config: TrainingConfigOpt = None,
    tune: Annotated[int, typer.Option("--tune", min=0, help="Trials of random search over LightGBM settings, judged on the validation period.")] = 0,
) -> None:
    """Train the fraud and fast-track models on a time-ordered split; register them as challengers."""
    from training.config import load_training_config
    from training.pipeline import STAGES, train as run_training

    settings = _settings(config)
    cfg = load_training_config(training_config)
    t0 = time.perf_counter()
    with _Stages(len(STAGES), "validating claims") as bar:
        result = run_training(data, source, settings, cfg, on_stage=bar.advance, tune_trials=tune)
    for task, why in result.skipped.items():
        typer.echo(f"{task} model not trained: {why}")
    for task, model in result.models.items():
        m = result.metrics
        typer.echo(f"{model.name} v{model.version} (challenger): test ROC-AUC {m[f'{task}.test.roc_auc']:.3f}, "
                   f"average precision {m[f'{task}.test.average_precision']:.3f}, "
                   f"calibration error {m[f'{task}.test.calibration_error']:.4f}")
    k = result.policy.expected_kpis
    typer.echo("routing on the test period: " + ", ".join(f"{key} {value:.1%}" for key, value in k.items()))
    typer.echo(f"run {result.run_id} in {time.perf_counter() - t0:.0f} s; periods: "
               + "; ".join(f"{n} {p}" for n, p in result.periods.items()))


@app.command()
def promote(
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded on the model versions).")] = "retrained",
    by: Annotated[str, typer.Option("--by", help="Who (recorded on the model versions).")] = os.environ.get("USER", "unknown"),
    config: ConfigOpt = None,
    training_config: TrainingConfigOpt = None,
) -> None:
    """Make the challengers champions if they beat the champions on the latest test period."""
    from training import registry
    from training.config import load_training_config

    settings = _settings(config)
    cfg = load_training_config(training_config)
    registry.configure(settings)
    rows = registry.promote(cfg.promotion.metric, cfg.promotion.margin, by, reason)
    typer.echo(registry.format_table(rows))


@app.command()
def score(
    out: OutOpt,
    data: DataOpt = None,
    source: SourceOpt = "synthetic",
    config: ConfigOpt = None,
) -> None:
    """Score a table with the champion models: scores, route, rules fired and top reasons per claim."""
    from features.sources import load_claims
    from serving.scorer import Scorer

    settings = _settings(config)
    _check_output(out)
    t0 = time.perf_counter()
    with _Stages(3, "loading the champion models") as bar:
        scorer = Scorer.from_registry(settings)
        bar.advance("reading claims")
        loaded = load_claims(data, source, settings)
        bar.advance(f"scoring {len(loaded.frame):,} claims")
        table = scorer.score_table(loaded.frame, loaded.extras)
        _write_table(table, out)
    routes = table["route"].value_counts(normalize=True)
    typer.echo(f"scored {len(table):,} claims into {out} in {time.perf_counter() - t0:.1f} s with "
               + ", ".join(f"{scorer.bundles[t].task} v{v}" for t, v in scorer.versions.items()) + "; routes: "
               + ", ".join(f"{r} {routes.get(r, 0):.1%}" for r in ("fast_track", "standard", "specialist", "siu_referral")))


@app.command()
def evaluate(
    data: DataOpt = None,
    source: SourceOpt = "synthetic",
    since: Annotated[Optional[str], typer.Option(help="Only claims reported on or after this date (YYYY-MM-DD).")] = None,
    config: ConfigOpt = None,
    training_config: TrainingConfigOpt = None,
) -> None:
    """Evaluate the champion models on labelled claims; logs an evaluation run to MLflow."""
    import numpy as np
    import pandas as pd

    from features.schema import LABELS
    from features.sources import load_claims
    from serving.scorer import Scorer
    from training import registry
    from training.config import load_training_config
    from training.evaluate import binary_metrics

    settings = _settings(config)
    cfg = load_training_config(training_config)
    scorer = Scorer.from_registry(settings)
    loaded = load_claims(data, source, settings)
    frame = loaded.frame
    if since:
        try:
            frame = frame[frame["report_date"] >= pd.Timestamp(since)]
        except ValueError:
            raise typer.BadParameter(f"'{since}' is not a date", param_hint="--since") from None
    scored = scorer.score_table(frame, loaded.extras)
    metrics: dict[str, float] = {}
    for task in scorer.bundles:
        y = frame[LABELS[task]].astype("float64").to_numpy()
        lab = ~np.isnan(y)
        if lab.sum() == 0:
            typer.echo(f"{task}: no labelled claims to evaluate on")
            continue
        m = binary_metrics(y[lab], scored[f"{task}_score"].to_numpy()[lab], cfg.routing.siu_capacity)
        metrics.update({f"{task}.{k}": v for k, v in m.items()})
        typer.echo(f"{task} v{scorer.versions[task]} on {int(lab.sum()):,} labelled claims: ROC-AUC {m['roc_auc']:.3f}, "
                   f"average precision {m['average_precision']:.3f}, calibration error {m['calibration_error']:.4f}, "
                   f"recall at {cfg.routing.siu_capacity:.0%} capacity {m['recall_at_capacity']:.1%}")
    import mlflow

    with registry.start_run(settings, run_name="evaluation"):
        mlflow.set_tags({"kind": "evaluation", "source": source, "since": since or "all"})
        mlflow.log_params({f"{t}_version": v for t, v in scorer.versions.items()} | {"claims": len(frame)})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})


@app.command()
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless told otherwise).")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (each scores its own requests; "
                                                             "one per core is a good start).")] = 2,
    config: ConfigOpt = None,
) -> None:
    """Serve the champion models over HTTP (BentoML): /score, /score_batch, /explain, /model."""
    import shutil

    from training import registry

    settings = _settings(config)
    registry.configure(settings)
    if not any(registry.version_for(t, registry.CHAMPION) for t in registry.MODEL_NAMES):
        raise registry.RegistryError("no champion model to serve: run claimscore train and claimscore promote first")
    bentoml = shutil.which("bentoml") or str(Path(sys.executable).with_name("bentoml"))
    os.environ.setdefault("BENTOML_HOME", str(settings.home / "bentoml"))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ["CLAIMSCORE_HOME"] = str(settings.home)
    os.environ["CLAIMSCORE_WORKERS"] = str(workers)
    if config:
        os.environ["CLAIMSCORE_CONFIG"] = str(Path(config).resolve())
    typer.echo(f"serving on http://{host}:{port} (API description at /, keys: claimscore keys create)", err=True)
    os.execv(bentoml, [bentoml, "serve", "serving.service:ClaimScore", "--host", host, "--port", str(port)])


def _features_on_dask(data: str | None, source: str, out: Path, workers: int) -> int:
    """Features for a canonical Parquet file on a loopback LocalCluster (for data beyond one machine)."""
    if source != "synthetic" or not data or not data.endswith(".parquet") or out.suffix != ".parquet":
        raise typer.BadParameter("Dask needs canonical Parquet in (--source synthetic --data FILE.parquet) "
                                 "and a .parquet folder out", param_hint="--dask-workers")
    if not Path(data).exists():
        raise DataFileError(f"{data}: no such file")
    import dask.dataframe as dd

    from features.build import available_features
    from features.distributed import build_features_dask, local_cluster
    from features.schema import conform

    with local_cluster(n_workers=workers) as _client, _Stages(2, f"building features on {workers} workers") as bar:
        claims = dd.read_parquet(data)
        sample = conform(claims.head(50_000, npartitions=-1))  # which features the data supports
        table = build_features_dask(claims, available_features(sample))
        table.to_parquet(str(out), write_index=True, overwrite=True)
        bar.advance("counting")
        n = int(table.shape[0].compute())
        bar.advance("done")
    return n


def _check_output(path: Path) -> None:
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise typer.BadParameter(f"'{path}' must end in .parquet or .csv", param_hint="--out")
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)


def _write_table(frame, path: Path) -> None:
    try:
        if path.suffix.lower() == ".csv":
            frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
        else:
            frame.to_parquet(path, index=False)
    except OSError as exc:
        raise DataFileError(f"cannot write {path}: {exc.strerror or exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning every user error into one line on stderr and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="claimscore", standalone_mode=False)
        return 0
    except ValidationFailed as exc:
        for line in exc.lines:
            typer.echo(f"  {line}", err=True)
        typer.echo(f"error: {exc}; report: {exc.report_path}", err=True)
        return exc.exit_code
    except ClaimScoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 130
    except click_exc.NoArgsIsHelpError as exc:
        typer.echo(exc.format_message())
        return 0
    except click_exc.ClickException as exc:
        hint = f" (see 'claimscore {exc.ctx.command.name} --help')" if getattr(exc, "ctx", None) and exc.ctx.command.name != "claimscore" else ""
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        return 130
    except Exception as exc:  # a bug, not a user error: still one line unless debugging
        if os.environ.get("CLAIMSCORE_DEBUG"):
            raise
        typer.echo(f"internal error: {type(exc).__name__}: {exc} (set CLAIMSCORE_DEBUG=1 for the traceback)",
                   err=True)
        return 70


if __name__ == "__main__":
    sys.exit(main())

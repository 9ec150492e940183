"""What every ``claimscore`` command shares: option types, settings, progress, writing a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.errors import DataFileError

SOURCE_HELP = (
    "Where the claims come from: synthetic (canonical Parquet/CSV), vehicle_fraud, "
    "aus_bodily_injury, history (the claim history store with the outcomes recorded since; "
    "no --data needed), or mapping:FILE.yaml for your own table."
)
SourceOpt = Annotated[str, typer.Option("--source", "-s", help=SOURCE_HELP)]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Config file (TOML); default ./claimscore.toml or $CLAIMSCORE_CONFIG.")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output file: .parquet or .csv.")]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        "-d",
        help="Claims file (or a SQLAlchemy URL for SQL mappings). The built-in real sources default to "
        "../shared/data; --source history reads history_url, or another store's SQLAlchemy URL given here.",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="ADDRESS",
        help="As --dask-workers, on the running Dask cluster whose scheduler is at ADDRESS (tcp://HOST:PORT) "
        "instead of a local one; its workers must read --data (and write --out) at the same paths.",
    ),
]


def dask_workers_option(what: str) -> typer.models.OptionInfo:
    """``--dask-workers N``: ``what`` the command does on a local Dask cluster of N worker processes."""
    return typer.Option("--dask-workers", min=1, help=f"{what} (a local Dask cluster on 127.0.0.1).")


def one_cluster(workers: int | None, scheduler: str | None) -> bool:
    """Whether the command runs on Dask; refuses both ``--dask-workers`` and ``--scheduler``."""
    if workers is not None and scheduler is not None:
        raise typer.BadParameter("give --dask-workers or --scheduler, not both", param_hint="--scheduler")
    return workers is not None or scheduler is not None


TrainingConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--training-config",
        help="YAML overriding training defaults: split, LightGBM, routing constraints, "
        "promotion metric and margin (training/config.py).",
    ),
]


def area(help_text: str) -> typer.Typer:
    """A Typer app for one area's commands (mounted by :mod:`pipelines.cli`)."""
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )


def settings(config: Path | None):
    from features.config import load_settings

    return load_settings(config).ensure_dirs()


def console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


class Stages:
    """A rich progress bar over the named stages of a long command (shown on a terminal only)."""

    def __init__(self, total: int, description: str):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        out = console()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=out,
            transient=True,
            disable=not out.is_terminal,
        )
        self._task = self._progress.add_task(description, total=total)

    def __enter__(self) -> Stages:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def advance(self, description: str) -> None:
        self._progress.update(self._task, advance=1, description=description)


def check_output(path: Path) -> None:
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise typer.BadParameter(f"'{path}' must end in .parquet or .csv", param_hint="--out")
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)


def write_table(frame, path: Path) -> None:
    try:
        if path.suffix.lower() == ".csv":
            frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
        else:
            frame.to_parquet(path, index=False)
    except OSError as exc:
        raise DataFileError(f"cannot write {path}: {exc.strerror or exc}") from None

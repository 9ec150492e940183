"""``claimscore history``: fill the claim history store that the service reads for live claims.

Mounted by :mod:`pipelines.cli` (``app.add_typer(history_app, name="history")``), whose ``main``
turns a :class:`~features.errors.ClaimScoreError` into one readable line and an exit code. Heavy
libraries are imported inside the command so that ``--help`` answers at once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

history_app = typer.Typer(
    name="history",
    help="The claim history store the service reads for live claims and appends to after scoring.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@history_app.callback()
def _group() -> None:
    # a callback keeps `history` a group of commands (Typer would collapse a lone command into the app)
    pass


@history_app.command("load")
def load(
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Claims file (or SQLAlchemy URL for SQL mappings). Built-in real sources default to ../shared/data.")] = None,
    source: Annotated[str, typer.Option("--source", "-s", help="Where the claims come from: synthetic (canonical Parquet/CSV), vehicle_fraud, aus_bodily_injury, or mapping:FILE.yaml.")] = "synthetic",
    url: Annotated[Optional[str], typer.Option("--url", help="SQLAlchemy URL of the history store; default: history_url from the configuration (a SQLite file in the state directory).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Config file (TOML); default ./claimscore.toml or $CLAIMSCORE_CONFIG.")] = None,
) -> None:
    """Load claims from a table into the history store (a stored claim_id is replaced)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from features.config import load_settings
    from features.history_store import HistoryStore
    from features.sources import load_claims

    settings = load_settings(config).ensure_dirs()
    t0 = time.perf_counter()
    loaded = load_claims(data, source, settings)
    store = HistoryStore(url or settings.history_url)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True, highlight=False), transient=True)
    with progress:
        task = progress.add_task(f"loading into {store.shown}", total=len(loaded.frame))
        written = store.load(loaded.frame, progress=lambda done: progress.update(task, completed=done))
    elapsed = time.perf_counter() - t0
    for reason, count in loaded.excluded:
        typer.echo(f"excluded {count:,} row(s): {reason}")
    unreadable = sum(count for _, count in loaded.type_problems)
    if unreadable:
        typer.echo(f"note: {unreadable:,} value(s) unreadable as their type were stored as null "
                   "(claimscore validate lists them)")
    typer.echo(f"loaded {written:,} claims into {store.shown} (table {store.table.name}) in {elapsed:.1f} s; "
               f"it now holds {len(store):,} claims")
    store.close()

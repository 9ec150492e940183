"""``claimscore history``: fill the claim history store that the service reads for live claims."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from pipelines.cli.common import ConfigOpt, DataOpt, SourceOpt, area, console, settings

app = area("The claim history store the service reads for live claims and appends to after scoring.")


@app.callback()
def _group() -> None:
    # a callback keeps `history` a group of commands (Typer would collapse a lone command into the app)
    pass


@app.command("load")
def load(
    data: DataOpt = None,
    source: SourceOpt = "synthetic",
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="SQLAlchemy URL of the history store; default: "
            "history_url from the configuration (a SQLite file "
            "in the state directory).",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Load claims from a table into the history store (a stored claim_id is replaced)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from features.data.sources import load_claims
    from features.store.history import HistoryStore

    state = settings(config)
    t0 = time.perf_counter()
    loaded = load_claims(data, source, state)
    store = HistoryStore(url or state.history_url)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(),
        transient=True,
    )
    with progress:
        task = progress.add_task(f"loading into {store.shown}", total=len(loaded.frame))
        written = store.load(loaded.frame, progress=lambda done: progress.update(task, completed=done))
    elapsed = time.perf_counter() - t0
    for reason, count in loaded.excluded:
        typer.echo(f"excluded {count:,} row(s): {reason}")
    unreadable = sum(count for _, count in loaded.type_problems)
    if unreadable:
        typer.echo(
            f"note: {unreadable:,} value(s) unreadable as their type were stored as null "
            "(claimscore validate lists them)"
        )
    typer.echo(
        f"loaded {written:,} claims into {store.shown} (table {store.table.name}) in {elapsed:.1f} s; "
        f"it now holds {len(store):,} claims"
    )
    store.close()

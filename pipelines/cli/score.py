"""``claimscore score``: batch scoring with the champion models, in this process or on Dask."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipelines.cli.common import (
    ConfigOpt,
    DataOpt,
    OutOpt,
    SchedulerOpt,
    SourceOpt,
    Stages,
    area,
    check_output,
    dask_workers_option,
    one_cluster,
    settings,
    write_table,
)

if TYPE_CHECKING:
    import pandas as pd

    from features.config import Settings
    from serving.model.scorer import Scorer

app = area("Batch scoring.")

AllowMissingOpt = Annotated[
    str,
    typer.Option(
        "--allow-missing",
        metavar="COLUMN[,COLUMN]",
        help="Score even though the claims lack these columns the champion uses: the features computed "
        "from them are unknown for every claim (said in the output). Without it, a missing column is an error.",
    ),
]
DaskWorkersOpt = Annotated[
    int | None,
    dask_workers_option(
        "Score on this many worker processes: canonical claims (--source synthetic) in a Parquet file or "
        "folder, partition by partition, written as a Parquet folder (--out NAME.parquet); the same scores, "
        "routes and reasons as in one process"
    ),
]


@app.command()
def score(
    out: OutOpt,
    data: DataOpt = None,
    source: SourceOpt = "synthetic",
    config: ConfigOpt = None,
    allow_missing: AllowMissingOpt = "",
    dask_workers: DaskWorkersOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Score a table with the champion models: scores, route, rules fired and top reasons per claim.

    New claims need no outcome or label columns. Every column the champion's features are computed
    from must be there (exit 2 naming the missing ones) unless --allow-missing names it.

    With --dask-workers N (or --scheduler ADDRESS) the claims are scored partition by partition on
    Dask, into a Parquet folder: the same rows, value for value, grouped by claim_id hash rather
    than in the input's order."""
    state = settings(config)
    check_output(out)
    allow = [c.strip() for c in allow_missing.split(",") if c.strip()]
    t0 = time.perf_counter()
    if dask_workers is not None or scheduler is not None:
        scorer, routes, unknown = _score_on_dask(data, source, out, state, allow, dask_workers, scheduler)
        cluster = f"{dask_workers} Dask workers" if scheduler is None else f"the Dask cluster at {scheduler}"
        where = f"{out}/ on {cluster}"
    else:
        scorer, routes, unknown = _score_in_process(data, source, out, state, allow)
        where = str(out)
    if unknown:
        typer.echo(
            "scored without "
            + "; ".join(f"{c.replace('|', ' or ')} (unknown: {', '.join(f)})" for c, f in unknown.items())
            + " (--allow-missing)"
        )
    _summary(scorer, routes, where, time.perf_counter() - t0)


def _score_in_process(data: str | None, source: str, out: Path, state: Settings, allow: list[str]):
    from features.build import provided_columns
    from features.data.sources import load_claims
    from serving.model.scorer import Scorer

    with Stages(3, "loading the champion models") as bar:
        scorer = Scorer.from_registry(state)
        bar.advance("reading claims")
        loaded = load_claims(data, source, state, purpose="score")
        unknown = _check_inputs(scorer, provided_columns(loaded.frame), allow)
        bar.advance(f"scoring {len(loaded.frame):,} claims")
        table = scorer.score_table(loaded.frame, loaded.extras)
        write_table(table, out)
    return scorer, table["route"].value_counts(), unknown


def _score_on_dask(
    data: str | None,
    source: str,
    out: Path,
    state: Settings,
    allow: list[str],
    workers: int | None,
    scheduler: str | None,
):
    """Read, check and score partition by partition on Dask (:mod:`pipelines.distributed`); what the
    options say is checked before the models load or a cluster starts."""
    from pipelines.distributed import (
        DASK_SOURCES,
        check_dataset_out,
        check_scheduler,
        columns_with_values,
        dask_client,
        read_claims_dask,
        score_dask,
        write_scored,
    )
    from serving.model.scorer import Scorer

    option = "--scheduler" if scheduler is not None else "--dask-workers"
    one_cluster(workers, scheduler)
    if source not in DASK_SOURCES or not data:
        raise typer.BadParameter(
            "Dask reads canonical claims: --source synthetic --data FILE.parquet (or a folder of them)",
            param_hint=option,
        )
    if out.suffix.lower() != ".parquet":
        raise typer.BadParameter(
            f"'{out}': Dask writes a Parquet folder, give a name ending in .parquet", param_hint="--out"
        )
    check_dataset_out(out)
    claims = read_claims_dask(data, state, source)  # lazy: the file's schema and the mapping are checked now
    if scheduler is not None:
        check_scheduler(scheduler)
    start = f"starting {workers} Dask workers" if scheduler is None else f"connecting to {scheduler}"
    with Stages(4, "loading the champion models") as bar:
        scorer = Scorer.from_registry(state)
        bar.advance(start)
        with dask_client(workers, scheduler):
            bar.advance("checking claims")
            provided, rows = columns_with_values(data, [c for key in scorer.inputs for c in key.split("|")])
            _check_inputs(scorer, provided, allow)  # a column missing or empty: refused before scoring
            bar.advance(f"scoring {rows:,} claims")
            scored = score_dask(claims.frame, scorer, claims.extras)
            # and refused after (nothing kept) when its values are all unreadable, as in one process
            routes, unknown = write_scored(scored, out, claims.frame, lambda have: _check_inputs(scorer, have, allow))
    return scorer, routes, unknown


def _check_inputs(scorer: Scorer, provided: set[str], allow: list[str]) -> dict[str, list[str]]:
    """:meth:`Scorer.check_inputs`, refusing in one line that says how to score anyway."""
    from features.errors import ClaimScoreError
    from serving.model.scorer import MissingInputs

    try:
        return scorer.check_inputs(provided, allow)
    except MissingInputs as exc:
        raise ClaimScoreError(
            f"{exc}; to score with them unknown: --allow-missing {','.join(c.split('|')[0] for c in exc.missing)}"
        ) from None


def _summary(scorer: Scorer, routes: pd.Series, where: str, seconds: float) -> None:
    """The one line a run ends with: claims, where, time, model versions and the share of each route."""
    from serving.model.routing import ROUTES

    total = int(routes.sum())
    typer.echo(
        f"scored {total:,} claims into {where} in {seconds:.1f} s with "
        + ", ".join(f"{scorer.bundles[t].task} v{v}" for t, v in scorer.versions.items())
        + "; routes: "
        + ", ".join(f"{r} {routes.get(r, 0) / max(total, 1):.1%}" for r in ROUTES)
    )

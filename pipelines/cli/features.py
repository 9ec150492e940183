"""``claimscore features``: point-in-time features for every claim of a table."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from pipelines.cli.common import (
    ConfigOpt,
    DataOpt,
    OutOpt,
    SourceOpt,
    Stages,
    area,
    check_output,
    settings,
    write_table,
)

app = area("Features for a table of claims.")


@app.command()
def features(
    out: OutOpt,
    data: DataOpt = None,
    source: SourceOpt = "synthetic",
    config: ConfigOpt = None,
    dask_workers: Annotated[
        int,
        typer.Option(
            min=0,
            help="Build on a local Dask cluster with this many worker "
            "processes (canonical Parquet input only; writes a "
            "Parquet folder). 0: in-process pandas.",
        ),
    ] = 0,
) -> None:
    """Build point-in-time claim, claimant and link features for every claim of a table."""
    state = settings(config)
    check_output(out)
    t0 = time.perf_counter()
    if dask_workers:
        from pathlib import Path

        from pipelines.distributed import features_to_parquet

        parquet = bool(data) and (data.endswith(".parquet") or Path(data).is_dir())
        if source != "synthetic" or not parquet or out.suffix != ".parquet":
            raise typer.BadParameter(
                "Dask needs canonical Parquet in (--source synthetic --data FILE.parquet or a folder of them) "
                "and a .parquet folder out",
                param_hint="--dask-workers",
            )
        with Stages(1, f"building features on {dask_workers} workers"):
            n = features_to_parquet(data, out, dask_workers, state)
        typer.echo(
            f"wrote features for {n:,} claims to {out}/ on {dask_workers} Dask workers "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        return
    from features.build import available_features, build_features
    from features.data.sources import load_claims
    from features.schema import LABELS

    with Stages(3, "reading claims") as bar:
        loaded = load_claims(data, source, state)
        bar.advance(f"building features for {len(loaded.frame):,} claims")
        wanted = available_features(loaded.frame, loaded.extras)
        table = build_features(loaded.frame, wanted, loaded.extras)
        table = loaded.frame[["claim_id", "report_date", *LABELS.values()]].join(table)
        bar.advance(f"writing {out.name}")
        write_table(table, out)
    typer.echo(f"wrote {len(wanted)} features for {len(table):,} claims to {out} in {time.perf_counter() - t0:.1f} s")

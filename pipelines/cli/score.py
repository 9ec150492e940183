"""``claimscore score``: batch scoring with the champion models."""

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


@app.command()
def score(
    out: OutOpt,
    data: DataOpt = None,
    source: SourceOpt = "synthetic",
    config: ConfigOpt = None,
    allow_missing: AllowMissingOpt = "",
) -> None:
    """Score a table with the champion models: scores, route, rules fired and top reasons per claim.

    New claims need no outcome or label columns. Every column the champion's features are computed
    from must be there (exit 2 naming the missing ones) unless --allow-missing names it."""
    from features.build import provided_columns
    from features.data.sources import load_claims
    from features.errors import ClaimScoreError
    from serving.model.routing import ROUTES
    from serving.model.scorer import MissingInputs, Scorer

    state = settings(config)
    check_output(out)
    t0 = time.perf_counter()
    with Stages(3, "loading the champion models") as bar:
        scorer = Scorer.from_registry(state)
        bar.advance("reading claims")
        loaded = load_claims(data, source, state, purpose="score")
        allow = [c.strip() for c in allow_missing.split(",") if c.strip()]
        try:
            unknown = scorer.check_inputs(provided_columns(loaded.frame), allow)
        except MissingInputs as exc:
            raise ClaimScoreError(
                f"{exc}; to score with them unknown: --allow-missing {','.join(c.split('|')[0] for c in exc.missing)}"
            ) from None
        bar.advance(f"scoring {len(loaded.frame):,} claims")
        table = scorer.score_table(loaded.frame, loaded.extras)
        write_table(table, out)
    routes = table["route"].value_counts(normalize=True)
    if unknown:
        typer.echo(
            "scored without "
            + "; ".join(f"{c.replace('|', ' or ')} (unknown: {', '.join(f)})" for c, f in unknown.items())
            + " (--allow-missing)"
        )
    typer.echo(
        f"scored {len(table):,} claims into {out} in {time.perf_counter() - t0:.1f} s with "
        + ", ".join(f"{scorer.bundles[t].task} v{v}" for t, v in scorer.versions.items())
        + "; routes: "
        + ", ".join(f"{r} {routes.get(r, 0):.1%}" for r in ROUTES)
    )

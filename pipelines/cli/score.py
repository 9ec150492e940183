"""``claimscore score``: batch scoring with the champion models."""

from __future__ import annotations

import time

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


@app.command()
def score(out: OutOpt, data: DataOpt = None, source: SourceOpt = "synthetic", config: ConfigOpt = None) -> None:
    """Score a table with the champion models: scores, route, rules fired and top reasons per claim."""
    from features.data.sources import load_claims
    from serving.model.routing import ROUTES
    from serving.model.scorer import Scorer

    state = settings(config)
    check_output(out)
    t0 = time.perf_counter()
    with Stages(3, "loading the champion models") as bar:
        scorer = Scorer.from_registry(state)
        bar.advance("reading claims")
        loaded = load_claims(data, source, state)
        bar.advance(f"scoring {len(loaded.frame):,} claims")
        table = scorer.score_table(loaded.frame, loaded.extras)
        write_table(table, out)
    routes = table["route"].value_counts(normalize=True)
    typer.echo(
        f"scored {len(table):,} claims into {out} in {time.perf_counter() - t0:.1f} s with "
        + ", ".join(f"{scorer.bundles[t].task} v{v}" for t, v in scorer.versions.items())
        + "; routes: "
        + ", ".join(f"{r} {routes.get(r, 0):.1%}" for r in ROUTES)
    )

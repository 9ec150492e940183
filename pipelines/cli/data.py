"""``claimscore generate`` and ``claimscore validate``: claims in."""

from __future__ import annotations

import time
from pathlib import Path
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

app = area("Claims in: synthetic claims and validation.")


@app.command()
def generate(
    out: OutOpt,
    claims: Annotated[int, typer.Option("--claims", "-n", min=1, help="Number of claims.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same claims.")] = 0,
    start: Annotated[str, typer.Option(help="First report date (YYYY-MM-DD).")] = "2021-01-01",
    years: Annotated[float, typer.Option(min=0.1, help="Years of claims.")] = 4.0,
) -> None:
    """Generate synthetic claims with realistic fraud patterns, in the canonical schema."""
    import numpy as np

    from features.data.synthetic import STAGES, generate_claims

    check_output(out)
    try:
        np.datetime64(start, "D")
    except ValueError:
        raise typer.BadParameter(f"'{start}' is not a date (YYYY-MM-DD)", param_hint="--start") from None
    t0 = time.perf_counter()
    with Stages(len(STAGES) + 1, "generating claims") as bar:
        frame = generate_claims(claims, seed=seed, start=start, years=years, on_stage=bar.advance)
        bar.advance(f"writing {out.name}")
        write_table(frame, out)
    elapsed = time.perf_counter() - t0
    typer.echo(
        f"wrote {len(frame):,} claims to {out} in {elapsed:.1f} s "
        f"({frame['report_date'].min():%Y-%m-%d} to {frame['report_date'].max():%Y-%m-%d}; "
        f"confirmed fraud {frame['fraud_confirmed'].mean():.2%}, "
        f"investigated {frame['investigated'].mean():.2%})"
    )


@app.command()
def validate(
    data: DataOpt = None,
    source: SourceOpt = "synthetic",
    config: ConfigOpt = None,
    new_claims: Annotated[
        bool,
        typer.Option(
            "--new-claims",
            help="The claims are to be scored and have no outcomes yet: outcome and label columns may be "
            "absent (as for claimscore score); the source's notice fields are still required.",
        ),
    ] = False,
) -> None:
    """Check claims against the canonical schema with great-expectations; exit 1 if any check fails.

    Every field the source supplies must be there: a missing one fails, named on its own line."""
    from features.data.sources import load_claims
    from features.data.validation import validate_claims

    state = settings(config)
    with Stages(2, "reading claims") as bar:
        loaded = load_claims(data, source, state, purpose="score" if new_claims else "train")
        bar.advance("checking claims")
        name = Path(data).stem if data and "://" not in data else source.replace(":", "_").replace("/", "_")
        result = validate_claims(
            loaded.frame,
            loaded.type_problems,
            report_dir=state.reports_dir,
            name=name,
            null_rates=loaded.null_rates,
            supplies=loaded.expected,
            absent=loaded.absent,
        )
        bar.advance("done")
    for reason, count in loaded.excluded:
        typer.echo(f"excluded {count:,} row(s): {reason}")
    for reason, count in loaded.adjusted:
        typer.echo(f"adjusted {count:,} row(s): {reason}")
    result.raise_for_failure()
    typer.echo(f"valid: {len(loaded.frame):,} claims passed {len(result.checks)} checks; report: {result.report_path}")

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
    new_claims: Annotated[
        int,
        typer.Option(
            "--new-claims",
            min=0,
            help="Also make this many later claims of the same claimants, providers and rings (the "
            "population goes on for as long again as they take), written to --new-out: new claims to score.",
        ),
    ] = 0,
    new_out: Annotated[Path | None, typer.Option("--new-out", help="Where --new-claims go (.parquet or .csv).")] = None,
) -> None:
    """Generate synthetic claims with realistic fraud patterns, in the canonical schema.

    New claims for scoring come from the same population with ``--new-claims N --new-out FILE``: a
    second seed would give other people whose identifiers collide with the first run's."""
    import numpy as np

    from features.data.synthetic import STAGES, generate_claims

    check_output(out)
    try:
        np.datetime64(start, "D")
    except ValueError:
        raise typer.BadParameter(f"'{start}' is not a date (YYYY-MM-DD)", param_hint="--start") from None
    if bool(new_claims) != (new_out is not None):
        raise typer.BadParameter("--new-claims and --new-out go together", param_hint="--new-out")
    if new_out is not None:
        check_output(new_out)
    t0 = time.perf_counter()
    with Stages(len(STAGES) + 1, "generating claims") as bar:
        total_years = years * (claims + new_claims) / claims
        frame = generate_claims(claims + new_claims, seed=seed, start=start, years=total_years, on_stage=bar.advance)
        bar.advance(f"writing {out.name}")
        if new_claims:
            frame = frame.sort_values("report_date", kind="stable", ignore_index=True)
            write_table(frame.iloc[claims:], new_out)
            frame = frame.iloc[:claims]
        write_table(frame, out)
    elapsed = time.perf_counter() - t0
    typer.echo(
        f"wrote {len(frame):,} claims to {out} in {elapsed:.1f} s "
        f"({frame['report_date'].min():%Y-%m-%d} to {frame['report_date'].max():%Y-%m-%d}; "
        f"confirmed fraud {frame['fraud_confirmed'].mean():.2%}, "
        f"investigated {frame['investigated'].mean():.2%})"
    )
    if new_claims:
        typer.echo(f"kept the {new_claims:,} latest claims of the same population aside in {new_out}")


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

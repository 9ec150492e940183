"""The ``claimscore`` command: one Typer app, one short module per area.

Each command is a thin edge: it parses options, calls the stage that does the work, and :func:`main`
turns a :class:`~features.errors.ClaimScoreError` into one readable line and an exit code. Heavy
libraries are imported inside the commands so that ``claimscore --help`` answers at once.

| area | commands | module |
|---|---|---|
| claims in | generate, validate | :mod:`pipelines.cli.data` |
| features | features | :mod:`pipelines.cli.features` |
| training | train, promote | :mod:`pipelines.cli.train` |
| scoring | score, serve | :mod:`pipelines.cli.score`, :mod:`pipelines.cli.serve` |
| monitoring | monitor, backtest, evaluate | :mod:`pipelines.cli.monitor` |
| keys, history | keys ..., history ... | :mod:`pipelines.cli.keys`, :mod:`pipelines.cli.history` |
| cases | audit, cases ... | :mod:`pipelines.cli.cases` |
"""

from __future__ import annotations

import os
import sys

import typer
from typer._click import exceptions as click_exc  # typer 0.29 vendors click

from features.errors import ClaimScoreError, ValidationFailed
from pipelines.cli import cases, data, features, history, keys, monitor, score, serve, train

app = typer.Typer(
    name="claimscore",
    help="Fraud and triage scoring for insurance claims.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
for _area in (data, features, train, score, monitor, serve, cases):  # their commands sit at the top level
    app.registered_commands.extend(_area.app.registered_commands)
app.add_typer(keys.app, name="keys")
app.add_typer(history.app, name="history")
app.add_typer(cases.cases_app, name="cases")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning every user error into one line on stderr and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="claimscore", standalone_mode=False)
        return code if isinstance(code, int) else 0  # typer.Exit(n) inside a command comes back as n
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
        hint = (
            f" (see 'claimscore {exc.ctx.command.name} --help')"
            if getattr(exc, "ctx", None) and exc.ctx.command.name != "claimscore"
            else ""
        )
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        return 130
    except Exception as exc:  # a bug, not a user error: still one line unless debugging
        if os.environ.get("CLAIMSCORE_DEBUG"):
            raise
        typer.echo(f"internal error: {type(exc).__name__}: {exc} (set CLAIMSCORE_DEBUG=1 for the traceback)", err=True)
        return 70


if __name__ == "__main__":
    sys.exit(main())

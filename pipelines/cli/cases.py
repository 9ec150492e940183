"""``claimscore audit`` and ``claimscore cases``: the investigators' case store from the command line.

``app`` holds the top-level ``audit`` command; ``cases_app`` the ``cases`` group (``cases list``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.cli.common import ConfigOpt, area, settings

app = area("A claim's audit trail.")
cases_app = area("The investigators' cases: one per claim referred to the SIU or a specialist.")

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="SQLAlchemy URL of the case store; default: cases_url from the configuration."),
]


def _store(url: str | None, config):
    from serving.cases import CaseStore

    return CaseStore(url or settings(config).cases_url)


@app.command("audit")
def audit(
    claim: Annotated[str, typer.Option("--claim", help="The claim id whose trail to print.")],
    url: UrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print a claim's audit trail, oldest first: time, who, action, field: previous -> new."""
    store = _store(url, config)
    try:
        for event in store.trail(claim):
            typer.echo(event.line())
    finally:
        store.close()


@cases_app.callback()
def _group() -> None:
    # a callback keeps `cases` a group of commands (Typer would collapse a lone command into the app)
    pass


@cases_app.command("list")
def list_cases(
    status: Annotated[
        list[str] | None, typer.Option("--status", help="open, in_review, closed or reopened (repeatable).")
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="siu_referral or specialist.")] = None,
    assignee: Annotated[str | None, typer.Option("--assignee", help="Only this investigator's cases.")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only cases past their due date.")] = False,
    sort: Annotated[
        str, typer.Option("--sort", help="score, age, due, status, assignee, region or amount; -KEY descending.")
    ] = "-score",
    limit: Annotated[int, typer.Option("--limit", help="Cases to show.")] = 50,
    url: UrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List cases, highest score first by default, overdue ones marked with '!'."""
    store = _store(url, config)
    try:
        page = store.list_cases(
            status=status or None,
            queue=queue,
            assignee=assignee,
            overdue=True if overdue else None,
            sort=sort,
            limit=limit,
        )
    finally:
        store.close()
    for c in page.cases:
        score = "-" if c.priority is None else f"{c.priority:.3f}"
        typer.echo(
            f"{'!' if c.overdue else ' '} {c.claim_id:<16} {c.queue:<13} {c.status:<10} {score:>6}  "
            f"due {c.due_at:%Y-%m-%d}  {c.assignee or '-':<12} {c.disposition or ''}".rstrip()
        )
    typer.echo(f"{len(page.cases)} of {page.total} case(s)", err=True)

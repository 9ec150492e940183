"""A monitoring run end to end: the champion and its reference from the registry, a window from the
decision log (joined to the history store and the case store) or from a table of claims, every
section (:func:`monitoring.monitor.monitor`), then ``report.html`` and ``summary.json`` in the run's
folder and a copy in ``<reports>/monitoring/latest/``, which the service's gauges and the
workbench's monitoring page read.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from features.config import Settings
from features.errors import ClaimScoreError
from monitoring.config import MonitorConfig
from monitoring.monitor import REPORT_FILE, SUMMARY_FILE, Summary, monitor
from monitoring.reference import Reference
from monitoring.report import write_report
from monitoring.window import Window, from_decisions, from_table


class MonitoringError(ClaimScoreError):
    """Nothing to monitor, or nothing to compare it with."""


def latest_dir(settings: Settings) -> Path:
    """Where the latest run's report and summary are kept (the service reads them)."""
    return settings.reports_dir / "monitoring" / "latest"


def run_monitoring(
    settings: Settings,
    cfg: MonitorConfig,
    *,
    out: Path | None = None,
    window: tuple[datetime | None, datetime | None] | None = None,
    data: str | None = None,
    source: str = "synthetic",
) -> tuple[Summary, Path]:
    """Monitor the champion over a window of the decision log (``window``: since, until) or a table
    (``data``, ``source``); write the report and summary to ``out`` and to :func:`latest_dir`."""
    from serving.model.scorer import Scorer

    scorer = Scorer.from_registry(settings)
    reference = champion_reference(scorer)
    since, until = window or (None, None)
    if data is not None:
        win = table_window(scorer, data, source, settings, since, until)
    else:
        win = log_window(scorer, settings, since, until)
    if not len(win):
        raise MonitoringError(f"no claims to monitor in {_describe(win, window, data)}")
    win.description.update(
        {"models": ", ".join(f"{t} v{v}" for t, v in scorer.versions.items()), "policy": str(scorer.policy.version)}
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(out) if out is not None else settings.reports_dir / "monitoring" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    summary = monitor(win, reference, cfg, folder)
    summary.save(folder)
    write_report(summary, win, reference, folder)
    latest = latest_dir(settings)
    latest.mkdir(parents=True, exist_ok=True)
    for name in (REPORT_FILE, SUMMARY_FILE):  # the report first: the summary's arrival says both are there
        shutil.copyfile(folder / name, latest / f".{name}")
        (latest / f".{name}").replace(latest / name)
    return summary, folder


def champion_reference(scorer) -> Reference:
    for bundle in scorer.bundles.values():
        if bundle.reference:
            return Reference.from_dict(bundle.reference)
    raise MonitoringError(
        "the champion was trained before monitoring references were recorded: retrain (claimscore train) and promote it"
    )


def table_window(
    scorer, data: str, source: str, settings: Settings, since: datetime | None, until: datetime | None
) -> Window:
    """The table's claims reported in ``[since, until)``, the rest of the table as their history."""
    from features.data.sources import load_claims

    loaded = load_claims(data, source, settings)
    win = from_table(loaded.frame, scorer, loaded.extras, _naive(since), _naive(until))
    win.description["source"] = f"{source} table {Path(data).name}"
    win.description["period"] = f"reported {_day(since) or 'from the start'} to {_day(until) or 'the end'}"
    return win


def _naive(t: datetime | None) -> pd.Timestamp | None:
    return None if t is None else pd.Timestamp(t).tz_convert(None)


def log_window(scorer, settings: Settings, since: datetime | None, until: datetime | None) -> Window:
    from features.store.history import HistoryStore
    from serving.cases import CaseStore
    from serving.decision_log import DecisionLog

    log = DecisionLog(settings.decision_log_url)
    try:
        decisions = log.read_window(since, until)
    finally:
        log.close()
    ids = {str(d["claim_id"]) for d in decisions}
    store = HistoryStore(settings.history_url)
    try:
        claims = store.claims_for(ids)
    finally:
        store.close()
    cases = None
    if Path(settings.cases_url.removeprefix("sqlite:///")).exists() or not settings.cases_url.startswith("sqlite"):
        store_cases = CaseStore(settings.cases_url)
        try:
            cases = pd.DataFrame(
                [c.__dict__ for c in store_cases.cases_for(ids)],
                columns=["claim_id", "queue", "status", "opened_at", "due_at", "closed_at", "disposition", "overdue"],
            )
        finally:
            store_cases.close()
        for column in ("opened_at", "due_at", "closed_at"):
            cases[column] = pd.to_datetime(cases[column], utc=True).dt.tz_localize(None)
    as_of = until or datetime.now(UTC)
    win = from_decisions(decisions, claims, scorer.policy, pd.Timestamp(as_of).tz_convert(None), cases)
    win.description["source"] = "decision log"
    win.description["period"] = f"{_day(since) or 'the start'} to {_day(until) or 'now'}"
    return win


def _day(t: datetime | None) -> str | None:
    return None if t is None else f"{t:%Y-%m-%d %H:%M}"


def _describe(win: Window, window, data) -> str:
    since, until = window or (None, None)
    if data is not None:
        return f"table {data} reported from {_day(since) or 'its start'} to {_day(until) or 'its end'}"
    return f"the decision log from {_day(since) or 'its start'} to {_day(until) or 'now'}"

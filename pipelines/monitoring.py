"""A monitoring run end to end: the champion and its reference from the registry, a window from the
decision log (joined to the history store and the case store) or from a table of claims, every
section (:func:`monitoring.monitor.monitor`), then ``report.html`` and ``summary.json`` in the run's
folder and a copy in ``<reports>/monitoring/latest/``, which the service's gauges and the
workbench's monitoring page read.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.config import Settings
from features.data.sources import HISTORY_SOURCE
from features.errors import ClaimScoreError
from monitoring.config import MonitorConfig
from monitoring.monitor import REPORT_FILE, SUMMARY_FILE, Summary, monitor
from monitoring.reference import Reference
from monitoring.report import write_report
from monitoring.window import Window, from_decisions, from_table

if TYPE_CHECKING:
    from distributed import Client


class MonitoringError(ClaimScoreError):
    """Nothing to monitor, or nothing to compare it with."""


def latest_dir(settings: Settings) -> Path:
    """Where the latest run's report and summary are kept (the service reads them)."""
    return settings.monitoring_latest_dir


def run_monitoring(
    settings: Settings,
    cfg: MonitorConfig,
    *,
    out: Path | None = None,
    window: tuple[datetime | None, datetime | None] | None = None,
    data: str | None = None,
    source: str = "synthetic",
    on_stage: Callable[[str], None] = lambda _: None,
    client: Client | None = None,
) -> tuple[Summary, Path]:
    """Monitor the champion over a window of the decision log (``window``: since, until) or a table
    (``data``, ``source``); write the report and summary to ``out`` and to :func:`latest_dir`.
    With a Dask ``client``, the table's window is made on its cluster
    (:func:`~pipelines.distributed_monitoring.dask_table_window`): the same figures, for a table
    larger than this process's memory."""
    from serving.model.scorer import Scorer

    scorer = Scorer.from_registry(settings)
    reference = champion_reference(scorer)
    on_stage("champion")
    since, until = window or (None, None)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(out) if out is not None else settings.reports_dir / "monitoring" / stamp
    new_folder = not folder.exists()
    try:
        if client is not None:
            win = dask_window(scorer, reference, data, source, settings, folder, since, until)
        elif data is not None or source == HISTORY_SOURCE:  # a table: a file, or the history store itself
            win = table_window(scorer, data, source, settings, since, until)
        else:
            win = log_window(scorer, settings, since, until)
        if not len(win):
            raise MonitoringError(f"no claims to monitor in {_describe(win, window, data)}")
        win.description.update(
            {"models": ", ".join(f"{t} v{v}" for t, v in scorer.versions.items()), "policy": str(scorer.policy.version)}
        )
        on_stage("window")
        folder.mkdir(parents=True, exist_ok=True)
        summary = monitor(win, reference, cfg, folder, on_stage)
        summary.save(folder)
        write_report(summary, win, reference, folder)
        on_stage("report")
    except BaseException:
        if new_folder:  # a run that failed leaves no folder of its own behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        if client is not None:
            from pipelines.distributed_monitoring import remove_window

            remove_window(folder)
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
    name = f"{source} table {Path(data).name}" if data else "the claim history store"
    return _described(win, name, since, until)


def dask_window(
    scorer, reference: Reference, data: str | None, source: str, settings: Settings, folder: Path, since, until
) -> Window:
    """A table's window made on Dask (the caller's client): a Parquet file or folder of claims."""
    from pipelines.distributed_monitoring import dask_table_window

    if data is None:
        raise MonitoringError(
            "monitoring on Dask reads a table of claims: give --data (a Parquet file or folder); "
            "the decision log is monitored in one process"
        )
    # the source is checked where the table is read (read_claims_dask: the sources Dask reads)
    win = dask_table_window(data, source, scorer, reference, settings, folder, _naive(since), _naive(until))
    return _described(win, f"{source} table {Path(data).name} (on Dask)", since, until)


def _described(win: Window, source: str, since: datetime | None, until: datetime | None) -> Window:
    """A table's window described for the report: what was read, and the report dates it covers."""
    win.description["source"] = source
    win.description["period"] = f"reported {_day(since) or 'from the start'} to {_day(until) or 'the end'}"
    return win


def _naive(t: datetime | None) -> pd.Timestamp | None:
    return None if t is None else pd.Timestamp(t).tz_convert(None)


def log_window(scorer, settings: Settings, since: datetime | None, until: datetime | None) -> Window:
    """The decision log's window joined to the history store's claims and the case store's cases.
    The window's claims are read in another process (making a million claims' Python values is
    the slowest part of a run, and one process is bound to one core) while this one reads and
    parses the decisions; the cases are read in another thread."""
    from serving.decision_log import DecisionLog

    as_of = pd.Timestamp(until or datetime.now(UTC)).tz_convert(None)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as procs, ThreadPoolExecutor(1) as threads:
        claims = procs.submit(_claims_of, settings, since, until)
        log = DecisionLog(settings.decision_log_url)
        try:
            decisions = log.read_window(since, until)
        finally:
            log.close()
        cases = threads.submit(_cases_of, settings, set(map(str, decisions["claim_id"])))
        win = from_decisions(decisions, claims, scorer.policy, as_of, cases)
    win.description["source"] = "decision log"
    win.description["period"] = f"{_day(since) or 'the start'} to {_day(until) or 'now'}"
    return win


def _claims_of(settings: Settings, since: datetime | None, until: datetime | None) -> pd.DataFrame:
    """The history store's claims decided in the window (run in a process of its own)."""
    from features.store.history import HistoryStore
    from serving.decision_log import DecisionLog

    log = DecisionLog(settings.decision_log_url)
    try:
        ids = log.claim_ids(since, until)
    finally:
        log.close()
    store = HistoryStore(settings.history_url)
    try:
        return store.claims_for(ids)
    finally:
        store.close()


def _cases_of(settings: Settings, ids: set[str]) -> pd.DataFrame | None:
    """The claims' cases (None where no case store exists: a service that never opened one)."""
    from serving.cases import CaseStore

    if settings.cases_url.startswith("sqlite") and not Path(settings.cases_url.removeprefix("sqlite:///")).exists():
        return None
    store = CaseStore(settings.cases_url)
    try:
        found = [dataclasses.asdict(c) for c in store.cases_for(ids)]
    finally:
        store.close()
    cases = pd.DataFrame(found, columns=list(CASE_COLUMNS))
    for column in ("opened_at", "due_at", "closed_at"):
        cases[column] = pd.to_datetime(cases[column], utc=True).dt.tz_localize(None)
    return cases


CASE_COLUMNS = ("claim_id", "queue", "status", "opened_at", "due_at", "closed_at", "disposition", "overdue")


def _day(t: datetime | None) -> str | None:
    return None if t is None else f"{t:%Y-%m-%d %H:%M}"


def _describe(win: Window, window, data) -> str:
    since, until = window or (None, None)
    if data is not None:
        return f"table {data} reported from {_day(since) or 'its start'} to {_day(until) or 'its end'}"
    return f"the decision log from {_day(since) or 'its start'} to {_day(until) or 'now'}"

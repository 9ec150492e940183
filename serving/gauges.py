"""The latest monitoring run as Prometheus gauges on the service's ``/metrics``.

``claimscore monitor`` copies each run's ``summary.json`` and ``report.html`` into
``<reports>/monitoring/latest/`` (:func:`latest_dir`). Every worker of the service runs one daemon
thread (:func:`start`) that looks at the summary's modification time every :data:`RECHECK_S`
seconds and, when it changed, reads it and sets the gauges: a new run shows on ``/metrics`` within
a few seconds, without a restart. A summary that cannot be read (missing, half-written, not JSON,
not an object) changes nothing: the gauges keep the last good run's values, one warning line is
logged per bad version of the file, and ``claimscore_monitor_summary_readable`` says 0.

The service's workers share ``/metrics`` through prometheus_client's multiprocess files. Each
worker reads the same summary, so the gauges use ``multiprocess_mode="mostrecent"``: one series per
label set (no ``pid`` label), with the value the last worker wrote. A series that the latest run no
longer has (a feature the new champion dropped, a group that left the window) is set to NaN:
prometheus_client cannot remove a series in multiprocess mode, and NaN never satisfies a comparison.
Before any run, the gauges without labels read 0 (so the stale-run rule below fires).

Metrics (all gauges; the run's values, not rates):

- ``claimscore_monitor_last_run_timestamp_seconds``: when the run was made (``generated_at``).
- ``claimscore_monitor_summary_readable``: 1 when the latest summary was read, 0 when it could not be.
- ``claimscore_monitor_window_claims``: claims in the run's window.
- ``claimscore_monitor_alerts{section}``: alerts per section (``drift``, ``quality``, ``performance``,
  ``fairness``, ``kpis``; 0 when none).
- ``claimscore_monitor_drift{feature,kind,method}``: a feature's drift statistic (the method's
  distance, or its test's p-value), and ``claimscore_monitor_drifted{feature}``: 1 if it drifted.
- ``claimscore_monitor_drifted_share``: share of features that drifted.
- ``claimscore_monitor_multivariate_error``: the window's reconstruction error (multivariate drift).
- ``claimscore_monitor_score_drift{model}`` and ``claimscore_monitor_score_drifted{model}``: the same
  for each model's scores.
- ``claimscore_monitor_route_share{route}``: a route's share of the window's claims.
- ``claimscore_monitor_performance{model,metric,basis}``: ``basis`` is ``estimated`` (from the
  calibrated scores), ``measured`` (from the labels so far) or ``test`` (the champion's test set).
- ``claimscore_monitor_label_maturity{model}``: share of the window's claims with a label yet;
  ``claimscore_monitor_labelled_claims{model}``: how many.
- ``claimscore_monitor_fairness_ratio{attribute,group,metric}``: a group's rate over the most
  favoured group's (the four-fifths rule alerts below 0.8).
- ``claimscore_monitor_kpi{kpi}``: every number among the run's overall KPIs (nested keys joined
  with ``.``, e.g. ``fast_track_rate``).

An Alertmanager rule (Prometheus rule file) for any alert of the latest run, and for a stale run::

    groups:
      - name: claimscore-monitoring
        rules:
          - alert: ClaimScoreMonitoringAlert
            expr: max by (section) (claimscore_monitor_alerts) > 0
            labels: {severity: warning}
            annotations:
              summary: "{{ $value }} {{ $labels.section }} alert(s) in the latest monitoring run"
          - alert: ClaimScoreMonitoringStale
            expr: time() - max(claimscore_monitor_last_run_timestamp_seconds) > 2 * 86400
            labels: {severity: warning}
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from features.config import MONITORING_REPORT_FILE, MONITORING_SUMMARY_FILE, Settings

log = logging.getLogger(__name__)

SUMMARY_FILE, REPORT_FILE = MONITORING_SUMMARY_FILE, MONITORING_REPORT_FILE
"""The latest run's files, as ``claimscore monitor`` names them (``monitoring.monitor``; a test
checks the two agree: the service does not import the monitoring stage)."""
RECHECK_S = 5.0
"""How often each worker looks at the summary's modification time."""
SECTIONS = ("drift", "quality", "performance", "fairness", "kpis")
"""Alert sections always exported (0 when a run has none)."""
MODE = "mostrecent"

Series = dict[str, dict[tuple[str, ...], float]]
"""Metric name -> label values (in the order of :data:`METRICS`' label names) -> value."""

METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "claimscore_monitor_last_run_timestamp_seconds": ("When the latest monitoring run was made", ()),
    "claimscore_monitor_summary_readable": ("1 when the latest monitoring summary could be read", ()),
    "claimscore_monitor_window_claims": ("Claims in the latest monitoring run's window", ()),
    "claimscore_monitor_alerts": ("Alerts in the latest monitoring run, by section", ("section",)),
    "claimscore_monitor_drift": ("A feature's drift statistic", ("feature", "kind", "method")),
    "claimscore_monitor_drifted": ("1 if a feature drifted", ("feature",)),
    "claimscore_monitor_drifted_share": ("Share of features that drifted", ()),
    "claimscore_monitor_multivariate_error": ("Reconstruction error of the window (multivariate drift)", ()),
    "claimscore_monitor_score_drift": ("A model's score drift statistic", ("model",)),
    "claimscore_monitor_score_drifted": ("1 if a model's scores drifted", ("model",)),
    "claimscore_monitor_route_share": ("A route's share of the window's claims", ("route",)),
    "claimscore_monitor_performance": ("A model's performance metric", ("model", "metric", "basis")),
    "claimscore_monitor_label_maturity": ("Share of the window's claims labelled so far", ("model",)),
    "claimscore_monitor_labelled_claims": ("Claims of the window labelled so far", ("model",)),
    "claimscore_monitor_fairness_ratio": (
        "A group's rate over the most favoured group's",
        ("attribute", "group", "metric"),
    ),
    "claimscore_monitor_kpi": ("An overall KPI of the latest monitoring run", ("kpi",)),
}


def latest_dir(settings: Settings) -> Path:
    """Where ``claimscore monitor`` keeps the latest run's report and summary."""
    return settings.monitoring_latest_dir


class UnreadableSummary(ValueError):
    """A summary file that is not a JSON object (half-written, corrupt)."""


def read_summary(path: Path) -> dict[str, Any]:
    """The summary at ``path`` (raises FileNotFoundError, or :class:`UnreadableSummary`)."""
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableSummary(f"{path} is not JSON ({str(exc).split(':')[0]})") from None
    if not isinstance(data, dict):
        raise UnreadableSummary(f"{path} holds a {type(data).__name__}, not an object")
    return data


# --- the summary as series (pure) ---------------------------------------------------------------


def series(summary: Mapping[str, Any]) -> Series:
    """Every gauge value a summary gives; a key the summary lacks (or a non-number) is not exported."""
    out: Series = {name: {} for name in METRICS}
    out["claimscore_monitor_summary_readable"][()] = 1.0
    when = _timestamp(summary.get("generated_at"))
    if when is not None:
        out["claimscore_monitor_last_run_timestamp_seconds"][()] = when
    _put(out, "claimscore_monitor_window_claims", (), _dict(summary.get("window")).get("claims"))

    sections = [str(a.get("section")) for a in _list(summary.get("alerts")) if isinstance(a, Mapping)]
    for section in dict.fromkeys([*SECTIONS, *sections]):
        out["claimscore_monitor_alerts"][(section,)] = float(sections.count(section))

    drift = _dict(summary.get("drift"))
    for row in _rows(drift.get("features"), "feature"):
        feature = str(row["feature"])
        labels = (feature, str(row.get("kind", "")), str(row.get("method", "")))
        _put(out, "claimscore_monitor_drift", labels, row.get("statistic"))
        _put(out, "claimscore_monitor_drifted", (feature,), row.get("drifted"))
    for row in _rows(drift.get("scores"), "feature"):
        model = str(row["feature"])
        _put(out, "claimscore_monitor_score_drift", (model,), row.get("statistic"))
        _put(out, "claimscore_monitor_score_drifted", (model,), row.get("drifted"))
    for row in _rows(drift.get("routes"), "route"):
        share = row.get("current_share", row.get("current"))
        _put(out, "claimscore_monitor_route_share", (str(row["route"]),), share)
    _put(out, "claimscore_monitor_drifted_share", (), drift.get("drifted_share"))
    _put(out, "claimscore_monitor_multivariate_error", (), _dict(drift.get("multivariate")).get("error"))

    for model, perf in _dict(summary.get("performance")).items():
        perf = _dict(perf)
        _put(out, "claimscore_monitor_label_maturity", (model,), perf.get("maturity"))
        _put(out, "claimscore_monitor_labelled_claims", (model,), perf.get("labelled"))
        for basis in ("estimated", "measured", "test"):
            for metric, value in _numbers(_dict(perf.get(basis))):
                _put(out, "claimscore_monitor_performance", (model, metric, basis), value)

    for row in _rows(_dict(summary.get("fairness")).get("rows"), "attribute", "group", "metric"):
        labels = (str(row["attribute"]), str(row["group"]), str(row["metric"]))
        _put(out, "claimscore_monitor_fairness_ratio", labels, row.get("ratio"))

    for kpi, value in _numbers(_dict(_dict(summary.get("kpis")).get("overall"))):
        _put(out, "claimscore_monitor_kpi", (kpi,), value)
    return out


def _put(out: Series, name: str, labels: tuple[str, ...], value: Any) -> None:
    number = _number(value)
    if number is not None:
        out[name][labels] = number


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _numbers(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a nested dict, its keys joined with ``.``."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _numbers(value, name + ".")
        elif (number := _number(value)) is not None:
            yield name, number


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _rows(value: Any, *keys: str) -> Iterator[Mapping[str, Any]]:
    """The dicts of a list that name every one of ``keys``."""
    for row in _list(value):
        if isinstance(row, Mapping) and all(row.get(k) is not None for k in keys):
            yield row


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


# --- gauges and the worker's watcher ------------------------------------------------------------


class MonitorGauges:
    """The gauges of :data:`METRICS`, set from one summary at a time (series the previous summary had
    and this one lacks are set to NaN)."""

    def __init__(self, registry: Any = None):
        """``registry``: None in the service (the multiprocess files are what ``/metrics`` reads)."""
        # imported here, in the worker: prometheus_client picks its multiprocess value class at import,
        # from PROMETHEUS_MULTIPROC_DIR (bentoml/metrics.py explains the same for its own metrics)
        from prometheus_client import Gauge

        self._gauges = {
            name: Gauge(name, doc, labelnames=labels, multiprocess_mode=MODE, registry=registry)
            for name, (doc, labels) in METRICS.items()
        }
        self._shown: dict[str, set[tuple[str, ...]]] = {name: set() for name in METRICS}

    def show(self, values: Series) -> None:
        for name, gauge in self._gauges.items():
            new = values.get(name, {})
            for labels in self._shown[name] - new.keys():
                self._child(gauge, labels).set(math.nan)
            for labels, value in new.items():
                self._child(gauge, labels).set(value)
            self._shown[name] = set(new)

    def unreadable(self) -> None:
        """Say that the latest summary could not be read (every other value stays as it was)."""
        self._gauges["claimscore_monitor_summary_readable"].set(0.0)

    @staticmethod
    def _child(gauge: Any, labels: tuple[str, ...]) -> Any:
        return gauge.labels(*labels) if labels else gauge


class SummaryWatcher:
    """Sets ``gauges`` from the summary at ``path`` whenever the file changes (:meth:`check`)."""

    def __init__(self, path: Path, gauges: MonitorGauges):
        self.path, self.gauges = path, gauges
        self._seen: tuple[int, int] | None = None

    def check(self) -> bool:
        """Read the summary if it changed since the last look; True if the gauges were set from it."""
        try:
            stat = self.path.stat()
        except OSError:
            return False  # no run yet, or between runs: keep what is shown
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            summary = read_summary(self.path)
        except FileNotFoundError:
            self._seen = None
            return False
        except (OSError, UnreadableSummary) as exc:
            log.warning("monitoring gauges keep the last good run's values: %s", exc)
            self.gauges.unreadable()
            return False
        self.gauges.show(series(summary))
        return True

    def watch(self, stop: threading.Event, every: float = RECHECK_S) -> None:
        while True:
            try:
                self.check()
            except Exception:  # never let a bad summary end the thread (or touch the service)
                log.exception("monitoring gauges: reading %s failed", self.path)
            if stop.wait(every):
                return


def start(settings: Settings, every: float = RECHECK_S) -> threading.Event:
    """Watch the latest monitoring summary from a daemon thread of this worker; set the returned
    event to stop it."""
    watcher = SummaryWatcher(latest_dir(settings) / SUMMARY_FILE, MonitorGauges())
    stop = threading.Event()
    threading.Thread(target=watcher.watch, args=(stop, every), name="monitor-gauges", daemon=True).start()
    return stop

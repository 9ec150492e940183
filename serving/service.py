"""The ClaimScore BentoML service: ``bentoml serve serving.service:ClaimScore`` (or ``claimscore serve``).

Loads the champion models and their routing policy from the MLflow registry at start-up, mounts the
HTTP API (``serving/api.py``) and adds BentoML's health, readiness and Prometheus metrics, plus route
counts, score histograms and the latest monitoring run's gauges (``serving/gauges.py``). Every path
but health, readiness and the API description needs a key.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import signal
import sys
import time

import bentoml
from bentoml._internal.server.http import instruments

from serving import api, case_api, gauges
from serving.state import ServiceState
from serving.ui import pages

api.app.include_router(case_api.router)
api.app.include_router(pages.router)

ROUTES_TOTAL = bentoml.metrics.Counter(
    name="claimscore_routes", documentation="Claims answered, by route", labelnames=["route"]
)
SCORES = bentoml.metrics.Histogram(
    name="claimscore_score",
    documentation="Scores answered, by model",
    labelnames=["model"],
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0),
)

BATCH = bentoml.metrics.Histogram(
    name="claimscore_batch_claims",
    documentation="Claims scored together in one batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


BATCH_SECONDS = bentoml.metrics.Histogram(
    name="claimscore_batch_seconds",
    documentation="Time to score one batch",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)


class RouteMetrics(instruments.RunnerTrafficMetricsMiddleware):
    """BentoML's HTTP traffic metrics (``bentoml_service_request_*`` on /metrics), labelled by the
    route a request matched (``/cases/{claim_id}``) rather than its path.

    BentoML labels each series with the raw path, so every claim viewed through ``/cases/C-1`` or
    ``/ui/claims/C-1`` and every path nobody serves added series for good: over a 10-minute soak
    /metrics grew from 13 KB to 20 MB, a scrape from 0.1 s to 36 s, and the workers' memory with
    them. Routes are a fixed set, so the series are too. The request itself goes on with its path."""

    def __init__(self, app, **options):
        super().__init__(_RealPath(app), **options)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            route = route_of(scope["path"])
            if route != scope["path"]:
                scope = {**scope, "path": route, REAL_PATH: scope["path"]}
        await super().__call__(scope, receive, send)


class _RealPath:
    """Gives the app below the metrics the request's own path back."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if REAL_PATH in scope:
            scope = {k: v for k, v in scope.items() if k != REAL_PATH} | {"path": scope[REAL_PATH]}
        await self.app(scope, receive, send)


REAL_PATH = "claimscore_real_path"
UNMATCHED = "/{unmatched}"


@functools.cache
def _routes() -> tuple[frozenset[str], tuple]:
    routes = []
    for route in api.app.routes:  # FastAPI 0.165 keeps an included router as one entry, its routes inside
        inside = getattr(route, "effective_candidates", None)
        for r in [route, *(inside() if callable(inside) else ())]:
            if getattr(r, "path_regex", None) is not None:
                routes.append((r.path, r.path_regex))
    fixed = {path for path, _ in routes if "{" not in path}
    fixed |= set(api.OPEN_PATHS) | set(api.DOC_PATHS) | set(api.DOC_ASSETS) | {"/metrics"}
    return frozenset(fixed), tuple((path, regex) for path, regex in routes if "{" in path)


def route_of(path: str) -> str:
    """The route template a path matches (``/cases/C-1`` -> ``/cases/{claim_id}``), the path itself
    for a route without parameters, ``/{unmatched}`` for a path no route serves."""
    fixed, templated = _routes()
    if path in fixed:
        return path
    for template, regex in templated:
        if regex.match(path):
            return template
    return UNMATCHED


# BentoML builds its middleware stack after importing this module, taking the class by this name
instruments.RunnerTrafficMetricsMiddleware = RouteMetrics


def _observe(answers: list[dict], seconds: float) -> None:
    BATCH.observe(len(answers))
    BATCH_SECONDS.observe(seconds)
    for a in answers:
        ROUTES_TOTAL.labels(route=a["route"]).inc()
        for model in ("fraud", "fast_track"):
            if a.get(f"{model}_score") is not None:
                SCORES.labels(model=model).observe(a[f"{model}_score"])


WORKERS = int(os.environ.get("CLAIMSCORE_WORKERS", "2"))
"""Worker processes (``claimscore serve --workers N``). Each holds the models and the in-memory
history (kept in step through the store's change feed) and scores its own requests in batches;
two use both cores of a 2-core machine (one Python process is bound by its GIL to about one)."""


TRACING = {"excluded_urls": list(api.SCORING)}
"""BentoML traces every request with OpenTelemetry unless told otherwise. A span per scored claim
costs CPU in the HTTP thread, and under load a 2-core service's claims per second are bound by its
CPU per claim (bench/RESULTS.md, ``serving``, has the figures); the scoring paths are also answered
from the service's own middleware, so the spans said little. Every other path is still traced;
each scoring request is still counted and timed in /metrics (BentoML's traffic metrics), and each
decision is in the decision log with its time."""


@bentoml.service(
    name="claimscore", workers=WORKERS, traffic={"timeout": 60}, logging={"access": {"enabled": False}}, tracing=TRACING
)
@bentoml.asgi_app(api.app, path="/")
class ClaimScore:
    def __init__(self) -> None:
        _die_with_parent()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        state = ServiceState.load()
        state.observers.append(_observe)
        api.STATE = state
        api.describe_inputs(state.scorer.inputs)
        gauges.start(state.settings)
        self._checked, self._ready = 0.0, True

    def __is_ready__(self) -> bool:
        """``/readyz``: 503 while a store the service writes to does not answer (checked at most
        every ``READY_RECHECK_S``; the reason is logged once per change)."""
        now = time.monotonic()
        if now - self._checked >= READY_RECHECK_S:
            self._checked = now
            down = api.STATE.ready()
            if bool(down) == self._ready:  # a change
                log = logging.getLogger("claimscore")
                if down:
                    log.warning("not ready: %s do(es) not answer", ", ".join(down))
                else:
                    log.warning("ready again")
            self._ready = not down
        return self._ready


def _die_with_parent() -> None:
    """End this worker when the process that started it ends, however it ends.

    BentoML's arbiter starts each worker in a session of its own, so a worker outlives an arbiter
    that was killed (SIGKILL, the OOM killer): it keeps its memory, its share of the CPU and the
    listening socket. Linux's PR_SET_PDEATHSIG sends the worker SIGKILL when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent was already gone before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)


READY_RECHECK_S = 1.0
PR_SET_PDEATHSIG = 1
SWITCH_INTERVAL_S = 0.0005
"""How long the scoring thread may hold the GIL while the HTTP thread waits for it (Python's
default, 5 ms, leaves requests parsed and answered in 5 ms steps while a batch is scored)."""


ClaimScore.add_asgi_middleware(api.AuthMiddleware, keys_path=api.keys_path(), rate_per_second=api.rate_limit())

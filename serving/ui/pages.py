"""The workbench's routes: sign-in, the queue, a claim's page and what an investigator does there,
and the latest monitoring run (``/ui/monitoring``; its report at ``/ui/monitoring/report``).

Signing in and out: ``GET/POST /ui/login``, ``POST /ui/logout``. An API key entered once buys a
session cookie (:mod:`serving.sessions`; investigators' and admins' keys only); every other page
needs one, which :class:`serving.api.AuthMiddleware` checks before a route runs and records in the
request's scope (who, role, session).

CSRF: every form of a signed-in page carries the session's CSRF token (field ``csrf_token``) and
htmx sends it as the ``X-CSRF-Token`` header (``hx-headers`` on ``<body>``); every ``POST`` under
``/ui`` is refused (403) without the right one. The session cookie is also ``SameSite=Strict``.
The sign-in form, which has no session yet, is guarded by a double-submit token: ``GET /ui/login``
sets a random value in a short-lived ``SameSite=Strict`` cookie and in the form, and the ``POST``
must bring both, equal (so another site cannot sign a browser in under the attacker's key).

Errors from the case store and request validation (:class:`features.errors.ClaimScoreError`) are
shown on the page with the status the JSON API would answer (:func:`serving.api.error_answer`).
Every database or model call runs in the thread pool.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from features.errors import ClaimScoreError
from serving import api, gauges
from serving.cases import DISPOSITIONS, QUEUES, STATUSES, TRANSITIONS
from serving.casework import ListQuery
from serving.keys import KeyStore, verify
from serving.request import RequestError
from serving.sessions import COOKIE, CSRF_FIELD, CSRF_HEADER
from serving.ui import views

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "static"
LOGIN_COOKIE = "claimscore_login"
"""The sign-in form's double-submit token (see the module's docstring)."""
LOGIN_FIELD = "login_token"
LOGIN_TOKEN_S = 3_600
OPEN_STATUSES = "open,in_review,reopened"
"""The queue's default status filter: every case still to decide."""
PAGE_SIZES = (25, 50, 100, 200)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""On every page: nothing loads from elsewhere (the CSP names only this service), nothing is cached
(the pages show claims)."""
REPORT_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'self'; form-action 'none'; base-uri 'none'; sandbox",
}
"""On the monitoring report (a file written by ``claimscore monitor``, shown in the monitoring page's
sandboxed frame): no script runs and nothing loads, whatever the file holds; only its inline styles,
inline SVG and data: images are drawn, and only this service's pages may frame it."""

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals.update(
    age=views.age, day=views.day, moment=views.moment, trail_line=views.trail_line, CSRF_FIELD=CSRF_FIELD
)


class Refused(Exception):
    """A POST without the session's CSRF token."""


# --- rendering ----------------------------------------------------------------------------------


def _render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    session = request.scope.get("claimscore_session")
    context.setdefault("problems", [])
    context |= {
        "user": request.scope.get("claimscore_user"),
        "role": request.scope.get("claimscore_role"),
        "csrf": session.csrf if session is not None else "",
        "csrf_headers": json.dumps({"X-CSRF-Token": session.csrf}) if session is not None else "",
    }
    return templates.TemplateResponse(request, template, context, status_code=status, headers=SECURITY_HEADERS)


def _problems(exc: ClaimScoreError) -> tuple[list[dict], int]:
    body, status = api.error_answer(exc)
    return body["errors"], status


def _cases():
    return api.STATE.casework.cases


def _user(request: Request) -> str:
    return api.current_user(request)


async def _checked_form(request: Request) -> FormData:
    """The POST's form, once its CSRF token (form field or htmx header) is the session's."""
    form = await request.form()
    session = request.scope.get("claimscore_session")
    token = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if session is None or not session.csrf_ok(token if isinstance(token, str) else None):
        raise Refused
    return form


def _refused(request: Request) -> Response:
    problem = {
        "field": CSRF_FIELD,
        "problem": "this form did not carry this session's security token: reload the page and try again",
    }
    return _render(request, "error.html", 403, title="Refused", problems=[problem])


def _see(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers=SECURITY_HEADERS)


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


def _version(form: FormData) -> int | None:
    raw = _text(form, "version")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise RequestError([{"field": "version", "problem": f"'{raw}' is not a whole number"}]) from None


# --- signing in and out -------------------------------------------------------------------------


@router.get("/ui")
async def home() -> Response:
    return _see(views.QUEUE_PATH)


@router.get("/ui/login")
async def login_form(request: Request, next: str = "") -> Response:
    return _login_page(request, views.local_path(next))


def _login_page(request: Request, target: str, problems: list | None = None, status: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    response = _render(
        request, "login.html", status, title="Sign in", next=target, login_token=token, problems=problems or []
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=LOGIN_TOKEN_S,
        path="/ui/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/ui/login")
async def login(request: Request) -> Response:
    form = await request.form()
    target = views.local_path(_text(form, "next"))
    sent, kept = _text(form, LOGIN_FIELD) or "", request.cookies.get(LOGIN_COOKIE) or ""
    if not sent or not kept or not hmac.compare_digest(sent, kept):
        problem = {"field": "form", "problem": "the sign-in form expired or came from elsewhere: sign in again"}
        return _login_page(request, target, [problem], 403)
    key = _text(form, "api_key") or ""
    record = await run_in_threadpool(_verify, key)
    if record is None:
        problem = {"field": "api_key", "problem": "this key is not valid (unknown or revoked)"}
        return _login_page(request, target, [problem], 401)
    if record.role not in api.UI_ROLES:
        problem = {
            "field": "api_key",
            "problem": f"a {record.role} key cannot sign in to the workbench: use an investigator's or admin's key",
        }
        return _login_page(request, target, [problem], 403)
    token, _ = await run_in_threadpool(api.STATE.sessions.start, record.key_id)
    response = _see(target)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(api.STATE.settings.session_hours * 3600),
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
    return response


def _verify(key: str):
    if not key:
        return None
    return verify(KeyStore(api.keys_path()).lookup(), "Bearer " + key)


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    try:
        await _checked_form(request)
    except Refused:
        return _refused(request)
    await run_in_threadpool(api.STATE.sessions.end, request.cookies.get(COOKIE))
    response = _see("/ui/login")
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


# --- the queue ----------------------------------------------------------------------------------


def _queue_params(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The list filters among query pairs (others dropped), with every open case by default."""
    params = [(k, v) for k, v in pairs if k in ListQuery.model_fields]
    if not any(k == "status" for k, _ in params):
        params.append(("status", OPEN_STATUSES))
    return params


async def _queue_page(
    request: Request, params: list[tuple[str, str]], notice: str = "", problems: list | None = None, status: int = 200
) -> Response:
    cases, total = [], 0
    problems = list(problems or [])
    try:
        # a form's blank field (and the links' empty status: "any status") is no filter
        wanted = [(k, v) for k, v in params if v != ""]
        page = await run_in_threadpool(api.STATE.casework.list, wanted)
        cases, total = page.cases, page.total
    except ClaimScoreError as exc:
        found, status = _problems(exc)
        problems += found
    chosen = dict(params)
    limit, offset = _int(chosen.get("limit"), 50), _int(chosen.get("offset"), 0)
    partial = request.headers.get("hx-request") == "true" and not request.headers.get("hx-history-restore-request")
    return _render(
        request,
        "_cases.html" if partial else "queue.html",
        status,
        title="Queue",
        cases=cases,
        total=total,
        params=params,
        chosen=chosen,
        back=views.query_string(params).removeprefix("?"),
        sorts=views.sort_links(params),
        pages=views.page_links(params, total, limit, offset),
        queues=QUEUES,
        statuses=STATUSES,
        open_statuses=OPEN_STATUSES,
        page_sizes=PAGE_SIZES,
        tabs=[(q, views.QUEUE_PATH + views.query_string(params, queue=q, offset=None)) for q in QUEUES],
        all_queues=views.QUEUE_PATH + views.query_string(params, queue=None, offset=None),
        notice=notice,
        problems=problems,
        problems_inside=True,
    )


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@router.get("/ui/queue")
async def queue(request: Request) -> Response:
    return await _queue_page(request, _queue_params(list(request.query_params.multi_items())))


@router.post("/ui/queue/take-next")
async def take_next(request: Request) -> Response:
    try:
        form = await _checked_form(request)
    except Refused:
        return _refused(request)
    params = _queue_params(parse_qsl(_text(form, "back") or ""))
    queue_name = _text(form, "queue")
    try:
        case = await run_in_threadpool(api.STATE.casework.cases.take_next, _user(request), queue_name)
    except ClaimScoreError as exc:
        found, status = _problems(exc)
        return await _queue_page(request, params, problems=found, status=status)
    if case is None:
        where = f" in {queue_name}" if queue_name else ""
        return await _queue_page(request, params, notice=f"No unassigned open cases left{where}: nothing to take.")
    return _see(views.claim_path(case.claim_id))


@router.post("/ui/queue/assign")
async def assign(request: Request) -> Response:
    try:
        form = await _checked_form(request)
    except Refused:
        return _refused(request)
    params = _queue_params(parse_qsl(_text(form, "back") or ""))
    claim_ids = [c for c in form.getlist("claim_id") if isinstance(c, str) and c]
    assignee = _text(form, "assignee")
    if not claim_ids:
        problem = {"field": "claim_id", "problem": "tick at least one case to assign"}
        return await _queue_page(request, params, problems=[problem], status=422)
    try:
        cases = await run_in_threadpool(api.STATE.casework.cases.assign, claim_ids, assignee, _user(request))
    except ClaimScoreError as exc:
        found, status = _problems(exc)
        return await _queue_page(request, params, problems=found, status=status)
    who = assignee or "nobody (unassigned)"
    return await _queue_page(request, params, notice=f"Assigned {len(cases)} case(s) to {who}.")


# --- a claim ------------------------------------------------------------------------------------


@router.get("/ui/claims/{claim_id}")
async def claim(claim_id: str, request: Request) -> Response:
    return await _claim_page(request, claim_id)


async def _claim_page(request: Request, claim_id: str, problems: list | None = None, status: int = 200) -> Response:
    try:
        view = await run_in_threadpool(_claim_view, claim_id, _user(request))
    except ClaimScoreError as exc:
        found, code = _problems(exc)
        return _render(request, "error.html", code, title="Claim not found" if code == 404 else "Error", problems=found)
    case = view["case"]
    return _render(
        request,
        "claim.html",
        status,
        title=f"Claim {claim_id}",
        problems=problems or [],
        claim_id=claim_id,
        next_statuses=[s for s in TRANSITIONS.get(case["status"], ()) if s != case["status"]],
        dispositions=DISPOSITIONS,
        network_json=_script_json(view["network"]) if view["network"] else None,
        **view,
    )


def _claim_view(claim_id: str, user: str) -> dict[str, Any]:
    """Everything the claim page shows (reading it records a view in the audit trail)."""
    data = api.STATE.casework.case(claim_id, user, "claim_page", features=True)
    charts, chart_problem = [], ""
    if data["decisions"]:
        try:
            explained = api.STATE.explain_features(data["decisions"][-1]["features"])
            charts = [
                views.waterfall(model, explained[model]) for model in ("fraud", "fast_track") if model in explained
            ]
        except (ClaimScoreError, KeyError, ValueError) as exc:
            log.warning("reasons chart for %s: %s", claim_id, exc)
            chart_problem = f"the reasons could not be worked out ({exc})"
    network, network_problem = _network(claim_id)
    return {
        "case": data["case"],
        "facts": views.facts(data["claim"]),
        "in_history": data["claim"] is not None,
        "decisions": data["decisions"],
        "latest": data["decisions"][-1] if data["decisions"] else None,
        "trail": list(reversed(data["trail"])),
        "notes": [e for e in data["trail"] if e["action"] == "note"],
        "charts": charts,
        "chart_problem": chart_problem,
        "network": network,
        "network_problem": network_problem,
        "linked": [n for n in (network or {}).get("nodes", []) if n.get("kind") == "claim" and n.get("hop", 0) != 0],
    }


def _network(claim_id: str) -> tuple[dict | None, str]:
    """The claim's linked network (:func:`serving.network.claim_network`), or why there is none."""
    try:
        return api.STATE.claim_network(claim_id), ""
    except ClaimScoreError as exc:
        return None, f"the network could not be read ({exc})"


def _script_json(value: Any) -> Markup:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>`` can end it early)."""
    text = json.dumps(value, default=str).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # escaped above for a script element


async def _act(request: Request, claim_id: str, action: Callable[[FormData, str], Any]) -> Response:
    """A claim page form: check its CSRF token, do ``action(form, user)`` in the thread pool, then
    show the claim again (a redirect, so reloading does not repeat it), or the problems with their status."""
    try:
        form = await _checked_form(request)
    except Refused:
        return _refused(request)
    try:
        await run_in_threadpool(action, form, _user(request))
    except ClaimScoreError as exc:
        found, status = _problems(exc)
        return await _claim_page(request, claim_id, found, status)
    return _see(views.claim_path(claim_id))


@router.post("/ui/claims/{claim_id}/status")
async def change_status(claim_id: str, request: Request) -> Response:
    def act(form: FormData, user: str) -> Any:
        status = _text(form, "status")
        if status is None:
            raise RequestError([{"field": "status", "problem": "choose a status"}])
        return api.STATE.casework.cases.set_status(claim_id, status, user, _version(form))

    return await _act(request, claim_id, act)


@router.post("/ui/claims/{claim_id}/note")
async def add_note(claim_id: str, request: Request) -> Response:
    return await _act(
        request,
        claim_id,
        lambda form, user: api.STATE.casework.cases.add_note(claim_id, user, _text(form, "note") or ""),
    )


@router.post("/ui/claims/{claim_id}/disposition")
async def record_disposition(claim_id: str, request: Request) -> Response:
    def act(form: FormData, user: str) -> Any:
        body = {name: _text(form, name) for name in ("disposition", "reason", "note", "amount_saved")}
        body["version"] = _version(form)
        return api.STATE.casework.decide(claim_id, {k: v for k, v in body.items() if v is not None}, user)

    return await _act(request, claim_id, act)


@router.post("/ui/claims/{claim_id}/reopen")
async def reopen(claim_id: str, request: Request) -> Response:
    return await _act(
        request,
        claim_id,
        lambda form, user: api.STATE.casework.reopen(claim_id, user, _text(form, "reason"), _version(form)),
    )


@router.post("/ui/claims/{claim_id}/assign-me")
async def assign_me(claim_id: str, request: Request) -> Response:
    return await _act(
        request, claim_id, lambda form, user: api.STATE.casework.cases.assign([claim_id], user, user, _version(form))
    )


# --- monitoring ---------------------------------------------------------------------------------


ALERTS_SHOWN = 10
"""Alert lines the monitoring page lists before folding the rest away (a run can have dozens)."""


@router.get("/ui/monitoring")
async def monitoring(request: Request) -> Response:
    view = await run_in_threadpool(_monitoring_view, gauges.latest_dir(api.STATE.settings))
    return _render(request, "monitoring.html", title="Monitoring", shown=ALERTS_SHOWN, **view)


def _monitoring_view(latest: Path) -> dict[str, Any]:
    """The latest run's summary as the page shows it, whether its report is there, and any problem."""
    report = (latest / gauges.REPORT_FILE).is_file()
    try:
        summary = gauges.read_summary(latest / gauges.SUMMARY_FILE)
    except FileNotFoundError:
        return {"run": None, "report": report}
    except (OSError, gauges.UnreadableSummary) as exc:
        problem = {"field": gauges.SUMMARY_FILE, "problem": f"the latest run's summary cannot be read ({exc})"}
        return {"run": None, "report": report, "problems": [problem]}
    return {"run": views.monitoring_run(summary), "report": report}


@router.get("/ui/monitoring/report")
async def monitoring_report() -> Response:
    """The latest run's report as written (self-contained HTML), under :data:`REPORT_HEADERS`."""
    file = gauges.latest_dir(api.STATE.settings) / gauges.REPORT_FILE
    if not file.is_file():
        return Response("no monitoring report yet: run claimscore monitor", status_code=404, media_type="text/plain")
    return FileResponse(file, media_type="text/html; charset=utf-8", headers=REPORT_HEADERS)


# --- static files -------------------------------------------------------------------------------


@router.get("/ui/static/{path:path}")
async def static(path: str) -> Response:
    """The workbench's own style sheet and script, and the vendored htmx and cytoscape."""
    root = STATIC.resolve()
    file = (root / path).resolve()
    if not file.is_relative_to(root) or not file.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(file, headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"})

"""The HTTP API: ``POST /score``, ``POST /score_batch``, ``POST /explain``, ``GET /model``.

Mounted into the BentoML service (``serving/service.py``), which adds health, readiness and
Prometheus metrics. Every bad request gets a 4xx JSON body ``{"errors": [{"field", "problem"}]}``;
keys and roles are checked by :class:`AuthMiddleware` before a request reaches a route.

A claim that does not send a field the champion uses is refused (422, one error per field, e.g.
``{"field": "claimed_amount", ...}``; ``claims[i].claimed_amount`` in a batch; where any one of
several fields will do, the field is named ``phone|payee_account|address``) unless the claim's
``allow_missing`` option lists it; the answer for every claim then says what it was scored without
(``"scored_without": ["claimed_amount"]``, empty when nothing).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse

from features.errors import ClaimScoreError
from serving.cases import CaseError, CaseNotFound, InvalidTransition, StaleVersion
from serving.keys import KeyStore, verify
from serving.request import MAX_BATCH, ClaimRequest, RequestError, inputs_schema, parse_records
from serving.sessions import COOKIE

MAX_BODY = 64 * 1024
MAX_BATCH_BODY = 8 * 1024 * 1024
KEEPALIVE_REQUESTS = 100
"""Scoring requests answered on one keep-alive connection before it is closed (see :class:`_Connections`)."""
KEYS_RECHECK_S = 1.0
"""How often the key file is looked at for keys created or revoked while the service runs."""
OPEN_PATHS = ("/healthz", "/livez", "/readyz")
DOC_PATHS = ("/", "/docs.json", "/docs", "/openapi.json")
ROLES = {
    "/score": {"scorer", "admin"},
    "/score_batch": {"scorer", "admin"},
    "/explain": {"investigator", "admin"},
    "/model": {"scorer", "investigator", "admin"},
    "/metrics": {"scorer", "investigator", "admin"},
    "/outcomes": {"scorer", "admin"},
    "/cases": {"investigator", "admin"},
}
"""Roles allowed on each path; a path below one listed (``/cases/C-1``) takes its roles."""
UI = "/ui"
UI_ROLES = {"investigator", "admin"}
UI_OPEN = ("/ui/login", "/ui/static/")
"""The pages anyone may load: the sign-in page and the vendored scripts and style sheets."""


def _docs_assets() -> frozenset[str]:
    """The files BentoML's API description page loads (``/static_content/...``): the only paths
    under it anyone may fetch without a key."""
    from bentoml._internal import server

    folder = Path(server.__file__).parent / "static_content"
    return (
        frozenset(f"/static_content/{p.name}" for p in folder.iterdir() if p.is_file())
        if folder.is_dir()
        else frozenset()
    )


DOC_ASSETS = _docs_assets()
RATE_WINDOW_S = 1.0
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def roles_for(path: str) -> set[str] | None:
    """The roles that may use ``path``, None for a path no route serves: refused to every role
    (403) after the key check, so a route added without a line in :data:`ROLES` is closed, not open."""
    if path in ROLES:
        return ROLES[path]
    head = "/" + path.split("/", 2)[1] if path.count("/") >= 2 else path
    return ROLES.get(head)


app = FastAPI(title="ClaimScore", version="1", description="Fraud and triage scores, routes and reasons for claims.")
STATE: Any = None
"""The :class:`serving.state.ServiceState`, set when the service starts."""

_CLAIM_SCHEMA = ClaimRequest.model_json_schema()


def describe_inputs(inputs) -> None:
    """Say in the document what the served champion needs of a claim (called once its models are
    loaded): every input it uses is sent or named in ``allow_missing`` (see
    :func:`serving.request.inputs_schema`). The routes' documents read this schema when asked."""
    _CLAIM_SCHEMA.update(inputs_schema(inputs))


_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": _CLAIM_SCHEMA}}}}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["claims"],
                    "properties": {
                        "claims": {
                            "type": "array",
                            "items": _CLAIM_SCHEMA,
                            "minItems": 1,
                            "maxItems": MAX_BATCH,
                            # JSON Schema's uniqueItems compares whole items: this says it of one field
                            "x-unique-by": "claim_id",
                        }
                    },
                }
            }
        },
    }
}
ERRORS = {
    "4XX": {
        "description": "The request cannot be scored: every bad field and why",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"field": {"type": "string"}, "problem": {"type": "string"}},
                            },
                        }
                    },
                }
            }
        },
    }
}


def error(status: int, field: str, problem: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"errors": [{"field": field, "problem": problem}]}, status_code=status, headers=headers)


def _too_large(limit: int) -> RequestError:
    return RequestError([{"field": "body", "problem": f"is larger than {limit:,} bytes"}], status=413)


async def read_json(request: Request, limit: int) -> Any:
    """A request's JSON body, refused with a 4xx naming the body when too large, empty or not JSON."""
    _check_length(request.headers.get("content-length"), limit)
    return _parse_json(await request.body(), limit)


def _check_length(declared: str | None, limit: int) -> None:
    """Refuse a body whose declared length is over ``limit`` before reading it."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)


def _parse_json(body: bytes, limit: int) -> Any:
    if len(body) > limit:
        raise _too_large(limit)
    if not body.strip():
        raise RequestError([{"field": "body", "problem": "is empty: send a JSON object"}], status=400)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(
            [{"field": "body", "problem": f"is not JSON ({str(exc).split(':')[0]})"}], status=400
        ) from None


def error_answer(exc: ClaimScoreError) -> tuple[dict, int]:
    """The body and status for an error: a bad request gets a 4xx naming each field (404 for a
    claim with no case, 409 for a change that conflicts with the case as it is now: a stale
    version, a status it cannot go to); anything else the service cannot do now: 503."""
    if isinstance(exc, RequestError):
        return {"errors": exc.problems}, exc.status
    if isinstance(exc, CaseError) and exc.field is not None:
        conflict = isinstance(exc, StaleVersion | InvalidTransition)
        status = 404 if isinstance(exc, CaseNotFound) else 409 if conflict else 422
        return {"errors": [{"field": exc.field, "problem": str(exc)}]}, status
    return {"errors": [{"field": "service", "problem": str(exc)}]}, 503


RETRY_AFTER_S = 5
"""What a 503 tells the client to wait before trying again (a store the service needs is down)."""


def _retry(status: int) -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}


@app.exception_handler(ClaimScoreError)
async def _claimscore_error(_: Request, exc: ClaimScoreError) -> JSONResponse:
    answer, status = error_answer(exc)
    return JSONResponse(answer, status_code=status, headers=_retry(status))


def _key_id(request: Request) -> str:
    return request.scope.get("claimscore_key_id", "")


async def score_one(payload: Any, key_id: str) -> dict:
    """The answer for one claim's JSON payload (raises :class:`RequestError` for a bad one)."""
    claims = parse_records([payload], prefix="")
    without = STATE.check_inputs([payload])
    answer = (await asyncio.wrap_future(STATE.submit(claims, [payload], key_id)))[0]
    answer["scored_without"] = without[0]
    return answer


async def score_many(payload: Any, key_id: str) -> dict:
    """The answers for ``{"claims": [...]}``, in order."""
    if not isinstance(payload, dict) or "claims" not in payload:
        raise RequestError([{"field": "claims", "problem": 'is required: send {"claims": [...]}'}])
    claims = parse_records(payload["claims"])
    without = STATE.check_inputs(payload["claims"], prefix="claims")
    answers = await asyncio.wrap_future(STATE.submit(claims, payload["claims"], key_id))
    for answer, fields in zip(answers, without):
        answer["scored_without"] = fields
    return {"results": answers}


SCORING: dict[str, tuple[Any, int]] = {"/score": (score_one, MAX_BODY), "/score_batch": (score_many, MAX_BATCH_BODY)}
"""The scoring paths, answered straight from :class:`AuthMiddleware` (see there), and their body limits."""


@app.post("/score", openapi_extra={**_BODY, "responses": ERRORS})
async def score(request: Request) -> JSONResponse:
    """Score one claim: fraud and fast-track scores, route, rules fired, top reasons, versions."""
    # answers hold plain JSON values already: no jsonable_encoder pass
    return JSONResponse(await score_one(await read_json(request, MAX_BODY), _key_id(request)))


@app.post("/score_batch", openapi_extra={**_BATCH_BODY, "responses": ERRORS})
async def score_batch(request: Request) -> JSONResponse:
    """Score up to 1,000 claims: the same answer per claim as /score, in order."""
    return JSONResponse(await score_many(await read_json(request, MAX_BATCH_BODY), _key_id(request)))


@app.post("/explain", openapi_extra={**_BODY, "responses": ERRORS})
async def explain(request: Request) -> dict:
    """Every feature's contribution to both scores (log-odds), with base values."""
    payload = await read_json(request, MAX_BODY)
    claims = parse_records([payload], prefix="")
    without = STATE.check_inputs([payload])
    answer = (await run_in_threadpool(STATE.explain, claims))[0]
    answer["scored_without"] = without[0]
    await run_in_threadpool(STATE.casework.cases.record_view, current_user(request), answer["claim_id"], "explain")
    return answer


@app.get("/model")
async def model() -> dict:
    """Model versions, training periods, test metrics, features and routing thresholds."""
    return STATE.model_info()


class AuthMiddleware:
    """Bearer keys with roles on every path except health, readiness and the API description.

    It also answers ``POST /score`` and ``POST /score_batch`` itself, with the same functions as
    the FastAPI routes (which document them in the OpenAPI description): the route machinery
    (mount, router, dependency solving, query parsing) is CPU per claim that adds nothing to the
    answer, and the claims per second a 2-core service answers depend on its CPU per claim."""

    def __init__(self, app, keys_path: str, rate_per_second: float = 0.0):
        self.app = app
        self.store = KeyStore(keys_path)
        self.limiter = RateLimiter(rate_per_second)
        self._stamp: float | None = None
        self._looked = -float("inf")
        self._lookup: dict = {}
        self._connections = _Connections()

    def _keys(self) -> dict:
        now = time.monotonic()
        if now - self._looked >= KEYS_RECHECK_S:  # keys created or revoked while running take effect within a second
            self._looked = now
            path = Path(self.store.path)
            stamp = path.stat().st_mtime_ns if path.exists() else None
            if stamp != self._stamp:
                self._lookup, self._stamp = self.store.lookup(), stamp
        return self._lookup

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if CONTROL_CHARACTER.search(path):  # BentoML's router matches no such path and answers in plain text
            return await error(404, "path", "names nothing: it holds a control character")(scope, receive, send)
        if path in OPEN_PATHS or path in DOC_PATHS or path in DOC_ASSETS:
            return await self.app(scope, receive, send)
        if path == UI or path.startswith(UI + "/"):
            return await self._page(scope, receive, send, path)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        record = verify(self._keys(), headers.get("authorization"))
        if record is None:
            response = error(
                401,
                "Authorization",
                "a valid API key is required: 'Authorization: Bearer KEY'",
                {"WWW-Authenticate": "Bearer"},
            )
            return await response(scope, receive, send)
        allowed = roles_for(path)
        if allowed is None:
            return await error(403, "Authorization", f"no role may use {path}")(scope, receive, send)
        if record.role not in allowed:
            response = error(
                403, "Authorization", f"role '{record.role}' may not use {path} (allowed: {', '.join(sorted(allowed))})"
            )
            return await response(scope, receive, send)
        wait = self.limiter.wait(record.key_id)
        if wait:
            response = error(
                429,
                "Authorization",
                f"key {record.key_id} is over its rate limit of {self.limiter.rate:g} requests a second: retry later",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
            return await response(scope, receive, send)
        _identify(scope, record)
        if path in SCORING and scope.get("method") == "POST":
            close = self._connections.last_request(scope.get("client"))
            return await _answer_scoring(path, headers, receive, send, record.key_id, close)
        return await self.app(scope, receive, send)

    async def _page(self, scope, receive, send, path: str) -> None:
        """The pages sign in with a session cookie, not a key header: a page without a live session
        of an investigator's or admin's key that is still in force goes to the sign-in page."""
        if path.startswith(UI_OPEN):
            return await self.app(scope, receive, send)
        token = HTTPConnection(scope).cookies.get(COOKIE)
        session = STATE.sessions.find(token) if token and STATE is not None else None
        record = None
        if session is not None:
            record = next((r for r in self._keys().values() if r.key_id == session.key_id), None)
        if record is None or record.role not in UI_ROLES:
            if scope.get("method") == "GET":
                query = scope.get("query_string", b"").decode("latin-1")
                where = quote(path + (f"?{query}" if query else ""))
                response = RedirectResponse(f"{UI}/login?next={where}", status_code=303)
            else:
                response = error(401, "session", "sign in again: the session has ended")
            return await response(scope, receive, send)
        _identify(scope, record)
        scope["claimscore_session"] = session
        return await self.app(scope, receive, send)


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second on average, bursts of up to a second's
    worth (each worker process keeps its own buckets, so a service of N workers allows up to N
    times the rate). ``rate`` 0: no limit."""

    def __init__(self, rate: float):
        self.rate = float(rate)
        self._buckets: dict[str, tuple[float, float]] = {}

    def wait(self, key_id: str, now: float | None = None) -> float:
        """0 when the request may go (and counts it), else the seconds until one may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key_id, (self.rate, now))
        tokens = min(self.rate, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[key_id] = (tokens - 1, now)
            return 0.0
        self._buckets[key_id] = (tokens, now)
        return (1 - tokens) / self.rate


def rate_limit() -> float:
    """Requests a second each key may make (``rate_limit_per_second`` in the settings)."""
    from features.config import load_settings

    return load_settings().rate_limit_per_second


def _identify(scope, record) -> None:
    """Who is asking, for the routes: the key's id, its role and the name its changes are recorded under."""
    scope["claimscore_key_id"] = record.key_id
    scope["claimscore_role"] = record.role
    scope["claimscore_user"] = user_name(record)


def user_name(record) -> str:
    """The name a key's actions are recorded and assigned under: its name, else its id."""
    return record.name or record.key_id


def current_user(request: Request) -> str:
    return request.scope.get("claimscore_user", "")


class _Connections:
    """Scoring requests per keep-alive connection; the :data:`KEEPALIVE_REQUESTS`-th is answered with
    ``Connection: close``.

    The service's workers share one listening socket and whichever wakes first accepts a
    connection, so a client that opens all its connections at once can put every one of them on
    one worker, leaving the others idle. Closing a connection now and then lets the client's next
    one land anew, and the worker that is less busy is the one that wakes first (the rule of
    nginx's ``keepalive_requests``)."""

    def __init__(self) -> None:
        self._counts: dict[Any, int] = {}

    def last_request(self, client: Any) -> bool:
        if client is None:
            return False
        if len(self._counts) > 10_000:  # connections gone without reaching the limit
            self._counts.clear()
        count = self._counts.get(client, 0) + 1
        if count >= KEEPALIVE_REQUESTS:
            self._counts.pop(client, None)
            return True
        self._counts[client] = count
        return False


async def _answer_scoring(path: str, headers: dict[str, str], receive, send, key_id: str, close: bool) -> None:
    handler, limit = SCORING[path]
    try:
        _check_length(headers.get("content-length"), limit)
        answer, status = await handler(_parse_json(await _read_body(receive, limit), limit), key_id), 200
    except ClaimScoreError as exc:
        answer, status = error_answer(exc)
    body = json.dumps(answer).encode()
    response_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    response_headers += [(k.lower().encode(), v.encode()) for k, v in _retry(status).items()]
    if close:
        response_headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive, limit: int) -> bytes:
    """The request body, reading no further than ``limit`` + 1 bytes."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError([{"field": "body", "problem": "the client went away"}], status=400)
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        if size > limit or not message.get("more_body", False):
            return b"".join(parts)


def keys_path() -> str:
    from features.config import load_settings

    return str(load_settings().home / "keys.json")


os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

"""The HTTP API: ``POST /score``, ``POST /score_batch``, ``POST /explain``, ``GET /model``.

Mounted into the BentoML service (``serving/service.py``), which adds health, readiness and
Prometheus metrics. Every bad request gets a 4xx JSON body ``{"errors": [{"field", "problem"}]}``;
keys and roles are checked by :class:`AuthMiddleware` before a request reaches a route.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from features.errors import ClaimScoreError
from serving.keys import KeyStore, verify
from serving.request import ClaimRequest, RequestError, parse_records

MAX_BODY = 64 * 1024
MAX_BATCH_BODY = 8 * 1024 * 1024
OPEN_PATHS = ("/healthz", "/livez", "/readyz")
DOC_PATHS = ("/", "/docs.json", "/docs", "/openapi.json")
ROLES = {
    "/score": {"scorer", "admin"},
    "/score_batch": {"scorer", "admin"},
    "/explain": {"investigator", "admin"},
    "/model": {"scorer", "investigator", "admin"},
    "/metrics": {"scorer", "investigator", "admin"},
}

app = FastAPI(title="ClaimScore", version="1", description="Fraud and triage scores, routes and reasons for claims.")
STATE: Any = None
"""The :class:`serving.state.ServiceState`, set when the service starts."""

_CLAIM_SCHEMA = ClaimRequest.model_json_schema()
_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": _CLAIM_SCHEMA}}}}
_BATCH_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["claims"],
    "properties": {"claims": {"type": "array", "items": _CLAIM_SCHEMA, "minItems": 1}}}}}}}
_ERRORS = {"4XX": {"description": "The request cannot be scored: every bad field and why",
                   "content": {"application/json": {"schema": {"type": "object", "properties": {"errors": {
                       "type": "array", "items": {"type": "object", "properties": {
                           "field": {"type": "string"}, "problem": {"type": "string"}}}}}}}}}}


def error(status: int, field: str, problem: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"errors": [{"field": field, "problem": problem}]}, status_code=status, headers=headers)


async def _json(request: Request, limit: int) -> Any:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise RequestError([{"field": "body", "problem": f"is larger than {limit:,} bytes"}], status=413)
    body = await request.body()
    if len(body) > limit:
        raise RequestError([{"field": "body", "problem": f"is larger than {limit:,} bytes"}], status=413)
    if not body.strip():
        raise RequestError([{"field": "body", "problem": "is empty: send a JSON object"}], status=400)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError([{"field": "body", "problem": f"is not JSON ({str(exc).split(':')[0]})"}], status=400) from None


@app.exception_handler(RequestError)
async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
    return JSONResponse({"errors": exc.problems}, status_code=exc.status)


@app.exception_handler(ClaimScoreError)
async def _unavailable(_: Request, exc: ClaimScoreError) -> JSONResponse:
    return JSONResponse({"errors": [{"field": "service", "problem": str(exc)}]}, status_code=503)


def _key_id(request: Request) -> str:
    return request.scope.get("claimscore_key_id", "")


@app.post("/score", openapi_extra={**_BODY, "responses": _ERRORS})
async def score(request: Request) -> dict:
    """Score one claim: fraud and fast-track scores, route, rules fired, top reasons, versions."""
    payload = await _json(request, MAX_BODY)
    claims = parse_records([payload], prefix="")
    return (await asyncio.wrap_future(STATE.submit(claims, [payload], _key_id(request))))[0]


@app.post("/score_batch", openapi_extra={**_BATCH_BODY, "responses": _ERRORS})
async def score_batch(request: Request) -> dict:
    """Score up to 1,000 claims: the same answer per claim as /score, in order."""
    payload = await _json(request, MAX_BATCH_BODY)
    if not isinstance(payload, dict) or "claims" not in payload:
        raise RequestError([{"field": "claims", "problem": "is required: send {\"claims\": [...]}"}])
    claims = parse_records(payload["claims"])
    answers = await asyncio.wrap_future(STATE.submit(claims, payload["claims"], _key_id(request)))
    return {"results": answers}


@app.post("/explain", openapi_extra={**_BODY, "responses": _ERRORS})
async def explain(request: Request) -> dict:
    """Every feature's contribution to both scores (log-odds), with base values."""
    payload = await _json(request, MAX_BODY)
    claims = parse_records([payload], prefix="")
    return (await run_in_threadpool(STATE.explain, claims))[0]


@app.get("/model")
async def model() -> dict:
    """Model versions, training periods, test metrics, features and routing thresholds."""
    return STATE.model_info()


class AuthMiddleware:
    """Bearer keys with roles on every path except health, readiness and the API description."""

    def __init__(self, app, keys_path: str):
        self.app = app
        self.store = KeyStore(keys_path)
        self._stamp: float | None = None
        self._lookup: dict = {}

    def _keys(self) -> dict:
        path = Path(self.store.path)
        stamp = path.stat().st_mtime if path.exists() else None
        if stamp != self._stamp:  # keys created or revoked while running take effect at once
            self._lookup, self._stamp = self.store.lookup(), stamp
        return self._lookup

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in OPEN_PATHS or path in DOC_PATHS or path.startswith("/static"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        record = verify(self._keys(), headers.get("authorization"))
        if record is None:
            response = error(401, "Authorization", "a valid API key is required: 'Authorization: Bearer KEY'",
                             {"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        allowed = ROLES.get(path)
        if allowed is not None and record.role not in allowed:
            response = error(403, "Authorization", f"role '{record.role}' may not use {path} "
                                                   f"(allowed: {', '.join(sorted(allowed))})")
            return await response(scope, receive, send)
        scope["claimscore_key_id"] = record.key_id
        return await self.app(scope, receive, send)


def keys_path() -> str:
    from features.config import load_settings

    return str(load_settings().home / "keys.json")


os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

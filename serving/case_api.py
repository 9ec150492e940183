"""The investigators' and claim systems' JSON API: cases, dispositions and outcomes.

``GET /cases`` (filters and sort as query parameters), ``GET /cases/{claim_id}`` (the case, the
claim's facts, its score history and audit trail; reading it is an audit event), ``POST
/cases/{claim_id}/disposition`` and ``POST /outcomes``. Roles are checked by
:class:`serving.api.AuthMiddleware` (``/cases``: investigator, admin; ``/outcomes``: scorer, admin);
bad input gets the same 4xx bodies as ``/score``. The work itself is :class:`serving.casework.Casework`'s.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from serving import api
from serving.casework import DispositionBody, ListQuery, OutcomeBody, case_json

router = APIRouter()


def _body(model) -> dict:
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}},
        "responses": api.ERRORS,
    }


_LIST_PARAMETERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {k: v for k, v in field.items() if k != "title"},
    }
    for name, field in ListQuery.model_json_schema()["properties"].items()
]


@router.get("/cases", openapi_extra={"parameters": _LIST_PARAMETERS, "responses": api.ERRORS})
async def list_cases(request: Request) -> dict[str, Any]:
    """Cases, highest fraud score first by default: filter by queue, status (repeat or comma-separate),
    assignee, unassigned, region, min_score, min/max_amount, older_than_days, overdue; sort by
    score, age, due, status, assignee, region or amount (``-`` first: descending); page with limit
    and offset."""
    page = await run_in_threadpool(api.STATE.casework.list, list(request.query_params.multi_items()))
    return {"cases": [case_json(c) for c in page.cases], "total": page.total}


@router.get("/cases/{claim_id}", responses=api.ERRORS)
async def get_case(claim_id: str, request: Request) -> dict[str, Any]:
    """A case with the claim's facts, every decision on it (score history) and its audit trail."""
    return await run_in_threadpool(api.STATE.casework.case, claim_id, api.current_user(request), "case_api")


@router.post("/cases/{claim_id}/disposition", openapi_extra=_body(DispositionBody))
async def record_disposition(claim_id: str, request: Request) -> dict[str, Any]:
    """Close a case with what the investigation found; the claim's label is recorded at once in the
    history (claims reported after this moment see it in their features)."""
    body = await api.read_json(request, api.MAX_BODY)
    case = await run_in_threadpool(api.STATE.casework.decide, claim_id, body, api.current_user(request))
    return case_json(case)


@router.post("/outcomes", openapi_extra=_body(OutcomeBody))
async def record_outcome(request: Request) -> dict[str, Any]:
    """Outcomes a claim system learned after scoring (settlement, legal representation, dispute,
    an investigation's result): recorded in the history at once, labels included."""
    body = await api.read_json(request, api.MAX_BODY)
    return await run_in_threadpool(api.STATE.casework.record_outcome, body, api.current_user(request))

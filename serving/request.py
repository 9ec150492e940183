"""Scoring requests, derived from the canonical schema: what is known at first notice of loss.

:func:`parse_claim` turns a JSON object into a one-row canonical frame, or raises
:class:`RequestError` listing every bad field and why (the service answers 4xx with that list).
Outcome fields (investigation result, settlement...) are refused: they are not known when a claim
is scored. Unknown category values are accepted: the model treats them as it treats unseen values.
Source extras (``x_`` fields) are accepted as numbers or text.

A claim may also carry ``allow_missing``, a per-request option and not a claim field (it is never
part of the parsed record): the fields the caller knows it lacks and wants scored as unknown. Without
it, the service refuses a claim that does not send a field the champion uses (see
:meth:`serving.state.ServiceState.check_inputs`); a field sent as ``null`` counts as sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Optional

import pandas as pd
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from features import schema
from features.errors import ClaimScoreError

ID_MAX = 128
TEXT_MAX = 64
EXTRA_MAX = 100
MAX_BATCH = 1_000


class RequestError(ClaimScoreError):
    """A request the service cannot score; ``problems`` lists ``{"field", "problem"}`` entries."""

    exit_code = 2

    def __init__(self, problems: list[dict[str, str]], status: int = 422):
        self.problems = problems
        self.status = status
        super().__init__("; ".join(f"{p['field']}: {p['problem']}" for p in problems))


def _number(value: Any) -> Any:
    """A JSON number only: true/false and text are refused, as the OpenAPI document's ``number``
    and ``integer`` say (pydantic would read ``false`` as 0 and ``"12"`` as 12)."""
    if isinstance(value, (bool, str)):
        raise PydanticCustomError("number_type", "must be a number, not {kind}", {"kind": _kind(value)})
    return value


def _boolean(value: Any) -> Any:
    """``true`` or ``false`` only (not 0/1 or text), as the document's ``boolean`` says."""
    if not isinstance(value, bool):
        raise PydanticCustomError("bool_type", "must be a boolean: true or false, not {kind}", {"kind": _kind(value)})
    return value


def _kind(value: Any) -> str:
    return "true/false" if isinstance(value, bool) else "text" if isinstance(value, str) else type(value).__name__


def _annotation(f: schema.Field) -> Any:
    if f.dtype == "id":
        return Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=ID_MAX)]
    if f.dtype == "category":
        return Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TEXT_MAX)]
    if f.dtype == "float":
        return Annotated[float, BeforeValidator(_number), Field(ge=f.min, le=f.max, allow_inf_nan=False)]
    if f.dtype == "int":
        return Annotated[int, BeforeValidator(_number), Field(ge=f.min, le=f.max)]
    if f.dtype == "bool":
        return Annotated[bool, BeforeValidator(_boolean)]
    if f.dtype == "datetime":
        return datetime  # also reads "YYYY-MM-DD"
    raise AssertionError(f.dtype)


def request_field(f: schema.Field) -> tuple[Any, Any]:
    """A schema field as a request body's pydantic field: its type, bounds and description."""
    ann = _annotation(f)
    desc = f.description + (
        f" One of: {', '.join(f.allowed)} (other values are scored as unseen)." if f.allowed else ""
    )
    if f.required:
        return ann, Field(..., description=desc)
    return Optional[ann], Field(None, description=desc)  # noqa: UP045 - ann is a runtime type object


class _Base(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        str_strip_whitespace=True,
        # what the validator below does, said in the document: no other properties than the
        # claim's fields, the option and the source's x_ extras (numbers or text)
        json_schema_extra={
            "additionalProperties": False,
            "patternProperties": {
                "^x_": {"anyOf": [{"type": "number"}, {"type": "string", "maxLength": TEXT_MAX}, {"type": "null"}]}
            },
        },
    )

    @model_validator(mode="after")
    def _extras_and_order(self) -> _Base:
        problems = []
        for name, value in (self.model_extra or {}).items():
            if name in schema.BY_NAME:
                problems.append((name, "is an outcome, not known when a claim is scored"))
            elif not name.startswith(schema.EXTRA_PREFIX):
                problems.append((name, "is not a field of a claim (see the OpenAPI document)"))
            elif not (value is None or isinstance(value, (int, float, str)) and not isinstance(value, bool)):
                problems.append((name, "must be a number or text"))
            elif isinstance(value, str) and len(value) > TEXT_MAX:
                problems.append((name, f"must be at most {TEXT_MAX} characters"))
        unknown = [n for n in getattr(self, ALLOW_MISSING, None) or () if not _is_field(n)]
        if unknown:
            problems.append((ALLOW_MISSING, f"names {', '.join(map(repr, unknown))}: not a field of a claim"))
        if len(self.model_extra or {}) > EXTRA_MAX:
            problems.append(("x_*", f"at most {EXTRA_MAX} extra fields"))
        for earlier, later in schema.DATE_ORDER:
            a, b = getattr(self, earlier, None), getattr(self, later, None)
            if a is not None and b is not None and pd.Timestamp(a) > pd.Timestamp(b):
                problems.append((later, f"must be on or after {earlier}"))
        if problems:
            raise ValueError(_PROBLEMS + repr(problems))
        return self


_PROBLEMS = "problems:"

ALLOW_MISSING = "allow_missing"
"""The per-request option naming fields to score without (see the module docstring)."""
_NOTICE = frozenset(f.name for f in schema.FIELDS if f.stage == "notice")


def _is_field(name: str) -> bool:
    return name in _NOTICE or name.startswith(schema.EXTRA_PREFIX)


_ALLOW_MISSING_FIELD = (
    Optional[list[Annotated[str, StringConstraints(strip_whitespace=False, max_length=ID_MAX)]]],  # noqa: UP045
    Field(
        None,
        max_length=EXTRA_MAX,
        description=(
            "Not a claim field: an option. Fields the champion uses that this claim does not send, "
            "to be scored as unknown (the answer lists them in scored_without). Without it, a claim "
            "lacking such a field is refused with 422 naming it; a field sent as null counts as sent. "
            "For inputs where any one field will do (named 'a|b|c' in errors), one of them is enough."
        ),
        examples=[["claimed_amount"]],
    ),
)

ClaimRequest: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "ClaimRequest",
    __base__=_Base,
    **{f.name: request_field(f) for f in schema.FIELDS if f.stage == "notice"},
    **{ALLOW_MISSING: _ALLOW_MISSING_FIELD},
)
_OPTIONS = {ALLOW_MISSING}
ClaimRequest.__doc__ = "A claim as known at first notice of loss (the canonical schema's notice fields)."


def parse_claim(payload: Any) -> pd.DataFrame:
    """A one-row canonical frame for a JSON object, or :class:`RequestError` naming each bad field."""
    return parse_claims([payload], prefix="")


def parse_claims(payloads: Any, prefix: str = "claims") -> pd.DataFrame:
    """Canonical frame for a list of JSON objects; field names in errors are ``claims[i].field``."""
    return schema.conform(pd.DataFrame(parse_records(payloads, prefix)))


def parse_records(payloads: Any, prefix: str = "claims") -> list[dict[str, Any]]:
    """Validated claims as dicts of Python values (the service's path, no DataFrame), or
    :class:`RequestError` naming each bad field; ``prefix=""`` for a single claim."""
    if not isinstance(payloads, list):
        raise RequestError([{"field": prefix or "body", "problem": "must be a list of claims"}])
    if not payloads:
        raise RequestError([{"field": prefix or "body", "problem": "must hold at least one claim"}])
    if len(payloads) > MAX_BATCH:
        raise RequestError([{"field": prefix, "problem": f"at most {MAX_BATCH} claims per request"}], status=413)
    rows, problems = [], []
    for i, payload in enumerate(payloads):
        where = f"{prefix}[{i}]." if prefix else ""
        if not isinstance(payload, dict):
            problems.append({"field": where.rstrip(".") or "body", "problem": "must be a JSON object"})
            continue
        try:
            claim = ClaimRequest.model_validate(payload)
        except ValidationError as exc:
            problems += [{"field": where + p["field"], "problem": p["problem"]} for p in _problems(exc)]
            continue
        rows.append(claim.model_dump(exclude_none=False, exclude=_OPTIONS))
    ids = [r["claim_id"] for r in rows]
    if len(set(ids)) != len(ids):
        problems.append(
            {"field": f"{prefix}.claim_id" if prefix else "claim_id", "problem": "must be unique in a batch"}
        )
    if problems:
        raise RequestError(problems)
    return rows


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        msg = str(err.get("msg", ""))
        if _PROBLEMS in msg:
            import ast

            for name, problem in ast.literal_eval(msg.split(_PROBLEMS, 1)[1].strip()):
                out.append({"field": name, "problem": problem})
            continue
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "constrained-"))]
        name = loc[0] if loc else "body"
        entry = {"field": name, "problem": _plain(err["type"], msg)}
        if entry not in out:
            out.append(entry)
    return out


def _plain(kind: str, msg: str) -> str:
    if kind == "missing":
        return "is required"
    return msg[0].lower() + msg[1:] if msg else kind


def parse_body(model: type[BaseModel], payload: Any) -> BaseModel:
    """``payload`` validated as ``model`` (a request body other than a claim's), or
    :class:`RequestError` (422) naming each bad field."""
    if not isinstance(payload, dict):
        raise RequestError([{"field": "body", "problem": "must be a JSON object"}])
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise RequestError(_problems(exc)) from None

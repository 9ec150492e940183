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

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Optional

import pandas as pd
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
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


SPACE = " \t\n\r\f\v"
"""What "starts or ends with a space" means, here and in the document's patterns alike (ASCII
white space: the server's and the document's regular expression engines agree on it)."""
_SPACE = r"[ \t\n\r\f\v]"
TRIMMED = r"^[^ \t\n\r\f\v](?:[\s\S]*[^ \t\n\r\f\v])?$"
"""An identifier or a category: not empty, no space at either end (refused rather than trimmed,
so that the document can say exactly what is accepted: a length limit on a trimmed value cannot be
written in JSON Schema)."""
YEARS = (1900, 2199)
_DAY = (
    r"(?:(?:19|2[01])[0-9]{2}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    r"|(?:19(?:0[48]|[2468][048]|[13579][26])|20(?:[02468][048]|[13579][26])|21(?:0[48]|[2468][048]|[13579][26]))-02-29)"
)
_TIME = (
    r"(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?"
)
DATETIME_PATTERN = f"^{_DAY}{_TIME}$"
"""A date (``YYYY-MM-DD``) or an ISO 8601 date-time (``T`` or a space; seconds, fractions and the
offset optional; a date-time with an offset is kept as the same moment in UTC, one without as
given), a real calendar day of the
years :data:`YEARS`. A pattern rather than JSON Schema's ``format``: a format cannot bound the
years, and this says exactly what the server reads."""
_DATETIME = re.compile(DATETIME_PATTERN)


def _date_text(value: Any) -> Any:
    """Dates come as text matching :data:`DATETIME_PATTERN` (pydantic would also read a number as
    seconds since 1970, and years the scoring cannot hold)."""
    if not isinstance(value, str):
        raise PydanticCustomError(
            "datetime_type",
            "must be a date (YYYY-MM-DD) or an ISO 8601 date-time as text, not {kind}",
            {"kind": _kind(value)},
        )
    if not _DATETIME.match(value):
        raise PydanticCustomError(
            "datetime_from_date_parsing",
            "must be a real date, YYYY-MM-DD or an ISO 8601 date-time, in the years {low} to {high}",
            {"low": YEARS[0], "high": YEARS[1]},
        )
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is not None:  # an offset given: the same moment in UTC, as every other date is kept
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _kind(value: Any) -> str:
    return "true/false" if isinstance(value, bool) else "text" if isinstance(value, str) else type(value).__name__


Identifier = Annotated[str, StringConstraints(max_length=ID_MAX, pattern=TRIMMED)]
"""An identifier in a request body (claim, policy, claimant...)."""
Category = Annotated[str, StringConstraints(max_length=TEXT_MAX, pattern=TRIMMED)]
DateTime = Annotated[
    datetime, BeforeValidator(_date_text), WithJsonSchema({"type": "string", "pattern": DATETIME_PATTERN})
]
"""A date or date-time in a request body: text only, in :data:`YEARS`."""


def _annotation(f: schema.Field) -> Any:
    if f.dtype == "id":
        return Identifier
    if f.dtype == "category":
        return Category
    if f.dtype == "float":
        # the bounds before the validator: after it, pydantic writes them as "ge"/"le", not JSON Schema
        return Annotated[float, Field(ge=f.min, le=f.max, allow_inf_nan=False), BeforeValidator(_number)]
    if f.dtype == "int":
        return Annotated[int, Field(ge=f.min, le=f.max), BeforeValidator(_number)]
    if f.dtype == "bool":
        return Annotated[bool, BeforeValidator(_boolean)]
    if f.dtype == "datetime":
        return DateTime
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


_NOTICE_NAMES = frozenset(f.name for f in schema.FIELDS if f.stage == "notice")


class _Base(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        # what the validator below does, said in the document: no other properties than the
        # claim's fields, the option and the source's x_ extras (numbers or text)
        json_schema_extra={
            "additionalProperties": False,
            # JSON Schema cannot compare two fields: the order of the dates is said here (and in words)
            "x-date-order": [list(pair) for pair in schema.DATE_ORDER if {*pair} <= _NOTICE_NAMES],
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
_NOTICE = _NOTICE_NAMES


def _is_field(name: str) -> bool:
    return name in _NOTICE or name.startswith(schema.EXTRA_PREFIX)


_ALLOW_MISSING_ITEM = {
    "type": "string",
    "maxLength": ID_MAX,
    "anyOf": [{"enum": sorted(_NOTICE)}, {"pattern": "^" + schema.EXTRA_PREFIX}],
}
_ALLOW_MISSING_FIELD = (
    Optional[list[Annotated[str, StringConstraints(max_length=ID_MAX), WithJsonSchema(_ALLOW_MISSING_ITEM)]]],  # noqa: UP045
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
ClaimRequest.__doc__ = (
    "A claim as known at first notice of loss (the canonical schema's notice fields). Dates are in order "
    "(x-date-order: each pair's first is on or before its second, where both are sent)."
)


def inputs_schema(inputs: Iterable[str]) -> dict[str, Any]:
    """What a served champion needs of a claim, for the document (JSON Schema as OpenAPI 3.0 reads it).

    A claim sends every input the champion uses (``a|b``: one of them), ``null`` meaning unknown; or
    it carries ``allow_missing`` naming those it lacks. The first is written as ``required``; the
    second's per-field rule ("each input sent or named in the list") cannot be: one disjunction per
    input is beyond what schema tools canonicalise (jsonschema-rs gives up at about 20 of them), so
    the document gives it in words and lists the inputs in ``x-inputs``.
    :meth:`serving.state.ServiceState.check_inputs` holds requests to this."""
    inputs = list(inputs)
    sends_all: dict[str, Any] = {"required": sorted(k for k in inputs if "|" not in k)}
    groups = [{"anyOf": [{"required": [n]} for n in k.split("|")]} for k in inputs if "|" in k]
    if groups:
        sends_all["allOf"] = groups
    return {
        "anyOf": [sends_all, {"required": [ALLOW_MISSING], "properties": {ALLOW_MISSING: {"type": "array"}}}],
        "x-inputs": inputs,
        "description": (
            "Every input the served champion uses (x-inputs; 'a|b': either) is sent, null meaning "
            "unknown, or named in allow_missing: a claim lacking one otherwise is refused (422)."
        ),
    }


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
        # 422 like any other broken rule of the document (maxItems); 413 is for a body over its byte limit
        raise RequestError([{"field": prefix, "problem": f"at most {MAX_BATCH} claims per request"}])
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
    if kind == "string_pattern_mismatch":
        return "must not be empty or start or end with a space"
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

"""What investigators and claim systems do with referred claims, behind both the JSON API and the pages.

:class:`Casework` joins the case store (:mod:`serving.cases`), the history store and the decision
log: referred decisions open cases; a disposition closes a case and becomes the claim's label in the
history store at the time it was decided (so later claims' features see it, earlier ones never do,
and ``claimscore train --source history`` learns from it); outcomes sent by claim systems
(``POST /outcomes``) go to the history store the same way; a case's page or JSON gathers the
claim's facts, its score history and its audit trail, and reading it is itself an audit event.

Request bodies are validated here (:class:`DispositionBody`, :class:`OutcomeBody`) and refused with
the same 4xx bodies as ``/score`` (:class:`serving.request.RequestError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model

from features import schema
from features.config import Settings
from features.store.history import HistoryStore, UnknownClaimError
from serving.cases import (
    DISPOSITIONS,
    MAX_PAGE,
    NEEDS_REASON,
    QUEUES,
    SORTS,
    STATUSES,
    AuditEvent,
    Case,
    CaseNotFound,
    CasePage,
    CaseStore,
    Referral,
    outcome_for,
)
from serving.decision_log import Decision, DecisionLog
from serving.request import ID_MAX, SPACE, Identifier, RequestError, parse_body, request_field

DECISION_FIELDS = ("decided_at", "route", "scores", "rules", "reasons", "versions")
"""What a claim's score history shows of each decision."""
NOTE_MAX = 4_000
REASON_MAX = 1_000


def _trim(value: str) -> str:
    """Free text is kept without the spaces at its ends; its length limit applies to what was sent
    (as the document says: JSON Schema cannot limit a trimmed length)."""
    return value.strip(SPACE)


_Text = Annotated[str, StringConstraints(max_length=NOTE_MAX), AfterValidator(_trim)]
_HAS_TEXT = "[^ \t\n\r\f\v]"


class DispositionBody(BaseModel):
    """What an investigation found: closes the case; ``confirmed_fraud``, ``not_proven`` and
    ``not_fraud`` become the claim's fraud label (``duplicate`` and ``withdrawn`` are no label)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"properties": {"disposition": {"enum": [d for d in DISPOSITIONS if d not in NEEDS_REASON]}}},
                {"required": ["reason"], "properties": {"reason": {"type": "string", "pattern": _HAS_TEXT}}},
            ]
        },
    )
    disposition: Literal[DISPOSITIONS]  # type: ignore[valid-type]
    reason: Annotated[str, StringConstraints(max_length=REASON_MAX), AfterValidator(_trim)] | None = Field(
        None, description="Why: required for not_fraud (why the referral was a false positive)."
    )
    note: _Text | None = Field(None, description="A note for the case's timeline.")
    amount_saved: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] | None = Field(
        None, description="Claim cost avoided by the investigation."
    )
    version: Annotated[int, Field(ge=1)] | None = Field(
        None, description="The case version read (GET /cases/{claim_id}): refused with 409 if it changed since."
    )


BY_INVESTIGATION = ("investigated", "fraud_confirmed")
"""Outcome fields a claim system does not send as such: ``investigation_result`` sets them."""
_OUTCOMES = [f.name for f in schema.FIELDS if f.stage == "outcome" and f.name not in BY_INVESTIGATION]
_RESULT, _CLOSED = "investigation_result", "investigation_closed_date"
_NOT_NULL = {"not": {"type": "null"}}


class _Forbid(BaseModel):
    # what :meth:`Casework.record_outcome` refuses, said in the document: a body naming no outcome,
    # and a closing date without the investigation's result
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "allOf": [
                {
                    "anyOf": [
                        *({"required": [f]} for f in _OUTCOMES if f != _CLOSED),
                        {"required": [_RESULT], "properties": {_RESULT: _NOT_NULL}},
                    ]
                },
                {
                    "anyOf": [
                        {"not": {"required": [_CLOSED]}},
                        {"properties": {_CLOSED: {"type": "null"}}},
                        {"required": [_RESULT], "properties": {_RESULT: _NOT_NULL}},
                    ]
                },
            ]
        },
    )


OutcomeBody: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "OutcomeBody",
    __base__=_Forbid,
    claim_id=(Identifier, ...),
    **{name: request_field(schema.BY_NAME[name]) for name in _OUTCOMES},
    investigation_result=(
        Literal[DISPOSITIONS] | None,  # type: ignore[valid-type]
        Field(None, description="What an investigation outside the workbench found (as a disposition)."),
    ),
)
OutcomeBody.__doc__ = (
    "Outcomes a claim system learned after scoring (the schema's outcome fields); every field given is "
    "recorded, the others kept. investigation_closed_date goes with investigation_result (default: now)."
)


class ListQuery(BaseModel):
    """``GET /cases`` query parameters."""

    model_config = ConfigDict(extra="forbid")
    queue: Literal[QUEUES] | None = None  # type: ignore[valid-type]
    status: list[Literal[STATUSES]] | None = None  # type: ignore[valid-type]
    assignee: Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX)] | None = None
    unassigned: bool = False
    region: Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX)] | None = None
    min_score: Annotated[float, Field(ge=0, le=1)] | None = None
    min_amount: Annotated[float, Field(ge=0)] | None = None
    max_amount: Annotated[float, Field(ge=0)] | None = None
    older_than_days: Annotated[float, Field(ge=0, le=36_500)] | None = None
    overdue: bool | None = None
    sort: Literal[tuple(k for key in SORTS for k in (key, f"-{key}"))] = "-score"  # type: ignore[valid-type]
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 50
    offset: Annotated[int, Field(ge=0, le=1_000_000_000)] = 0


def parse_list_query(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters (a multi-dict's items; ``status`` may repeat or be comma-separated) as
    :meth:`serving.cases.CaseStore.list_cases` keyword arguments, or :class:`RequestError`.

    An empty value (``?max_amount=``) is refused, naming the parameter: the document says what each
    parameter holds and "no filter" is the parameter left out (the workbench's forms drop their
    blank fields before they ask)."""
    values: dict[str, Any] = {}
    blank = []
    for key, value in params.items() if isinstance(params, Mapping) else params:
        if value == "":
            blank.append({"field": key, "problem": "is empty: leave the parameter out for no filter"})
        elif key == "status":
            values.setdefault("status", []).extend(str(value).split(","))
        else:
            values[key] = value
    if blank:
        raise RequestError(blank)
    return parse_body(ListQuery, values).model_dump(exclude_none=True)


def case_json(case: Case) -> dict[str, Any]:
    out = asdict(case)
    for key in ("opened_at", "due_at", "closed_at"):
        out[key] = None if out[key] is None else out[key].isoformat()
    return out


def event_json(event: AuditEvent) -> dict[str, Any]:
    out = asdict(event)
    out["at"] = event.at.isoformat()
    return out


class Casework:
    def __init__(self, cases: CaseStore, history: HistoryStore, log: DecisionLog):
        self.cases, self.history, self.log = cases, history, log

    @classmethod
    def from_settings(cls, settings: Settings, history: HistoryStore, log: DecisionLog) -> Casework:
        sla = {"siu_referral": settings.siu_sla_days, "specialist": settings.specialist_sla_days}
        return cls(CaseStore(settings.cases_url, sla_days=sla, checkpoint=True), history, log)

    # --- from scoring ---------------------------------------------------------------------------

    def refer(self, decisions: Sequence[Decision], records: Sequence[Mapping[str, Any]]) -> list[Case]:
        """Open a case for each decision routed to a queue (called once the decisions are logged)."""
        referrals = [
            Referral.of_decision(d, r.get("region"), r.get("claimed_amount"))
            for d, r in zip(decisions, records)
            if d.route in QUEUES
        ]
        return self.cases.open_cases(referrals) if referrals else []

    # --- investigators --------------------------------------------------------------------------

    def list(self, params: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> CasePage:
        return self.cases.list_cases(**parse_list_query(params))

    def case(self, claim_id: str, user: str, what: str = "case", features: bool = False) -> dict[str, Any]:
        """A claim's case, facts, score history and audit trail; the reading is recorded (``what``:
        which page or call read it). ``features``: each decision with the feature values it saw."""
        case = self.cases.get(claim_id)
        self.cases.record_view(user, claim_id, what)
        return {
            "case": case_json(case),
            "claim": self.facts(claim_id),
            "decisions": self.decisions(claim_id, features),
            "trail": [event_json(e) for e in self.cases.trail(claim_id)],
        }

    def facts(self, claim_id: str) -> dict[str, Any] | None:
        """The claim as the history store holds it (identifiers as their keyed hashes), JSON-ready:
        what was known at notice and the outcomes since, never a synthetic source's ground truth."""
        row = self.history.claim(claim_id)
        if row is None:
            return None
        return {k: _json_value(v) for k, v in row.items() if schema.BY_NAME[k].stage != "truth"}

    def decisions(self, claim_id: str, features: bool = False) -> list[dict[str, Any]]:
        """Every decision on the claim, oldest first (its score history)."""
        keys = (*DECISION_FIELDS, "features") if features else DECISION_FIELDS
        return [{k: d[k] for k in keys} for d in self.log.read(claim_id=claim_id)]

    def decide(self, claim_id: str, body: Any, user: str) -> Case:
        """Record a disposition (a ``POST /cases/{claim_id}/disposition`` body), then the label it
        amounts to in the history store, at the time it was decided."""
        b = parse_body(DispositionBody, body)
        case = self.cases.record_disposition(claim_id, user, b.disposition, b.reason, b.amount_saved, b.note, b.version)
        self._label(case.claim_id, outcome_for(b.disposition, case.closed_at), user)
        return case

    def reopen(self, claim_id: str, user: str, reason: str | None = None, version: int | None = None) -> Case:
        """Reopen a closed case; its label is withdrawn from the history store until decided again."""
        case = self.cases.reopen(claim_id, user, reason, version)
        self._label(case.claim_id, {"fraud_confirmed": None, "investigation_closed_date": None}, user)
        return case

    def _label(self, claim_id: str, outcome: dict[str, object], user: str) -> None:
        if not outcome:
            return
        try:
            self.history.record_outcome(claim_id, **outcome)
        except UnknownClaimError:  # a case whose claim was removed from the history: nothing to label
            self.cases.add_note(claim_id, user, "label not recorded: the claim is no longer in the history store")

    # --- claim systems --------------------------------------------------------------------------

    def record_outcome(self, body: Any, user: str) -> dict[str, Any]:
        """Record a ``POST /outcomes`` body in the history store; what was recorded."""
        b = parse_body(OutcomeBody, body)
        given = b.model_dump(exclude_unset=True)
        claim_id = given.pop("claim_id")
        result = given.pop("investigation_result", None)
        closed = given.pop("investigation_closed_date", None)
        if closed is not None and result is None:
            raise RequestError(
                [{"field": "investigation_closed_date", "problem": "is only meaningful with investigation_result"}]
            )
        if result is not None:
            given |= outcome_for(result, closed or datetime.now(UTC)) or {"investigated": True}
        if not given:
            outcomes = ", ".join(f for f in OutcomeBody.model_fields if f != "claim_id")
            raise RequestError([{"field": "body", "problem": f"names no outcome (send one of {outcomes})"}])
        try:
            self.history.record_outcome(claim_id, **given)
        except UnknownClaimError:
            raise RequestError(
                [{"field": "claim_id", "problem": f"'{claim_id}' is not in the history store (score it first)"}],
                status=404,
            ) from None
        recorded = {k: _json_value(v) for k, v in given.items()}
        try:
            note = ", ".join(f"{k}={v}" for k, v in recorded.items())
            self.cases.add_note(claim_id, user, f"outcome recorded: {note}")
        except CaseNotFound:
            pass  # a claim that was never referred has no case to note it on
        return {"claim_id": claim_id, "recorded": recorded}


def _json_value(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, float) and v != v:
        return None
    return v.item() if hasattr(v, "item") else v

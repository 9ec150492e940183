"""Schemathesis hooks for the two rules of a claim that JSON Schema cannot hold, read from the
service's own document (``SCHEMATHESIS_HOOKS=bench.contract_hooks``; used by ``make fuzz`` and
tests/serving/test_contract.py).

- ``x-date-order``: pairs of date fields where the first is on or before the second. JSON Schema
  cannot compare two values; a claim with its dates out of order is refused (422).
- ``x-inputs``: with ``allow_missing``, each input the champion uses is sent or named in the list.
  The document says so in words (one disjunction per input is beyond schema tools).
- ``x-unique-by``: a batch's claims have distinct ``claim_id`` values (``uniqueItems`` compares
  whole items).

Schemathesis draws bodies from the schema alone, so a body it calls valid may break these rules.
The ``before_call`` hook puts such a body right before it is sent: the dates of an ordered pair are swapped into
order, an input neither sent nor named is added to ``allow_missing``, and a repeated ``claim_id`` in a batch
gets a suffix. It changes nothing the
schema constrains (a value of the wrong type, an ``allow_missing`` that is not a list of text are
left as drawn), so a body drawn to break the schema still breaks it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from graphlib import TopologicalSorter
from typing import Any

import schemathesis

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _schemas(operation) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The operation's claim schema (None for another body) and its batch's array schema."""
    body = next(iter(operation.body), None) if operation is not None else None
    if body is None:
        return None, {}
    raw, batch = body.raw_schema, {}
    if "claims" in raw.get("properties", {}):
        batch = raw["properties"]["claims"]
        raw = batch.get("items", {})
    return (raw if "x-date-order" in raw else None), batch


def unique(claims: list[Any], field: str, limit: int) -> None:
    """Give each repeated ``field`` of ``claims`` a suffix (in place), within ``limit`` characters."""
    seen: set[Any] = set()
    for i, claim in enumerate(claims):
        if not isinstance(claim, dict) or not isinstance(claim.get(field), str):
            continue
        value = claim[field]
        if value in seen:
            suffix = f"-{i}"
            value = value[: limit - len(suffix)] + suffix
            claim[field] = value
        seen.add(value)


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not _DATE.match(value):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def in_order(claim: dict[str, Any], pairs: list[list[str]]) -> None:
    """Swap the dates of ``claim`` into the order ``pairs`` asks (in place)."""
    graph: dict[str, set[str]] = {}
    for earlier, later in pairs:
        graph.setdefault(later, set()).add(earlier)
        graph.setdefault(earlier, set())
    fields = [f for f in TopologicalSorter(graph).static_order() if _moment(claim.get(f)) is not None]
    values = sorted((claim[f] for f in fields), key=_moment)
    for field, value in zip(fields, values, strict=True):
        claim[field] = value


def with_inputs(claim: dict[str, Any], inputs: list[str], limit: int | None) -> None:
    """Name in ``allow_missing`` each input ``claim`` lacks, when it carries the option as a list."""
    listed = claim.get("allow_missing")
    if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
        return
    for key in inputs:
        names = key.split("|")
        if not any(n in claim for n in names) and not any(n in listed for n in names):
            if limit is not None and len(listed) >= limit:
                return
            listed.append(names[0])


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    """Every phase's cases pass here (``map_body`` is not applied to the coverage phase's)."""
    case.body = right(case.operation, case.body)


def right(operation, body):
    """``body`` with the claims' dates in order and their lacking inputs named (see the module)."""
    schema, batch = _schemas(operation)
    if schema is None or not isinstance(body, dict):
        return body
    claims = body["claims"] if isinstance(body.get("claims"), list) else [body]
    if batch.get("x-unique-by"):
        field = batch["x-unique-by"]
        unique(claims, field, schema["properties"][field].get("maxLength", 128))
    limit = schema.get("properties", {}).get("allow_missing", {})
    limit = next((b.get("maxItems") for b in limit.get("anyOf", [limit]) if b.get("maxItems")), None)
    for claim in claims:
        if isinstance(claim, dict):
            in_order(claim, schema["x-date-order"])
            with_inputs(claim, schema.get("x-inputs", []), limit)
    return body

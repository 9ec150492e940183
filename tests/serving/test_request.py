"""Scoring requests: derived from the schema; every kind of bad request names the field and why."""

from __future__ import annotations

import pandas as pd
import pytest

from features import schema
from serving.request import MAX_BATCH, RequestError, parse_claim, parse_claims


def test_a_good_claim_becomes_a_canonical_row(good_claim):
    frame = parse_claim(good_claim)
    assert list(frame.columns[: len(schema.COLUMNS)]) == list(schema.COLUMNS)
    assert frame.loc[0, "claimed_amount"] == 4800.5
    assert frame.loc[0, "report_date"] == pd.Timestamp("2024-03-02 10:30")
    assert frame.loc[0, "x_driver_rating"] == 3
    assert pd.isna(frame.loc[0, "fraud_confirmed"])


def test_unknown_category_values_are_accepted(good_claim):
    frame = parse_claim({**good_claim, "channel": "carrier pigeon", "incident_type": "meteor"})
    assert frame.loc[0, "channel"] == "carrier pigeon"


def test_each_kind_of_bad_claim_names_the_field(bad_claim):
    with pytest.raises(RequestError) as exc:
        parse_claim(bad_claim.payload)
    problems = exc.value.problems
    hit = [p for p in problems if p["field"] == bad_claim.field]
    assert hit, problems
    assert bad_claim.words.lower() in hit[0]["problem"].lower(), hit


def test_not_an_object_and_batches_are_checked(good_claim):
    for payload in ([good_claim], "claim", 5, None):
        with pytest.raises(RequestError, match="JSON object"):
            parse_claim(payload)
    with pytest.raises(RequestError, match="list of claims"):
        parse_claims({"claim": good_claim})
    with pytest.raises(RequestError, match="at least one"):
        parse_claims([])
    with pytest.raises(RequestError) as exc:
        parse_claims([good_claim] * (MAX_BATCH + 1))
    assert exc.value.status == 422 and "at most" in str(exc.value)
    with pytest.raises(RequestError) as exc:
        parse_claims([good_claim, {**good_claim, "claimed_amount": -1}, good_claim])
    fields = {p["field"] for p in exc.value.problems}
    assert "claims[1].claimed_amount" in fields and "claims.claim_id" in fields


def test_all_problems_of_a_claim_are_listed_at_once(good_claim):
    del good_claim["claim_id"]
    with pytest.raises(RequestError) as exc:
        parse_claim({**good_claim, "claimed_amount": -1, "claimant_age": 2})
    assert {p["field"] for p in exc.value.problems} >= {"claim_id", "claimed_amount", "claimant_age"}


def test_the_document_says_what_the_server_refuses_and_accepts():
    """The OpenAPI document's claim schema allows no property the server refuses: only the claim's
    fields, the option and x_ extras (numbers or text)."""
    from serving.request import ClaimRequest

    doc = ClaimRequest.model_json_schema()
    assert doc["additionalProperties"] is False and set(doc["patternProperties"]) == {"^x_"}
    assert doc["properties"]["claimant_tenure_years"]["anyOf"][0]["type"] == "number"

"""Scoring requests: derived from the schema; every kind of bad request names the field and why."""

from __future__ import annotations

import pandas as pd
import pytest

from features import schema
from serving.request import MAX_BATCH, RequestError, parse_claim, parse_claims

GOOD = {
    "claim_id": "C-1", "policy_id": "P-1", "claimant_id": "K-1", "line_of_business": "motor",
    "incident_date": "2024-03-01T08:00:00", "report_date": "2024-03-02T10:30:00",
    "policy_start_date": "2023-06-01", "policy_end_date": "2024-06-01", "sum_insured": 20000,
    "deductible": 250, "claimed_amount": 4800.5, "incident_type": "collision", "incident_severity": "small",
    "channel": "web", "region": "north", "fault": "third_party", "number_of_parties": 2, "injury_count": 0,
    "police_report": True, "witness_present": False, "claimant_age": 41, "phone": "a1b2c3",
    "payee_account": "acct-9", "payee_type": "claimant", "x_driver_rating": 3,
}


def test_a_good_claim_becomes_a_canonical_row():
    frame = parse_claim(GOOD)
    assert list(frame.columns[: len(schema.COLUMNS)]) == list(schema.COLUMNS)
    assert frame.loc[0, "claimed_amount"] == 4800.5
    assert frame.loc[0, "report_date"] == pd.Timestamp("2024-03-02 10:30")
    assert frame.loc[0, "x_driver_rating"] == 3
    assert pd.isna(frame.loc[0, "fraud_confirmed"])


def test_unknown_category_values_are_accepted():
    frame = parse_claim({**GOOD, "channel": "carrier pigeon", "incident_type": "meteor"})
    assert frame.loc[0, "channel"] == "carrier pigeon"


def _without(key):
    return {k: v for k, v in GOOD.items() if k != key}


BAD = [
    ("missing claim_id", _without("claim_id"), "claim_id", "required"),
    ("missing report_date", _without("report_date"), "report_date", "required"),
    ("missing incident_date", _without("incident_date"), "incident_date", "required"),
    ("missing line_of_business", _without("line_of_business"), "line_of_business", "required"),
    ("null claim_id", {**GOOD, "claim_id": None}, "claim_id", ""),
    ("empty claim_id", {**GOOD, "claim_id": "  "}, "claim_id", "at least 1"),
    ("overlong claim_id", {**GOOD, "claim_id": "x" * 500}, "claim_id", "at most 128"),
    ("claim_id a number list", {**GOOD, "claim_id": [1, 2]}, "claim_id", ""),
    ("amount not a number", {**GOOD, "claimed_amount": "lots"}, "claimed_amount", "number"),
    ("negative amount", {**GOOD, "claimed_amount": -5}, "claimed_amount", "greater than or equal"),
    ("amount out of range", {**GOOD, "claimed_amount": 1e12}, "claimed_amount", "less than or equal"),
    ("amount infinite", {**GOOD, "claimed_amount": "inf"}, "claimed_amount", "finite"),
    ("amount NaN", {**GOOD, "claimed_amount": "NaN"}, "claimed_amount", "finite"),
    ("amount boolean object", {**GOOD, "claimed_amount": {"v": 1}}, "claimed_amount", ""),
    ("negative sum insured", {**GOOD, "sum_insured": -1}, "sum_insured", ""),
    ("negative deductible", {**GOOD, "deductible": -250}, "deductible", ""),
    ("parties zero", {**GOOD, "number_of_parties": 0}, "number_of_parties", "greater than or equal"),
    ("parties fractional", {**GOOD, "number_of_parties": 2.5}, "number_of_parties", ""),
    ("parties text", {**GOOD, "number_of_parties": "two"}, "number_of_parties", ""),
    ("injuries negative", {**GOOD, "injury_count": -1}, "injury_count", ""),
    ("age too low", {**GOOD, "claimant_age": 3}, "claimant_age", ""),
    ("age too high", {**GOOD, "claimant_age": 300}, "claimant_age", ""),
    ("police report not boolean", {**GOOD, "police_report": "perhaps"}, "police_report", "bool"),
    ("bad incident date", {**GOOD, "incident_date": "2024-13-45"}, "incident_date", ""),
    ("report date a number list", {**GOOD, "report_date": [2024]}, "report_date", ""),
    ("report before incident", {**GOOD, "report_date": "2024-02-01"}, "report_date", "on or after incident_date"),
    ("incident before policy start", {**GOOD, "policy_start_date": "2024-05-01", "policy_end_date": "2025-01-01"},
     "incident_date", "on or after policy_start_date"),
    ("policy end before start", {**GOOD, "policy_end_date": "2023-01-01"}, "policy_end_date", "policy_start_date"),
    ("outcome field", {**GOOD, "fraud_confirmed": True}, "fraud_confirmed", "outcome"),
    ("settled amount sent", {**GOOD, "settled_amount": 10}, "settled_amount", "outcome"),
    ("unknown field", {**GOOD, "claim_amout": 10}, "claim_amout", "not a field"),
    ("extra of a nested type", {**GOOD, "x_driver_rating": {"a": 1}}, "x_driver_rating", "number or text"),
    ("extra text too long", {**GOOD, "x_band": "y" * 200}, "x_band", "at most"),
    ("overlong category", {**GOOD, "region": "r" * 100}, "region", "at most 64"),
    ("channel a number", {**GOOD, "channel": 5}, "channel", ""),
]


@pytest.mark.parametrize("name, payload, field, words", BAD, ids=[b[0] for b in BAD])
def test_each_kind_of_bad_claim_names_the_field(name, payload, field, words):
    with pytest.raises(RequestError) as exc:
        parse_claim(payload)
    problems = exc.value.problems
    hit = [p for p in problems if p["field"] == field]
    assert hit, problems
    assert words.lower() in hit[0]["problem"].lower(), hit


def test_not_an_object_and_batches_are_checked():
    for payload in ([GOOD], "claim", 5, None):
        with pytest.raises(RequestError, match="JSON object"):
            parse_claim(payload)
    with pytest.raises(RequestError, match="list of claims"):
        parse_claims({"claim": GOOD})
    with pytest.raises(RequestError, match="at least one"):
        parse_claims([])
    with pytest.raises(RequestError) as exc:
        parse_claims([GOOD] * (MAX_BATCH + 1))
    assert exc.value.status == 413
    with pytest.raises(RequestError) as exc:
        parse_claims([GOOD, {**GOOD, "claimed_amount": -1}, GOOD])
    fields = {p["field"] for p in exc.value.problems}
    assert "claims[1].claimed_amount" in fields and "claims.claim_id" in fields


def test_all_problems_of_a_claim_are_listed_at_once():
    with pytest.raises(RequestError) as exc:
        parse_claim({**_without("claim_id"), "claimed_amount": -1, "claimant_age": 2})
    assert {p["field"] for p in exc.value.problems} >= {"claim_id", "claimed_amount", "claimant_age"}

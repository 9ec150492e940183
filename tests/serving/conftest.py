"""The scoring-request examples shared by the request tests and the HTTP tests.

Fixtures: ``good_claim`` (a fresh copy of a valid claim) and ``bad_claims`` (every kind of bad claim);
(``champion``, ``served_home`` and ``demo_mode`` are in tests/conftest.py.)
``GOOD`` sends every field a champion trained on the synthetic claims uses (the service refuses a
claim lacking one); a field the claim does not know is sent as null, as a claim system would.
A test that takes ``bad_claim`` or ``malformed_body`` runs once per example, named by it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest

GOOD: dict[str, Any] = {
    "claim_id": "C-1",
    "policy_id": "P-1",
    "claimant_id": "K-1",
    "line_of_business": "motor",
    "incident_date": "2024-03-01T08:00:00",
    "report_date": "2024-03-02T10:30:00",
    "policy_start_date": "2023-06-01",
    "policy_end_date": "2024-06-01",
    "cover_increase_date": None,
    "cover_type": "comprehensive",
    "annual_premium": 640.0,
    "sum_insured": 20000,
    "deductible": 250,
    "claimed_amount": 4800.5,
    "incident_type": "collision",
    "incident_severity": "small",
    "channel": "web",
    "region": "north",
    "fault": "third_party",
    "number_of_parties": 2,
    "injury_count": 0,
    "police_report": True,
    "witness_present": False,
    "claimant_age": 41,
    "claimant_tenure_years": 3.5,
    "vehicle_make": "toyota",
    "vehicle_category": "sedan",
    "vehicle_age_years": 6.0,
    "provider_id": "V-1",
    "provider_type": "repairer",
    "phone": "a1b2c3",
    "address": "12 Example Street, Hobart TAS 7000",
    "payee_account": "acct-9",
    "payee_type": "claimant",
    "x_driver_rating": 3,
}


class BadClaim(NamedTuple):
    name: str
    payload: Any
    field: str
    """The field the answer must name."""
    words: str
    """Words the problem with that field must contain ("": any problem)."""


class MalformedBody(NamedTuple):
    name: str
    body: bytes
    field: str


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


BAD_CLAIMS = [
    BadClaim(*example)
    for example in [
        ("missing claim_id", _without("claim_id"), "claim_id", "required"),
        ("missing report_date", _without("report_date"), "report_date", "required"),
        ("missing incident_date", _without("incident_date"), "incident_date", "required"),
        ("missing line_of_business", _without("line_of_business"), "line_of_business", "required"),
        ("null claim_id", {**GOOD, "claim_id": None}, "claim_id", ""),
        ("empty claim_id", {**GOOD, "claim_id": "  "}, "claim_id", "empty"),
        ("overlong claim_id", {**GOOD, "claim_id": "x" * 500}, "claim_id", "at most 128"),
        ("claim_id a number list", {**GOOD, "claim_id": [1, 2]}, "claim_id", ""),
        ("amount not a number", {**GOOD, "claimed_amount": "lots"}, "claimed_amount", "number"),
        ("negative amount", {**GOOD, "claimed_amount": -5}, "claimed_amount", "greater than or equal"),
        ("amount out of range", {**GOOD, "claimed_amount": 1e12}, "claimed_amount", "less than or equal"),
        ("amount infinite", {**GOOD, "claimed_amount": "inf"}, "claimed_amount", "a number, not text"),
        ("amount NaN", {**GOOD, "claimed_amount": "NaN"}, "claimed_amount", "a number, not text"),
        ("amount a numeral in text", {**GOOD, "claimed_amount": "4800"}, "claimed_amount", "a number, not text"),
        ("tenure false", {**GOOD, "claimant_tenure_years": False}, "claimant_tenure_years", "not true/false"),
        ("parties true", {**GOOD, "number_of_parties": True}, "number_of_parties", "not true/false"),
        ("police report one", {**GOOD, "police_report": 1}, "police_report", "true or false"),
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
        (
            "incident before policy start",
            {**GOOD, "policy_start_date": "2024-05-01", "policy_end_date": "2025-01-01"},
            "incident_date",
            "on or after policy_start_date",
        ),
        ("policy end before start", {**GOOD, "policy_end_date": "2023-01-01"}, "policy_end_date", "policy_start_date"),
        ("outcome field", {**GOOD, "fraud_confirmed": True}, "fraud_confirmed", "outcome"),
        ("settled amount sent", {**GOOD, "settled_amount": 10}, "settled_amount", "outcome"),
        ("unknown field", {**GOOD, "claim_amout": 10}, "claim_amout", "not a field"),
        ("extra of a nested type", {**GOOD, "x_driver_rating": {"a": 1}}, "x_driver_rating", "number or text"),
        ("extra text too long", {**GOOD, "x_band": "y" * 200}, "x_band", "at most"),
        ("overlong category", {**GOOD, "region": "r" * 100}, "region", "at most 64"),
        ("channel a number", {**GOOD, "channel": 5}, "channel", ""),
    ]
]

MALFORMED_BODIES = [
    MalformedBody(*example)
    for example in [
        ("not json", b"{claim", "body"),
        ("empty body", b"", "body"),
        ("json array", json.dumps([GOOD]).encode(), "body"),
        ("json string", b'"claim"', "body"),
        ("oversized", json.dumps({**GOOD, "x_pad": "p" * 70_000}).encode(), "body"),
    ]
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for arg, examples in (("bad_claim", BAD_CLAIMS), ("malformed_body", MALFORMED_BODIES)):
        if arg in metafunc.fixturenames:
            metafunc.parametrize(arg, copy.deepcopy(examples), ids=[e.name for e in examples])


@pytest.fixture
def good_claim() -> dict[str, Any]:
    """A valid claim (a fresh copy: change it freely)."""
    return copy.deepcopy(GOOD)


@pytest.fixture
def bad_claims() -> list[BadClaim]:
    """Every kind of bad claim, with the field its answer must name."""
    return copy.deepcopy(BAD_CLAIMS)


# --- a real browser for the pages ----------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    from pipelines.screenshots import CHROMIUM, CHROMIUM_ARGS

    # not a skip: the browser tests must run wherever the suite runs (make test installs chromium)
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is absent: run make browser (Debian's chromium package)"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def visit(browser, server):
    """A fresh browser context on the module's ``server`` (its own cookies)."""
    from tests.serving.browser import Visit

    v = Visit(browser, server)
    yield v
    v.context.close()

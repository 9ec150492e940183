"""Contract: the OpenAPI document says what the server does. Schemathesis, driven by the live
service's own document with every check it has, finds no disagreement on any endpoint (the
workbench's JSON included); and the rules found by it before are held one by one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from pipelines.local_server import Server
from serving.keys import KeyStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_mode")]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def home(served_home):
    return served_home("contract")


@pytest.fixture(scope="module")
def server(home):
    srv = Server(home)
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def admin(home) -> str:
    return KeyStore(home / "keys.json").create("admin", "contract")[0]


@pytest.fixture(scope="module")
def document(server) -> dict:
    status, doc = server.call("GET", "/docs.json")
    assert status == 200
    return doc


def _claim_schema(document: dict) -> dict:
    return document["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def test_schemathesis_finds_no_disagreement_with_every_check(server, admin, tmp_path):
    schemathesis = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"http://127.0.0.1:{server.port}/docs.json",
            "-H",
            f"Authorization: Bearer {admin}",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "17",
            "--warnings",
            "off",
            "--report",
            "junit",
            "--report-junit-path",
            str(tmp_path / "junit.xml"),
        ],
        env={**os.environ, "SCHEMATHESIS_HOOKS": "bench.contract_hooks", "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "12 selected / 12 total" in run.stdout  # every operation, /cases and /outcomes included
    assert "No issues found" in run.stdout
    assert "Internal Server Error" not in (Path(server.home) / "server.log").read_text()


def test_the_document_says_what_the_champion_needs(document, home):
    from features.config import load_settings
    from serving.model import registry
    from serving.model.scorer import Scorer

    claim = _claim_schema(document)
    settings = load_settings(env={"CLAIMSCORE_HOME": str(home), "CLAIMSCORE_DEMO": "1"})
    registry.configure(settings)
    scorer = Scorer.from_registry(settings)
    assert sorted(claim["x-inputs"]) == sorted(scorer.inputs)
    sends_all, listed = claim["anyOf"]
    assert set(sends_all["required"]) == {k for k in scorer.inputs if "|" not in k}
    assert listed["properties"]["allow_missing"]["type"] == "array"
    assert claim["additionalProperties"] is False and list(claim["patternProperties"]) == ["^x_"]
    batch = document["paths"]["/score_batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert batch["properties"]["claims"]["x-unique-by"] == "claim_id"


# what the document refuses, the server refuses, naming the field; and what it allows, the server takes
DISAGREEMENTS = [
    ("a boolean for a number", {"claimant_tenure_years": False}, "claimant_tenure_years"),
    ("text for a number", {"claimed_amount": "1200"}, "claimed_amount"),
    ("a number for a date", {"cover_increase_date": 0}, "cover_increase_date"),
    ("a date that does not exist", {"incident_date": "2023-02-29"}, "incident_date"),
    ("a year beyond the scoring's", {"policy_end_date": "2300-01-01"}, "policy_end_date"),
    ("an identifier ending in a space", {"claim_id": "C-1 "}, "claim_id"),
    ("an empty category", {"channel": ""}, "channel"),
    ("an unknown field", {"claimant_nickname": "Al"}, "claimant_nickname"),
    ("allow_missing naming no field", {"allow_missing": ["claimed_amnt"]}, "allow_missing"),
]


@pytest.mark.parametrize("case, change, field", DISAGREEMENTS, ids=[d[0] for d in DISAGREEMENTS])
def test_what_the_document_refuses_the_server_refuses(server, document, admin, good_claim, case, change, field):
    body = {**good_claim, **change}
    validator = jsonschema.Draft7Validator(_claim_schema(document))
    assert not validator.is_valid(body), f"the document allows {case}"
    status, answer = server.call("POST", "/score", body, admin)
    assert status == 422, answer
    assert field in {e["field"] for e in answer["errors"]}


def test_what_the_document_allows_the_server_scores(server, document, admin, good_claim):
    validator = jsonschema.Draft7Validator(_claim_schema(document))
    allowed = [
        {**good_claim, "claim_id": "K-1", "report_date": "2024-03-02T09:15:00+01:00"},  # an offset: kept in UTC
        {**good_claim, "claim_id": "K-2", "claimed_amount": None},  # null: unknown, said so
        {k: v for k, v in good_claim.items() if k != "claimed_amount"}
        | {"claim_id": "K-3", "allow_missing": ["claimed_amount"]},
        {**good_claim, "claim_id": "K-4", "x_branch": "north", "x_score": 0.5},
    ]
    for body in allowed:
        errors = [e.message for e in validator.iter_errors(body)]
        assert not errors, errors
        status, answer = server.call("POST", "/score", body, admin)
        assert status == 200, answer
    assert answer["claim_id"] == "K-4"
    # a claim lacking an input it neither sends nor lists: the document and the server both refuse it
    lacking = {k: v for k, v in good_claim.items() if k != "claimed_amount"} | {"claim_id": "K-5"}
    assert not validator.is_valid(lacking)
    assert server.call("POST", "/score", lacking, admin)[0] == 422


def test_cross_field_rules_are_in_the_document_and_held(server, document, admin, good_claim):
    claim = _claim_schema(document)
    assert ["incident_date", "report_date"] in claim["x-date-order"]
    late = {**good_claim, "claim_id": "D-1", "report_date": "2024-02-01"}  # before the incident (2024-03-01)
    status, answer = server.call("POST", "/score", late, admin)
    assert status == 422 and answer["errors"][0]["field"] == "report_date"
    twice = {"claims": [{**good_claim, "claim_id": "D-2"}, {**good_claim, "claim_id": "D-2"}]}
    status, answer = server.call("POST", "/score_batch", twice, admin)
    assert status == 422 and answer["errors"][0]["field"] == "claims.claim_id"


def test_case_bodies_say_their_conditions(server, document, admin):
    paths = document["paths"]
    disposition = paths["/cases/{claim_id}/disposition"]["post"]["requestBody"]["content"]["application/json"]
    validator = jsonschema.Draft7Validator(disposition["schema"])
    assert not validator.is_valid({"disposition": "not_fraud"})
    assert not validator.is_valid({"disposition": "not_fraud", "reason": "   "})
    assert validator.is_valid({"disposition": "not_fraud", "reason": "receipts check out"})
    outcome = jsonschema.Draft7Validator(
        paths["/outcomes"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    )
    assert not outcome.is_valid({"claim_id": "C"})  # names no outcome
    assert not outcome.is_valid({"claim_id": "C", "investigation_closed_date": "2024-01-02"})
    assert outcome.is_valid({"claim_id": "C", "settled_amount": 10.0})
    for body in ({"claim_id": "C"}, {"claim_id": "C", "investigation_closed_date": "2024-01-02"}):
        assert server.call("POST", "/outcomes", body, admin)[0] == 422
    status, _ = server.call("GET", "/cases?older_than_days=1e308", None, admin)
    assert status == 422  # was a 500 (a time span beyond what a date can hold)


def test_the_fuzz_hooks_change_nothing_the_schema_constrains():
    from bench.contract_hooks import in_order, unique, with_inputs

    claim = {"incident_date": "2024-03-05", "report_date": "2024-03-01", "policy_start_date": 7}
    in_order(claim, [["policy_start_date", "incident_date"], ["incident_date", "report_date"]])
    assert claim == {"incident_date": "2024-03-01", "report_date": "2024-03-05", "policy_start_date": 7}
    listed = {"allow_missing": ["phone"], "claim_id": "x"}
    with_inputs(listed, ["claimed_amount", "phone|address", "claim_id"], limit=100)
    assert listed["allow_missing"] == ["phone", "claimed_amount"]
    wrong_type = {"allow_missing": "claimed_amount"}
    with_inputs(wrong_type, ["claimed_amount"], limit=100)
    assert wrong_type == {"allow_missing": "claimed_amount"}
    claims = [{"claim_id": "a"}, {"claim_id": "a"}, {"claim_id": 5}]
    unique(claims, "claim_id", 128)
    assert [c["claim_id"] for c in claims] == ["a", "a-1", 5]

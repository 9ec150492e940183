"""A claim lacking a field the champion uses is refused naming it, or scored without it only when the
claim says so (``allow_missing``): through a real server, against a champion trained on synthetic
claims (issue 13, item 6)."""

from __future__ import annotations

import pytest

from features.config import Settings
from features.data.synthetic import generate_claims
from pipelines.local_server import Server
from serving.decision_log import DecisionLog
from serving.keys import KeyStore
from serving.request import parse_records
from training import registry
from training.config import LightGBMConfig, TrainingConfig
from training.pipeline import train

slow = pytest.mark.slow  # trains a small model and starts a real server


def test_allow_missing_is_an_option_not_a_claim_field(good_claim):
    (record,) = parse_records([{**good_claim, "allow_missing": ["claimed_amount"]}], prefix="")
    assert "allow_missing" not in record and record["claimed_amount"] == good_claim["claimed_amount"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLAIMSCORE_DEMO", "1")  # the built-in identity secret: a demo (see test_service.py)
        home = tmp_path_factory.mktemp("missing-inputs")
        settings = Settings(home=home).resolved().ensure_dirs()
        data = home / "claims.parquet"
        generate_claims(5_000, seed=5).to_parquet(data)
        train(str(data), "synthetic", settings, TrainingConfig(lightgbm=LightGBMConfig(max_rounds=150)))
        registry.configure(settings)
        registry.promote("average_precision", 0.0, "tests", "missing-input tests")
        yield home


@pytest.fixture(scope="module")
def keys(home):
    store = KeyStore(home / "keys.json")
    return {role: store.create(role)[0] for role in ("scorer", "investigator")}


@pytest.fixture(scope="module")
def server(home, keys):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLAIMSCORE_DEMO", "1")
        srv = Server(home)
    yield srv
    srv.kill()


def without(claim: dict, *names: str, **more) -> dict:
    return {**{k: v for k, v in claim.items() if k not in names}, **more}


def fields(body: dict) -> list[str]:
    return [e["field"] for e in body["errors"]]


@slow
def test_a_claim_with_every_field_is_scored_without_nothing(server, keys, good_claim):
    status, body = server.call("POST", "/score", good_claim, keys["scorer"])
    assert status == 200, body
    assert body["scored_without"] == []


@slow
def test_a_claim_without_claimed_amount_is_refused_naming_it(server, keys, good_claim):
    claim = without(good_claim, "claimed_amount", claim_id="NO-AMOUNT-1")
    for path, key in (("/score", "scorer"), ("/explain", "investigator")):
        status, body = server.call("POST", path, claim, keys[key])
        assert status == 422, (path, body)
        assert fields(body) == ["claimed_amount"], body
        assert "allow_missing" in body["errors"][0]["problem"], body
    assert not DecisionLog(f"sqlite:///{server.home / 'decisions.db'}").read("NO-AMOUNT-1")


@slow
def test_allow_missing_scores_the_claim_and_the_answer_says_without_what(server, keys, good_claim):
    claim = without(good_claim, "claimed_amount", claim_id="NO-AMOUNT-2", allow_missing=["claimed_amount"])
    status, body = server.call("POST", "/score", claim, keys["scorer"])
    assert status == 200, body
    assert body["scored_without"] == ["claimed_amount"]
    status, body = server.call("POST", "/explain", claim, keys["investigator"])
    assert status == 200 and body["scored_without"] == ["claimed_amount"], body
    (logged,) = DecisionLog(f"sqlite:///{server.home / 'decisions.db'}").read("NO-AMOUNT-2")
    assert logged["features"]["claimed_amount"] is None  # scored as unknown, and logged so


@slow
def test_a_field_sent_as_null_counts_as_sent(server, keys, good_claim):
    status, body = server.call(
        "POST", "/score", {**good_claim, "claim_id": "NULL-1", "claimed_amount": None}, keys["scorer"]
    )
    assert status == 200, body
    assert body["scored_without"] == []


@slow
def test_a_batch_names_each_claim_lacking_a_field_and_scores_none_of_them(server, keys, good_claim):
    claims = [
        {**good_claim, "claim_id": "BATCH-OK"},
        without(good_claim, "claimed_amount", claim_id="BATCH-NO-AMOUNT"),
        without(good_claim, "sum_insured", claim_id="BATCH-ALLOWED", allow_missing=["sum_insured"]),
    ]
    status, body = server.call("POST", "/score_batch", {"claims": claims}, keys["scorer"])
    assert status == 422, body
    assert fields(body) == ["claims[1].claimed_amount"], body
    assert not DecisionLog(f"sqlite:///{server.home / 'decisions.db'}").read("BATCH-OK")
    del claims[1]
    status, body = server.call("POST", "/score_batch", {"claims": claims}, keys["scorer"])
    assert status == 200, body
    assert [a["scored_without"] for a in body["results"]] == [[], ["sum_insured"]]


@slow
def test_fields_of_which_any_one_will_do_are_named_together(server, keys, good_claim):
    personal = ("phone", "payee_account", "address")
    status, body = server.call("POST", "/score", without(good_claim, *personal), keys["scorer"])
    assert status == 422, body
    assert "phone|payee_account|address" in fields(body) and set(personal) <= set(fields(body)), body
    claim = without(good_claim, *personal, claim_id="NO-PERSONAL", allow_missing=list(personal))
    status, body = server.call("POST", "/score", claim, keys["scorer"])
    assert status == 200, body
    assert "phone|payee_account|address" in body["scored_without"]


@slow
def test_allow_missing_naming_a_field_that_does_not_exist_is_refused(server, keys, good_claim):
    claim = without(good_claim, "claimed_amount", allow_missing=["claimed_amont"])
    status, body = server.call("POST", "/score", claim, keys["scorer"])
    assert status == 422, body
    assert "allow_missing" in fields(body) and "claimed_amont" in str(body), body


@slow
def test_the_api_description_documents_allow_missing(server):
    status, text = server.call("GET", "/docs.json")
    assert status == 200
    assert "allow_missing" in str(text)

"""Cases, dispositions and outcomes over HTTP, on a real server: referred claims open cases, a
disposition becomes a label that later claims' features see (and earlier ones never do)."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest

from features import catalog
from features.config import Settings
from features.store.history import HistoryStore
from pipelines.demo import claim_json
from pipelines.local_server import Server
from serving.keys import KeyStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_mode")]  # serves the champion in a real server

CLAIMANT_FEATURE = "claimant_prior_fraud"
READS_OUTCOMES = {f.name for f in catalog.FEATURES if "fraud_confirmed" in f.needs}
"""The features an investigation's result reaches (the claimant's, its group's, the provider's, the payee's)."""


@pytest.fixture(scope="module")
def world(champion, served_home):
    """The session's champion (history of 40,000 claims loaded) and the next claims to score live."""
    return served_home("cases"), champion[1]


@pytest.fixture(scope="module")
def keys(world):
    store = KeyStore(world[0] / "keys.json")
    return {
        "scorer": store.create("scorer", "claims-system")[0],
        "investigator": store.create("investigator", "alice")[0],
        "admin": store.create("admin", "root")[0],
    }


@pytest.fixture(scope="module")
def server(world, keys):
    srv = Server(world[0])
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def referred(server, keys, world):
    """The live claims scored in one batch, and the ids of those the service referred to the SIU."""
    claims = [claim_json(row) for _, row in world[1].head(600).iterrows()]
    status, body = server.call("POST", "/score_batch", {"claims": claims}, keys["scorer"])
    assert status == 200, body
    results = {r["claim_id"]: r for r in body["results"]}
    siu = [cid for cid, r in results.items() if r["route"] == "siu_referral"]
    assert siu, "no claim was referred: the test needs at least one"
    return {c["claim_id"]: c for c in claims}, results, siu


def test_referred_claims_open_cases_and_others_do_not(server, keys, referred):
    claims, results, siu = referred
    status, body = server.call("GET", "/cases?queue=siu_referral&limit=1000", key=keys["investigator"])
    assert status == 200, body
    listed = {c["claim_id"] for c in body["cases"]}
    assert listed == set(siu) and body["total"] == len(siu)
    top = body["cases"][0]
    assert top["priority"] == pytest.approx(max(results[c]["fraud_score"] for c in siu))
    assert top["status"] == "open" and top["assignee"] is None
    assert top["amount"] == pytest.approx(claims[top["claim_id"]]["claimed_amount"])
    assert top["region"] == claims[top["claim_id"]]["region"]
    specialist = {cid for cid, r in results.items() if r["route"] == "specialist"}
    status, body = server.call("GET", "/cases?queue=specialist&limit=1000", key=keys["investigator"])
    assert {c["claim_id"] for c in body["cases"]} == specialist


def test_the_case_api_is_for_investigators_and_admins(server, keys, referred):
    claim_id = referred[2][0]
    assert server.call("GET", "/cases", key=keys["scorer"])[0] == 403
    assert server.call("GET", f"/cases/{claim_id}", key=keys["scorer"])[0] == 403
    assert server.call("GET", "/cases")[0] == 401
    assert server.call("GET", "/cases", key=keys["admin"])[0] == 200
    status, body = server.call("POST", "/outcomes", {"claim_id": claim_id, "disputed": True}, keys["investigator"])
    assert status == 403, body


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("sort=cheapest", "sort"),
        ("limit=0", "limit"),
        ("status=lost", "status"),
        ("colour=red", "colour"),
        ("max_amount=", "max_amount"),  # "no filter" is the parameter left out, as the document says
        ("status=open,,closed", "status"),
    ],
)
def test_bad_case_queries_name_the_parameter(server, keys, query, field):
    status, body = server.call("GET", f"/cases?{query}", key=keys["investigator"])
    assert status == 422, body
    assert body["errors"][0]["field"].startswith(field)


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"disposition": "guilty"}, "disposition", 422),
        ({"disposition": "not_fraud"}, "reason", 422),
        ({"disposition": "confirmed_fraud", "amount_saved": -5}, "amount_saved", 422),
        ({"disposition": "confirmed_fraud", "verdict": "x"}, "verdict", 422),
        ({"disposition": "confirmed_fraud", "version": 99}, "version", 409),
    ],
)
def test_bad_dispositions_are_refused_naming_the_field(server, keys, referred, body, field, status):
    claim_id = referred[2][-1]
    got, answer = server.call("POST", f"/cases/{claim_id}/disposition", body, keys["investigator"])
    assert got == status, answer
    assert answer["errors"][0]["field"] == field
    assert server.call("GET", f"/cases/{claim_id}", key=keys["investigator"])[1]["case"]["status"] == "open"


@pytest.mark.parametrize("path", ["/cases/%0AC-1", "/cases/C-1%0D/disposition", "/ui/claims/%00"])
def test_a_path_with_a_control_character_is_a_json_404(server, keys, path):
    status, body = server.call("POST" if path.endswith("disposition") else "GET", path, key=keys["investigator"])
    assert status == 404, body  # BentoML's router answered these in plain text, not the documented body
    assert body["errors"][0]["field"] == "path"


def test_a_disposition_for_a_claim_without_a_case_is_404(server, keys):
    status, body = server.call("POST", "/cases/NOPE-1/disposition", {"disposition": "withdrawn"}, keys["investigator"])
    assert status == 404 and body["errors"][0]["field"] == "claim_id"


def test_the_case_page_data_holds_facts_score_history_and_trail(server, keys, referred):
    claim_id = referred[2][0]
    status, body = server.call("GET", f"/cases/{urllib.parse.quote(claim_id)}", key=keys["investigator"])
    assert status == 200, body
    assert body["claim"]["claim_id"] == claim_id
    assert body["claim"]["phone"] is None or body["claim"]["phone"].startswith("h1:")  # never the number sent
    assert "true_fraud" not in body["claim"]  # a synthetic source's ground truth is no fact an investigator sees
    assert [d["route"] for d in body["decisions"]] == ["siu_referral"]
    assert body["decisions"][0]["scores"]["fraud"] == pytest.approx(referred[1][claim_id]["fraud_score"])
    actions = [e["action"] for e in body["trail"]]
    assert actions[0] == "open" and actions[-1] == "view" and body["trail"][-1]["who"] == "alice"


def test_explain_calls_are_audited(server, keys, referred):
    claims, _, siu = referred
    status, _ = server.call("POST", "/explain", claims[siu[1]], keys["investigator"])
    assert status == 200
    trail = server.call("GET", f"/cases/{siu[1]}", key=keys["admin"])[1]["trail"]
    assert {"action": "view", "who": "alice", "new": "explain"}.items() <= trail[-2].items()


def test_a_confirmed_fraud_is_seen_by_later_claims_of_the_claimant_only(server, keys, referred):
    """The loop: a disposition is the claimant's prior fraud for claims reported after it, in their
    features and reasons; a claim reported before the disposition does not see it."""
    claims, _, siu = referred
    claim_id = siu[0]
    base = claims[claim_id]

    def claim(suffix: str, reported: datetime) -> dict:
        return {
            **base,
            "claim_id": f"{claim_id}-{suffix}",
            "incident_date": (reported - timedelta(days=1)).isoformat(),
            "report_date": reported.isoformat(),
            "policy_start_date": (reported - timedelta(days=300)).isoformat(),
            "policy_end_date": (reported + timedelta(days=65)).isoformat(),
            "cover_increase_date": None,
        }

    before = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)
    explain = server.call("POST", "/explain", claim("BEFORE", before), keys["investigator"])[1]
    prior_before = _feature(explain, CLAIMANT_FEATURE)["value"]

    status, body = server.call(
        "POST",
        f"/cases/{claim_id}/disposition",
        {"disposition": "confirmed_fraud", "amount_saved": 1200, "note": "staged collision"},
        keys["investigator"],
    )
    assert status == 200, body
    assert body["status"] == "closed" and body["disposition"] == "confirmed_fraud"
    decided = datetime.fromisoformat(body["closed_at"]).replace(tzinfo=None)

    later = server.call("POST", "/explain", claim("LATER", decided + timedelta(minutes=1)), keys["investigator"])[1]
    earlier = server.call("POST", "/explain", claim("EARLIER", before), keys["investigator"])[1]
    assert _feature(later, CLAIMANT_FEATURE)["value"] == prior_before + 1
    assert _feature(earlier, CLAIMANT_FEATURE)["value"] == prior_before
    # the claimant's own count moves; the model may weigh it by the group's and the provider's
    # (this synthetic champion splits on group_prior_fraud and the provider's rates, not on it)
    assert _outcome_share(later) > _outcome_share(earlier) + 0.1
    assert later["models"]["fraud"]["score"] > earlier["models"]["fraud"]["score"]

    new = claim("NEW", decided + timedelta(minutes=2))
    status, scored = server.call("POST", "/score", new, keys["scorer"])
    assert status == 200, scored
    assert {r["feature"] for r in scored["reasons"]["fraud"]} & READS_OUTCOMES, scored["reasons"]["fraud"]
    trail = server.call("GET", f"/cases/{claim_id}", key=keys["investigator"])[1]["trail"]
    assert [e["new"] for e in trail if e["field"] == "disposition"] == ["confirmed_fraud"]
    assert any(e["action"] == "note" and e["new"] == "staged collision" for e in trail)
    again = server.call("POST", f"/cases/{claim_id}/disposition", {"disposition": "withdrawn"}, keys["investigator"])
    assert again[0] == 409 and again[1]["errors"][0]["field"] == "status"


def test_outcomes_from_claim_systems_reach_the_history(server, keys, referred, world):
    claims, results, _ = referred
    claim_id = next(cid for cid, r in results.items() if r["route"] == "standard")
    body = {"claim_id": claim_id, "settled_amount": 900.5, "settlement_date": "2026-01-05", "disputed": True}
    status, answer = server.call("POST", "/outcomes", body, keys["scorer"])
    assert status == 200, answer
    row = HistoryStore(Settings(home=world[0]).resolved().history_url).claim(claim_id)
    assert row["settled_amount"] == 900.5 and row["disputed"] is True
    assert row["settlement_date"] == datetime(2026, 1, 5)
    assert row["fraud_confirmed"] is None  # not sent: left as it was


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"settled_amount": 5}, "claim_id", 422),
        ({"claim_id": "NOPE-9", "disputed": True}, "claim_id", 404),
        ({"claim_id": "X", "settled_amount": "lots"}, "settled_amount", 422),
        ({"claim_id": "X", "fraud_confirmed": True}, "fraud_confirmed", 422),
        ({"claim_id": "X"}, "body", 422),
        ({"claim_id": "X", "investigation_closed_date": "2026-01-01"}, "investigation_closed_date", 422),
    ],
)
def test_bad_outcomes_are_refused_naming_the_field(server, keys, body, field, status):
    got, answer = server.call("POST", "/outcomes", body, keys["scorer"])
    assert got == status, answer
    assert answer["errors"][0]["field"] == field


def test_the_api_document_describes_the_case_paths(server):
    status, doc = server.call("GET", "/docs.json")
    assert status == 200
    for path in ("/cases", "/cases/{claim_id}", "/cases/{claim_id}/disposition", "/outcomes"):
        assert path in doc["paths"], path
    disposition = doc["paths"]["/cases/{claim_id}/disposition"]["post"]["requestBody"]
    assert "confirmed_fraud" in str(disposition)


def _outcome_share(explained: dict) -> float:
    """What the features reading investigation results add to the fraud score (log-odds)."""
    return sum(
        c["contribution"] for c in explained["models"]["fraud"]["contributions"] if c["feature"] in READS_OUTCOMES
    )


def _feature(explained: dict, name: str) -> dict:
    return next(c for c in explained["models"]["fraud"]["contributions"] if c["feature"] == name)

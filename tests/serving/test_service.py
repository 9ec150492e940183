"""The scoring service over HTTP: a real BentoML server on a free port on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipelines.local_server import Server, free_port
from serving.decision_log import DecisionLog
from serving.keys import KeyStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_mode")]  # serves the champion in a real server


@pytest.fixture(scope="module")
def home(served_home):
    return served_home("service")


@pytest.fixture(scope="module")
def keys(home):
    store = KeyStore(home / "keys.json")
    return {role: store.create(role)[0] for role in ("scorer", "investigator", "admin")}


@pytest.fixture(scope="module")
def server(home, keys):
    srv = Server(home)
    yield srv
    srv.kill()


ANSWER_FIELDS = {
    "claim_id",
    "fraud_score",
    "fast_track_score",
    "route",
    "rules",
    "reasons",
    "model_versions",
    "policy_version",
    "scored_at",
}


def test_a_valid_claim_scores_with_every_field(server, keys, good_claim):
    status, body = server.call("POST", "/score", good_claim, keys["scorer"])
    assert status == 200, body
    assert set(body) >= ANSWER_FIELDS
    assert 0 <= body["fraud_score"] <= 1 and 0 <= body["fast_track_score"] <= 1
    assert body["route"] in {"fast_track", "standard", "specialist", "siu_referral"}
    for model in ("fraud", "fast_track"):
        for reason in body["reasons"][model]:
            assert {"feature", "value", "contribution", "text"} <= set(reason) and reason["contribution"] > 0


def test_the_same_claim_gives_the_same_answer(server, keys, good_claim):
    claim = {**good_claim, "claim_id": "SAME-1"}
    first = server.call("POST", "/score", claim, keys["scorer"])[1]
    second = server.call("POST", "/score", claim, keys["scorer"])[1]
    first.pop("scored_at"), second.pop("scored_at")
    assert first == second


def test_the_batch_endpoint_matches_single_calls(server, keys, good_claim):
    claims = [
        {**good_claim, "claim_id": f"B-{i}", "claimed_amount": 1000.0 * (i + 1), "claimant_id": f"K-B{i}"}
        for i in range(4)
    ]
    singles = [server.call("POST", "/score", c, keys["scorer"])[1] for c in claims]
    status, batch = server.call("POST", "/score_batch", {"claims": claims}, keys["scorer"])
    assert status == 200
    for one, many in zip(singles, batch["results"]):
        for field in ("claim_id", "fraud_score", "fast_track_score", "route", "rules", "reasons"):
            assert one[field] == many[field], field


def test_contributions_add_up_to_the_raw_score(server, keys, good_claim):
    status, body = server.call("POST", "/explain", {**good_claim, "claim_id": "EX-1"}, keys["investigator"])
    assert status == 200, body
    for model in body["models"].values():
        total = model["base_value"] + sum(c["contribution"] for c in model["contributions"])
        assert abs(total - model["raw_score"]) < 1e-6
        assert len(model["contributions"]) == len({c["feature"] for c in model["contributions"]})


def test_model_endpoint_describes_versions_and_thresholds(server, keys):
    status, body = server.call("GET", "/model", key=keys["scorer"])
    assert status == 200
    assert set(body["models"]) == {"fraud", "fast_track"}
    assert body["policy"]["siu_threshold"] is not None and body["models"]["fraud"]["periods"]["test"]


def test_each_kind_of_bad_request_gets_a_4xx_naming_the_field(server, keys, bad_claim):
    status, body = server.call("POST", "/score", bad_claim.payload, keys["scorer"])
    assert 400 <= status < 500, body
    assert bad_claim.field in [e["field"] for e in body["errors"]], body


def test_malformed_bodies_get_a_4xx_naming_the_body(server, keys, malformed_body):
    status, body = server.call("POST", "/score", malformed_body.body, keys["scorer"])
    assert 400 <= status < 500 and body["errors"][0]["field"] == malformed_body.field, body


def test_the_server_keeps_serving_after_bad_requests(server, keys, good_claim, bad_claims):
    for bad in bad_claims[:10]:
        server.call("POST", "/score", bad.payload, keys["scorer"])
    assert server.call("POST", "/score", {**good_claim, "claim_id": "AFTER-1"}, keys["scorer"])[0] == 200


@pytest.mark.parametrize("key", [None, "wrong", "cs_not-a-real-key"])
def test_missing_or_wrong_keys_get_401(server, key, good_claim):
    status, body = server.call("POST", "/score", good_claim, key)
    assert status == 401 and body["errors"][0]["field"] == "Authorization"


def test_a_key_without_the_role_gets_403(server, keys, good_claim):
    assert server.call("POST", "/score", good_claim, keys["investigator"])[0] == 403
    assert server.call("POST", "/explain", good_claim, keys["scorer"])[0] == 403
    assert server.call("GET", "/healthz")[0] == 200  # health needs no key


def test_a_keep_alive_connection_is_closed_after_its_share_of_scoring_requests(server, keys, good_claim):
    import http.client

    from serving.api import KEEPALIVE_REQUESTS

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    closing = []
    for i in range(KEEPALIVE_REQUESTS):
        conn.request(
            "POST",
            "/score",
            json.dumps({**good_claim, "claim_id": f"KA-{i}"}),
            {"Authorization": f"Bearer {keys['scorer']}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        assert response.status == 200, response.read()
        response.read()
        closing.append((response.getheader("connection") or "").lower() == "close")
    conn.close()
    assert closing == [False] * (KEEPALIVE_REQUESTS - 1) + [True]  # then a client opens a new connection


def _until(check, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_keys_created_or_revoked_while_serving_take_effect_within_seconds(server, home):
    store = KeyStore(home / "keys.json")
    key, record = store.create("scorer")
    assert _until(lambda: server.call("GET", "/model", key=key)[0] == 200)
    store.revoke(record.key_id)
    assert _until(lambda: all(server.call("GET", "/model", key=key)[0] == 401 for _ in range(4)))


def test_metrics_need_a_key_and_count_routes(server, keys, good_claim):
    assert server.call("GET", "/metrics")[0] == 401
    assert server.call("POST", "/score", {**good_claim, "claim_id": "MET-1"}, keys["scorer"])[0] == 200
    status, text = server.call("GET", "/metrics", key=keys["admin"])
    assert status == 200 and "claimscore_routes" in text and "claimscore_score" in text


def test_a_path_is_labelled_by_its_route():
    from serving.service import route_of

    assert route_of("/score") == "/score" and route_of("/readyz") == "/readyz"
    assert route_of("/cases/C-1") == "/cases/{claim_id}"
    assert route_of("/cases/C-1/disposition") == "/cases/{claim_id}/disposition"
    assert route_of("/ui/claims/C-9/note") == "/ui/claims/{claim_id}/note"
    assert route_of("/ui/static/htmx.min.js") == "/ui/static/{path:path}"
    assert route_of("/wp-admin/C-1") == route_of("/cases/C-1/x") == "/{unmatched}"


def test_traffic_metrics_are_labelled_by_route_not_by_path(server, keys):
    for claim_id in ("MET-A", "MET-B", "MET-C"):
        assert server.call("GET", f"/cases/{claim_id}", key=keys["investigator"])[0] == 404
    assert server.call("GET", "/nowhere/MET-D", key=keys["admin"])[0] == 403
    assert server.call("GET", "/model", key=keys["admin"])[0] == 200
    text = server.call("GET", "/metrics", key=keys["admin"])[1]
    endpoints = set(re.findall(r'^bentoml_\w+_request_total\{[^}]*endpoint="([^"]*)"', text, re.M))
    assert {"/cases/{claim_id}", "/{unmatched}", "/model"} <= endpoints, endpoints
    assert not [e for e in endpoints if "MET-" in e]  # one series per claim viewed grew /metrics without end


def test_concurrent_claims_are_answered_in_batches_and_every_one_is_logged(server, keys, home, good_claim):
    claims = [{**good_claim, "claim_id": f"CON-{i}", "claimant_id": f"K-CON{i}"} for i in range(64)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda c: server.call("POST", "/score", c, keys["scorer"]), claims))
    assert [status for status, _ in answers] == [200] * len(claims)
    assert [body["claim_id"] for _, body in answers] == [c["claim_id"] for c in claims]
    text = server.call("GET", "/metrics", key=keys["admin"])[1]
    count, total = (
        float(re.search(rf"^claimscore_batch_claims_{k} (\S+)$", text, re.M).group(1)) for k in ("count", "sum")
    )
    assert total / count > 1  # some claims shared a batch
    logged = {row["claim_id"] for row in DecisionLog(f"sqlite:///{home / 'decisions.db'}").read()}
    assert {c["claim_id"] for c in claims} <= logged


def test_killing_the_server_right_after_answers_loses_no_decision(home, keys, good_claim):
    srv = Server(home)
    answered = []
    try:
        workers = srv.workers()
        assert workers
        for i in range(25):
            status, body = srv.call("POST", "/score", {**good_claim, "claim_id": f"KILL-{i}"}, keys["scorer"])
            assert status == 200
            answered.append(body["claim_id"])
    finally:
        srv.kill()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "a worker outlived its killed server"
    logged = {row["claim_id"] for row in DecisionLog(f"sqlite:///{home / 'decisions.db'}").read()}
    assert set(answered) <= logged


def test_serve_without_a_champion_exits_with_one_line(tmp_path):
    env = {**os.environ, "CLAIMSCORE_HOME": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pipelines.cli import main; sys.exit(main())",
            "serve",
            "--port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "no champion" in lines[0]

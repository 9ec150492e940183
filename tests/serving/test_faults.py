"""Faults: when the decision log cannot be written, /score answers 503 with Retry-After and nothing
is half-written (no score without its record, no claim in the history); /readyz says not ready
while a store is down; both recover, without a restart, when it is back."""

from __future__ import annotations

import sqlite3
import time

import pytest

from pipelines.local_server import Server
from serving.keys import KeyStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_mode")]


@pytest.fixture(scope="module")
def home(served_home):
    return served_home("faults")


@pytest.fixture(scope="module")
def server(home):
    srv = Server(home)
    yield srv
    srv.kill()


def _until(check, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_a_decision_log_that_cannot_be_written_answers_503_and_writes_nothing(server, home, good_claim):
    from features.store.history import HistoryStore

    key = KeyStore(home / "keys.json").create("scorer", "faults")[0]
    status, _ = server.call("POST", "/score", {**good_claim, "claim_id": "F-1"}, key)
    assert status == 200
    log = sqlite3.connect(home / "decisions.db")
    log.execute("ALTER TABLE decisions RENAME TO decisions_away")  # the log's table is gone
    log.commit()
    try:
        status, body, headers = server.call("POST", "/score", {**good_claim, "claim_id": "F-2"}, key, headers=True)
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert body["errors"][0]["field"] == "service" and "decision log" in body["errors"][0]["problem"]
        assert _until(lambda: server.call("GET", "/readyz")[0] == 503), "readyz still says ready"
        store = HistoryStore(f"sqlite:///{home / 'history.db'}")
        assert store.claim("F-2") is None and store.claim("F-1") is not None  # no claim without its record
        store.close()
    finally:
        log.execute("ALTER TABLE decisions_away RENAME TO decisions")
        log.commit()
        log.close()
    assert _until(lambda: server.call("GET", "/readyz")[0] == 200), "readyz did not recover"
    status, _ = server.call("POST", "/score", {**good_claim, "claim_id": "F-3"}, key)
    assert status == 200
    logged = {r[0] for r in sqlite3.connect(home / "decisions.db").execute("SELECT claim_id FROM decisions")}
    assert {"F-1", "F-3"} <= logged and "F-2" not in logged

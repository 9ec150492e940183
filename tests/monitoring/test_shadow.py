"""Shadow mode: the service decides every claim a second time under a shadow policy, logs it beside
the champion's decision without answering it, and ``claimscore backtest`` compares the two on the
decision log."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from pipelines.cli import main
from tests.live import score_in_process

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_mode")]


@pytest.fixture(scope="module")
def home(served_home) -> Path:
    return served_home("shadow")


def _score(live, settings):
    return score_in_process(settings, live)[0]


def test_the_shadow_is_logged_beside_the_champion_and_backtested_on_the_log(home, champion, monkeypatch, capsys):
    from features.config import load_settings
    from features.store.history import HistoryStore
    from serving.decision_log import DecisionLog
    from serving.model.scorer import Scorer

    monkeypatch.setenv("CLAIMSCORE_HOME", str(home))
    base = Scorer.from_registry(load_settings()).policy
    eager = dataclasses.replace(base, siu_threshold=base.siu_threshold / 3)  # refers many more claims
    policy_file = home / "eager.json"
    policy_file.write_text(json.dumps(eager.to_dict()))
    monkeypatch.setenv("CLAIMSCORE_SHADOW", str(policy_file))
    settings = load_settings()
    live = champion[1].iloc[:400]
    answers = _score(live, settings)

    logged = {d["claim_id"]: d for d in DecisionLog(settings.decision_log_url).read()}
    assert all("shadow" not in a for a in answers)  # never answered
    for a in answers:
        d = logged[a["claim_id"]]
        assert d["route"] == a["route"] and d["shadow"]["version"].endswith("policy eager.json")
        assert d["shadow"]["scores"]["fraud"] == pytest.approx(a["fraud_score"])  # same models, other policy
    champion_siu = sum(d["route"] == "siu_referral" for d in logged.values())
    shadow_siu = sum(d["shadow"]["route"] == "siu_referral" for d in logged.values())
    assert shadow_siu > champion_siu

    store = HistoryStore(settings.history_url)
    for row in live[live["fraud_confirmed"].notna()].itertuples():
        store.record_outcome(
            row.claim_id, investigated=bool(row.investigated), fraud_confirmed=bool(row.fraud_confirmed)
        )
    store.close()
    capsys.readouterr()
    code = main(["backtest", "--since", "2000-01-01"])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    header = out.out.splitlines()[0]
    assert "champion (live)" in header and "shadow (" in header
    referrals = next(line for line in out.out.splitlines() if line.startswith("SIU referrals per week"))
    assert len(referrals.split()) >= 6

    # the champion's own policy replayed on the logged features and scores gives the logged routes
    own = home / "own.json"
    own.write_text(json.dumps(base.to_dict()))
    code = main(["backtest", "--since", "2000-01-01", "--policy", str(own), "--out", str(home / "log-bt")])
    assert code == 0, capsys.readouterr()
    live_row, shadow_row, replayed = json.loads((home / "log-bt" / "backtest.json").read_text())["policies"]
    assert replayed["policy"] == "own.json" and shadow_row["policy"].startswith("shadow (")
    for figure in ("share_fast_track", "share_siu_referral", "siu_referrals", "cost_total"):
        assert replayed[figure] == pytest.approx(live_row[figure]), figure
    assert shadow_row["siu_referrals"] > live_row["siu_referrals"]


def test_a_shadow_that_cannot_be_had_is_refused_at_start(home, monkeypatch, tmp_path):
    from features.config import load_settings
    from features.errors import ClaimScoreError

    monkeypatch.setenv("CLAIMSCORE_HOME", str(home))
    monkeypatch.setenv("CLAIMSCORE_SHADOW", str(tmp_path / "missing.json"))
    from serving.state import ServiceState

    with pytest.raises(ClaimScoreError, match="shadow: .*missing.json"):
        ServiceState.load(load_settings())


def test_a_decision_log_from_before_the_shadow_gains_its_column(tmp_path):
    from serving.decision_log import Decision, DecisionLog

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the table as it was created before the shadow column
        conn.execute(
            "CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, claim_id VARCHAR(128) NOT NULL, "
            "input_hash VARCHAR(64) NOT NULL, decided_at VARCHAR(40) NOT NULL, route VARCHAR(32) NOT NULL, "
            "scores TEXT NOT NULL, rules TEXT NOT NULL, reasons TEXT NOT NULL, features TEXT NOT NULL, "
            "versions TEXT NOT NULL, key_id VARCHAR(32) NOT NULL)"
        )
        conn.execute(
            "INSERT INTO decisions (claim_id, input_hash, decided_at, route, scores, rules, reasons, features, "
            "versions, key_id) VALUES "
            "('C-old', 'h', '2026-01-01T00:00:00', 'standard', '{}', '[]', '{}', '{}', '{}', 'k')"
        )
    log = DecisionLog(f"sqlite:///{path}")
    log.write([Decision("C-new", "h", "fast_track", {"fraud": 0.1}, shadow={"route": "standard"})])
    rows = {r["claim_id"]: r for r in log.read()}
    assert rows["C-old"]["shadow"] == {} and rows["C-new"]["shadow"] == {"route": "standard"}
    log.close()

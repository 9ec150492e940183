"""``claimscore monitor`` end to end on the session's champion (tests/conftest.py): a real MLflow
registry, the reference training stored with the models, real great-expectations checks, a decision
log written by the service's own scoring path.

The champion learnt from 40,000 synthetic claims; the next 1,000 of the same population are the
window (the earlier claims their history)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main
from tests.live import score_in_process

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_mode")]


@pytest.fixture(scope="module")
def home(served_home) -> Path:
    return served_home("monitor")


@pytest.fixture
def state(home, monkeypatch) -> Path:
    monkeypatch.setenv("CLAIMSCORE_HOME", str(home))
    return home


def _later_half_of_test_period(home: Path, tmp_path: Path, shift=None) -> tuple[Path, str, str]:
    """The champion's claims as a table (``shift`` applied to the window's rows) and the window:
    the later half of the champion's test period, the period its reference describes. The earlier
    claims are the window's history."""
    from features.config import load_settings
    from serving.model.scorer import Scorer

    period = Scorer.from_registry(load_settings()).bundles["fraud"].reference["extra"]["period"]
    first, last = (pd.Timestamp(t) for t in period.split(" to "))
    since, until = first + (last - first) / 2, last + pd.Timedelta(days=1)
    frame = pd.read_parquet(home / "claims.parquet")
    if shift is not None:
        window = (frame["report_date"] >= since) & (frame["report_date"] < until)
        frame.loc[window] = shift(frame.loc[window].copy())
    path = tmp_path / "claims.parquet"
    frame.to_parquet(path)
    return path, f"{since:%Y-%m-%dT%H:%M:%S}", f"{until:%Y-%m-%d}"


def _monitor(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["monitor", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_claims_like_training_raise_no_alert_and_exit_0(state, tmp_path, capsys):
    data, since, until = _later_half_of_test_period(state, tmp_path)
    code, out, err = _monitor(capsys, "--data", data, "--since", since, "--until", until, "--out", tmp_path / "run")
    assert code == 0, out + err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["window"]["claims"] > 2_000
    assert summary["alerts"] == []
    assert not any(f["drifted"] for f in summary["drift"]["features"])
    assert summary["quality"]["failed"] == []
    # the latest run is where the service and the pages read it
    latest = state / "reports" / "monitoring" / "latest"
    assert json.loads((latest / "summary.json").read_text())["generated_at"] == summary["generated_at"]
    assert "<svg" in (latest / "report.html").read_text()


def test_shifted_amounts_and_channels_raise_drift_alerts_naming_them(state, tmp_path, capsys):
    def shift(claims: pd.DataFrame) -> pd.DataFrame:
        claims["claimed_amount"] = claims["claimed_amount"] * 3
        claims["channel"] = claims["channel"].where(~claims["channel"].isin(["phone", "agent"]), "app")
        return claims

    data, since, until = _later_half_of_test_period(state, tmp_path, shift)
    code, out, err = _monitor(capsys, "--data", data, "--since", since, "--until", until, "--out", tmp_path / "run")
    assert code == 3, out + err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    drifted = {a["subject"] for a in summary["alerts"] if a["section"] == "drift"}
    assert {"claimed_amount", "channel"} <= drifted
    lines = [line for line in out.splitlines() if line.startswith("drift: ")]
    assert any("claimed_amount" in line and "threshold" in line for line in lines)
    unshifted = {"claimant_age", "number_of_parties", "incident_type"}
    rows = {f["feature"]: f for f in summary["drift"]["features"]}
    assert unshifted <= set(rows) and not any(rows[f]["drifted"] for f in unshifted)


def test_bad_window_is_one_readable_line(state, capsys):
    code, _, err = _monitor(capsys, "--since", "not-a-date")
    assert code == 2 and "--since" in err and "Traceback" not in err
    code, _, err = _monitor(capsys, "--since", "2999-01-01")
    assert code == 2 and err.startswith("error: no claims to monitor") and len(err.strip().splitlines()) == 1


def test_late_labels_turn_estimated_into_measured_performance(state, champion, tmp_path, capsys):
    """Claims scored by the service's own path (decision log, history, cases); their fraud labels
    arrive afterwards in the history store, as investigations close."""
    from features.config import load_settings
    from features.store.history import HistoryStore

    live = champion[1].iloc[:600]
    settings = load_settings()
    score_in_process(settings, live)

    code, out, err = _monitor(capsys, "--since", "2000-01-01", "--out", tmp_path / "before")
    before = json.loads((tmp_path / "before" / "summary.json").read_text())["performance"]["fraud"]
    assert before["claims"] == len(live) and before["labelled"] == 0 and before["measured"] is None
    assert 0.5 < before["estimated"]["roc_auc"] <= 1

    store = HistoryStore(settings.history_url)
    labelled = live[live["fraud_confirmed"].notna()]
    for row in labelled.itertuples():
        store.record_outcome(
            row.claim_id,
            investigated=bool(row.investigated),
            fraud_confirmed=bool(row.fraud_confirmed),
            investigation_closed_date=row.investigation_closed_date,
        )
    store.close()
    code, out, err = _monitor(capsys, "--since", "2000-01-01", "--out", tmp_path / "after")
    after = json.loads((tmp_path / "after" / "summary.json").read_text())["performance"]["fraud"]
    assert after["labelled"] == len(labelled)
    assert after["maturity"] == pytest.approx(len(labelled) / len(live))
    assert after["measured"] is not None and 0.5 < after["measured"]["roc_auc"] <= 1
    assert after["measured"]["positives"] == labelled["fraud_confirmed"].sum()

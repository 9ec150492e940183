"""The latest monitoring run in a running service: its gauges on /metrics and the workbench's
monitoring page in a real headless Chromium.

One server for the module (the session's champion, the later claims scored through /score_batch so
the decision log has a window), then a real ``run_monitoring`` over that log, with drift thresholds
so small that the run has alerts to show.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from features.config import Settings
from monitoring.config import DriftConfig, MonitorConfig
from pipelines.demo import claim_json
from pipelines.local_server import Server
from pipelines.monitoring import latest_dir, run_monitoring
from serving import gauges
from serving.keys import KeyStore

# serves the session's champion in a real server, driven by a real browser
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_mode")]

INVESTIGATOR = "alice"
GAUGES_WAIT_S = 30
"""How long a changed summary may take to show on /metrics (each worker looks every few seconds)."""


@pytest.fixture(scope="module")
def home(served_home) -> Path:
    return served_home("monitoring")


@pytest.fixture(scope="module")
def keys(home) -> dict[str, str]:
    store = KeyStore(home / "keys.json")
    return {
        "scorer": store.create("scorer")[0],
        "investigator": store.create("investigator", INVESTIGATOR)[0],
    }


@pytest.fixture(scope="module")
def server(home, keys, champion):
    """The service, with the later claims scored (so the decision log holds a window to monitor)."""
    srv = Server(home)
    try:
        claims = [claim_json(row) for _, row in champion[1].iterrows()]
        for start in range(0, len(claims), 250):
            status, body = srv.call("POST", "/score_batch", {"claims": claims[start : start + 250]}, keys["scorer"])
            assert status == 200, body
        yield srv
    finally:
        srv.kill()


@pytest.fixture(scope="module")
def run(home, server) -> dict:
    """A real monitoring run over the decision log, written where the service looks; its summary."""
    tight = DriftConfig(large_sample=1, numeric_threshold=1e-6, categorical_threshold=1e-6, score_threshold=1e-6)
    summary, folder = run_monitoring(Settings(home=home).resolved(), MonitorConfig(drift=tight))
    latest = latest_dir(Settings(home=home).resolved())
    assert (latest / gauges.SUMMARY_FILE).is_file() and (latest / gauges.REPORT_FILE).is_file()
    data = json.loads((latest / gauges.SUMMARY_FILE).read_text())
    assert data["alerts"], "the tight drift thresholds should have raised alerts"
    return data


def _metrics(server, key: str) -> dict[tuple[str, frozenset], float]:
    status, text = server.call("GET", "/metrics", key=key)
    assert status == 200, text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("claimscore_monitor_")
    }


def _wait_for(server, key: str, name: str, value: float, **labels: str) -> dict:
    """/metrics once ``name{labels}`` reads ``value`` (polled until :data:`GAUGES_WAIT_S`)."""
    deadline = time.monotonic() + GAUGES_WAIT_S
    while True:
        shown = _metrics(server, key)
        if shown.get((name, frozenset(labels.items()))) == value:
            return shown
        assert time.monotonic() < deadline, (
            f"{name}{labels} never read {value}: {shown.get((name, frozenset(labels.items())))}"
        )
        time.sleep(0.5)


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(".summary.tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --- before any run ------------------------------------------------------------------------------


def test_before_any_run_the_page_says_how_to_make_one(visit, keys):
    page = visit.sign_in(keys["investigator"])
    with page.expect_navigation():
        page.click("nav >> text=Monitoring")
    assert urlsplit(page.url).path == "/ui/monitoring"
    assert "claimscore monitor" in page.text_content("[data-testid=no-run]")
    assert page.locator("iframe#report").count() == 0


# --- the gauges ----------------------------------------------------------------------------------


def test_metrics_show_the_latest_run(server, keys, run):
    shown = _wait_for(server, keys["scorer"], "claimscore_monitor_window_claims", run["window"]["claims"])
    for section in gauges.SECTIONS:
        count = sum(a["section"] == section for a in run["alerts"])
        assert shown[("claimscore_monitor_alerts", frozenset({("section", section)}))] == count, section
    assert shown[("claimscore_monitor_summary_readable", frozenset())] == 1
    drifted = {dict(labels)["feature"] for (name, labels), v in shown.items() if name == "claimscore_monitor_drifted"}
    assert drifted == {row["feature"] for row in run["drift"]["features"] if row.get("drifted") is not None}
    for row in run["drift"]["routes"]:
        assert shown[("claimscore_monitor_route_share", frozenset({("route", row["route"])}))] == row["current_share"]
    auc = run["performance"]["fraud"]["estimated"]["roc_auc"]
    labels = frozenset({("model", "fraud"), ("metric", "roc_auc"), ("basis", "estimated")})
    assert shown[("claimscore_monitor_performance", labels)] == pytest.approx(auc)
    assert any(name == "claimscore_monitor_kpi" for name, _ in shown)
    pids = [dict(labels).get("pid") for name, labels in shown if name == "claimscore_monitor_window_claims"]
    assert pids == [None]  # one series for the service, not one per worker


def test_a_new_summary_shows_without_a_restart(server, keys, home, run):
    path = latest_dir(Settings(home=home).resolved()) / gauges.SUMMARY_FILE
    original = path.read_text()
    try:
        extra = {"section": "kpis", "subject": "x", "value": 1.0, "threshold": 0.5, "message": "kpis: x"}
        changed = {**run, "window": {**run["window"], "claims": 12_345}, "alerts": [*run["alerts"], extra]}
        _replace(path, json.dumps(changed))
        shown = _wait_for(server, keys["scorer"], "claimscore_monitor_window_claims", 12_345)
        kpis = sum(a["section"] == "kpis" for a in changed["alerts"])
        assert shown[("claimscore_monitor_alerts", frozenset({("section", "kpis")}))] == kpis
    finally:
        _replace(path, original)
    _wait_for(server, keys["scorer"], "claimscore_monitor_window_claims", run["window"]["claims"])


def test_a_garbage_summary_leaves_metrics_and_the_service_working(server, keys, home, run, good_claim):
    path = latest_dir(Settings(home=home).resolved()) / gauges.SUMMARY_FILE
    original = path.read_text()
    try:
        _replace(path, original[: len(original) // 2])  # half a summary
        shown = _wait_for(server, keys["scorer"], "claimscore_monitor_summary_readable", 0)
        assert shown[("claimscore_monitor_window_claims", frozenset())] == run["window"]["claims"]  # the last good run
        assert server.call("POST", "/score", {**good_claim, "claim_id": "MON-1"}, keys["scorer"])[0] == 200
        assert server.call("GET", "/readyz")[0] == 200
    finally:
        _replace(path, original)
    _wait_for(server, keys["scorer"], "claimscore_monitor_summary_readable", 1)


# --- the page ------------------------------------------------------------------------------------


def test_an_investigator_sees_the_alerts_and_the_report_with_its_plots(visit, keys, run, tmp_path):
    page = visit.sign_in(keys["investigator"])
    with page.expect_navigation():
        page.click("nav >> text=Monitoring")
    lines = page.locator("[data-testid=alerts] li").all_text_contents()
    assert lines == [a["message"] for a in run["alerts"]]
    shown = page.locator("[data-testid=alerts] li:visible").count()  # the rest folded away
    assert shown == min(10, len(run["alerts"]))
    assert page.text_content("[data-testid=run-when]").startswith(run["generated_at"][:10])
    assert f"{run['window']['claims']}" in page.text_content("[data-testid=run]")
    frame = page.frame_locator("iframe#report")
    frame.locator("body").wait_for()
    assert frame.locator("svg").count() > 0
    frame.locator("h1").wait_for()
    page.screenshot(path=str(tmp_path / "monitoring.png"), full_page=True)  # to look at, as an investigator
    assert frame.locator("h1").is_visible()
    # a full-page picture leaves the framed report blank (Chromium paints it in a process of its
    # own); the frame's own picture shows what the investigator sees in it
    page.locator("iframe#report").screenshot(path=str(tmp_path / "report.png"))
    assert page.get_attribute("iframe#report", "sandbox") == ""  # no scripts, an origin of its own
    assert visit.elsewhere == []


def test_the_report_is_served_under_a_strict_policy_and_only_to_a_session(server, keys, run, visit):
    base = f"http://127.0.0.1:{server.port}"
    anonymous = httpx.get(f"{base}/ui/monitoring/report", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/ui/login")
    visit.sign_in(keys["investigator"])
    answer = visit.page.request.get(f"{base}/ui/monitoring/report")
    assert answer.status == 200 and "<svg" in answer.text()
    policy = answer.headers["content-security-policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy and "script-src" not in policy
    assert answer.headers["cache-control"] == "no-store"


def test_a_scorer_key_cannot_open_the_monitoring_page(visit, keys):
    visit.page.goto(visit.base + "/ui/login")
    visit.page.fill("#api_key", keys["scorer"])
    with visit.page.expect_navigation() as nav:
        visit.page.click("button:has-text('Sign in')")
    assert nav.value.status == 403
    visit.page.goto(visit.base + "/ui/monitoring")
    assert urlsplit(visit.page.url).path == "/ui/login"

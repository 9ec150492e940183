"""The investigators' workbench as a person uses it: a real server, a real headless Chromium.

One server (trained on synthetic claims, history loaded, later claims scored so that cases open)
and one browser for the module; each test gets a fresh browser context (its own cookies), signs in
as it needs, and every request that leaves 127.0.0.1 is aborted and recorded.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pandas as pd
import pytest

from features import catalog
from pipelines.demo import claim_json
from pipelines.local_server import Server
from serving.cases import QUEUES
from serving.keys import KeyStore
from serving.sessions import COOKIE

# serves the session's champion in a real server, driven by a real browser
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_mode")]

INVESTIGATOR = "alice"


@pytest.fixture(scope="module")
def home(champion, served_home) -> Path:
    """The session's champion with its history loaded, and the later claims to score."""
    home = served_home("pages")
    champion[1].to_parquet(home / "new_claims.parquet")
    return home


@pytest.fixture(scope="module")
def keys(home) -> dict[str, str]:
    store = KeyStore(home / "keys.json")
    return {
        "scorer": store.create("scorer")[0],
        "investigator": store.create("investigator", INVESTIGATOR)[0],
        "admin": store.create("admin")[0],
    }


@pytest.fixture(scope="module")
def server(home, keys):
    """The service, with the later claims scored through /score_batch (referred ones open cases)."""
    srv = Server(home)
    try:
        new = pd.read_parquet(home / "new_claims.parquet")
        claims = [claim_json(row) for _, row in new.iterrows()]
        routes = []
        for start in range(0, len(claims), 250):
            status, body = srv.call("POST", "/score_batch", {"claims": claims[start : start + 250]}, keys["scorer"])
            assert status == 200, body
            routes += [r["route"] for r in body["results"]]
        assert sum(r in QUEUES for r in routes) >= 6, (
            f"too few referrals to test the queue: {pd.Series(routes).value_counts()}"
        )
        yield srv
    finally:
        srv.kill()


def test_an_investigator_signs_in_and_sees_the_queue(visit, keys):
    page = visit.sign_in(keys["investigator"])
    assert urlsplit(page.url).path == "/ui/queue"
    assert page.text_content("[data-testid=user]") == INVESTIGATOR
    rows = page.locator("table.cases tbody tr[data-claim-id]")
    assert rows.count() > 0
    assert rows.first.locator("a").get_attribute("href").startswith("/ui/claims/")
    cookie = next(c for c in visit.context.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"


def test_the_queue_filters_and_sorts_without_reloading_the_page(visit, keys):
    page = visit.sign_in(keys["investigator"])
    page.evaluate("window.__same_page = true")
    page.select_option("select[name=status]", "")  # any status
    with page.expect_response(lambda r: "/ui/queue?" in r.url):
        page.click("button:has-text('Apply')")
    with page.expect_response(lambda r: "sort=-amount" in r.url):
        page.click("th a:has-text('Amount')")  # largest first
    page.wait_for_selector("th[aria-sort=descending]")
    amounts = [
        float(t.replace(",", ""))
        for t in page.locator("table.cases tbody tr[data-claim-id] td:nth-child(8)").all_text_contents()
        if t != "—"
    ]
    assert amounts == sorted(amounts, reverse=True) and amounts
    assert page.evaluate("window.__same_page === true")  # htmx swapped the table in place
    shown = parse_qs(urlsplit(page.url).query, keep_blank_values=True)
    assert shown["sort"] == ["-amount"] and shown["status"] == [""]  # the address says what is shown


def test_a_bad_filter_is_named_on_the_page(visit, keys):
    visit.sign_in(keys["investigator"])
    response = visit.open("/ui/queue?min_score=lots")
    assert response.status == 422
    assert "min_score" in visit.page.text_content("#problems")


def test_take_next_opens_a_claim_assigned_to_me(visit, keys):
    visit.sign_in(keys["investigator"])
    page = visit.take_next()
    assert page.text_content("[data-testid=case-assignee]") == INVESTIGATOR
    assert page.text_content("[data-testid=case-status]") == "in_review"
    assert "take_next" in page.text_content("[data-testid=timeline]")


def test_the_claim_page_explains_both_scores_and_draws_the_network(visit, keys):
    visit.sign_in(keys["investigator"])
    page = visit.take_next()
    for model in ("fraud", "fast_track"):
        bars = page.locator(
            f"figure.waterfall[data-model={model}] g.bar.bar-up, figure.waterfall[data-model={model}] g.bar.bar-down"
        )
        assert bars.count() >= 3, model
        labels = [bars.nth(i).get_attribute("data-label") for i in range(bars.count())]
        spoken = [bars.nth(i).get_attribute("aria-label") for i in range(bars.count())]
        assert not set(labels) & set(catalog.BY_NAME), labels  # plain words, not feature names
        assert all(" the log-odds by " in s for s in spoken), spoken
        assert page.locator(f"figure.waterfall[data-model={model}] g.bar-total").count() == 1
    page.wait_for_selector("#network[data-drawn]", timeout=10_000)
    assert int(page.get_attribute("#network", "data-drawn")) >= 2
    assert page.locator("#network canvas").count() > 0
    linked = page.locator("[data-testid=linked-claims] li a")
    assert linked.count() >= 1
    assert linked.first.get_attribute("href").startswith("/ui/claims/")


def test_recording_confirmed_fraud_closes_the_case_and_shows_in_the_timeline(visit, keys):
    visit.sign_in(keys["investigator"])
    page = visit.take_next()
    page.select_option("#disposition", "confirmed_fraud")
    page.fill("#amount_saved", "1200")
    page.fill("#disposition-note", "staged collision, same payee as two earlier claims")
    with page.expect_navigation():
        page.click("button:has-text('Record disposition')")
    assert page.text_content("[data-testid=case-status]") == "closed"
    assert page.text_content("[data-testid=case-disposition]") == "confirmed_fraud"
    timeline = page.text_content("[data-testid=timeline]")
    assert "confirmed_fraud" in timeline and "staged collision" in timeline
    assert page.locator("button:has-text('Reopen')").count() == 1


def test_a_conflicting_change_shows_the_problem_with_its_status(visit, keys):
    visit.sign_in(keys["investigator"])
    page = visit.take_next()
    page.eval_on_selector("form[action$='/disposition'] input[name=version]", "e => e.value = '999'")
    page.select_option("#disposition", "not_proven")
    with page.expect_navigation() as nav:
        page.click("button:has-text('Record disposition')")
    assert nav.value.status == 409
    assert "version" in page.text_content("#problems")


def test_a_scorer_key_is_refused_at_sign_in(visit, keys):
    visit.open("/ui/login")
    visit.page.fill("#api_key", keys["scorer"])
    with visit.page.expect_navigation() as nav:
        visit.page.click("button:has-text('Sign in')")
    assert nav.value.status == 403
    assert "investigator" in visit.page.text_content("#problems")
    assert visit.cookie() is None


def test_an_unknown_key_is_refused_at_sign_in(visit):
    visit.open("/ui/login")
    visit.page.fill("#api_key", "cs_not-a-real-key")
    with visit.page.expect_navigation() as nav:
        visit.page.click("button:has-text('Sign in')")
    assert nav.value.status == 401 and visit.cookie() is None


def test_without_a_session_a_page_goes_to_sign_in_and_back(visit, keys):
    visit.open("/ui/queue?queue=specialist")
    assert urlsplit(visit.page.url).path == "/ui/login"
    visit.page.fill("#api_key", keys["investigator"])
    with visit.page.expect_navigation():
        visit.page.click("button:has-text('Sign in')")
    assert visit.page.url.endswith("/ui/queue?queue=specialist")


def test_a_post_without_the_csrf_token_is_refused(visit, keys):
    visit.sign_in(keys["investigator"])
    claim = visit.page.locator("table.cases tbody tr[data-claim-id]").first.get_attribute("data-claim-id")
    url = f"{visit.base}/ui/claims/{claim}/note"
    without = visit.page.request.post(url, form={"note": "no token"}, max_redirects=0)
    wrong = visit.page.request.post(url, form={"note": "bad token", "csrf_token": "guess"}, max_redirects=0)
    assert without.status == 403 and wrong.status == 403
    token = visit.page.get_attribute("input[name=csrf_token]", "value")
    with_header = visit.page.request.post(
        url, form={"note": "by htmx"}, headers={"X-CSRF-Token": token}, max_redirects=0
    )
    assert with_header.status == 303


def test_signing_out_ends_the_session(visit, keys, server):
    page = visit.sign_in(keys["investigator"])
    cookie = visit.cookie()
    with page.expect_navigation():
        page.click("button:has-text('Sign out')")
    assert urlsplit(page.url).path == "/ui/login" and visit.cookie() is None
    base = f"http://127.0.0.1:{server.port}"
    old = httpx.get(f"{base}/ui/queue", cookies={COOKIE: cookie}, follow_redirects=False)
    assert old.status_code == 303 and old.headers["location"].startswith("/ui/login")


def test_pages_work_with_the_network_blocked(visit, keys):
    visit.sign_in(keys["investigator"])
    claim = visit.page.locator("table.cases tbody tr[data-claim-id]").first.get_attribute("data-claim-id")
    visit.open(f"/ui/claims/{claim}")
    visit.page.wait_for_selector("#network[data-drawn]", timeout=10_000)
    scripts = visit.page.evaluate("[...document.scripts].map(s => s.src).filter(Boolean)")
    assert scripts and all(urlsplit(s).hostname == "127.0.0.1" for s in scripts)
    assert visit.elsewhere == []

"""The case store: opening, the queue, take next, the lifecycle, dispositions and the audit trail."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from features import schema
from features.config import Settings
from serving.cases import (
    ANALYZE_FROM,
    DISPOSITIONS,
    CaseError,
    CaseNotFound,
    CaseStore,
    InvalidDisposition,
    InvalidQuery,
    InvalidTransition,
    Referral,
    StaleVersion,
    outcome_for,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path, clock):
    if request.param == "sqlite":
        s = CaseStore(f"sqlite:///{tmp_path / 'cases.db'}", clock=clock)
        yield s
        s.close()
        return
    try:
        s = CaseStore(
            request.getfixturevalue("postgres_url"),
            prefix=f"t{uuid.uuid4().hex[:10]}_",
            clock=clock,
        )
    except CaseError as exc:
        pytest.skip(f"PostgreSQL: {exc}")
    yield s
    s.drop()
    s.close()


def referrals(n: int, route: str = "siu_referral") -> list[Referral]:
    """``n`` referred claims C000.. with distinct scores (C000 lowest)."""
    return [Referral(f"C{i:03d}", route, score=i / (n + 1), amount=1000.0 * i) for i in range(n)]


def ids(cases) -> list[str]:
    return [c.claim_id for c in cases]


# --- opening ----------------------------------------------------------------------------------


def test_opening_a_case_twice_keeps_the_first(store):
    first = store.open_cases([Referral("A", "siu_referral", 0.9, "north", 5000.0), Referral("F", "fast_track", 0.1)])
    assert ids(first) == ["A"]
    store.take_next("ann")
    again = store.open_cases([Referral("A", "siu_referral", 0.2), Referral("B", "specialist", 0.4)])
    assert ids(again) == ["B"]
    case = store.get("A")
    assert (case.status, case.assignee, case.priority, case.version) == ("in_review", "ann", 0.9, 2)
    assert [e.action for e in store.trail("A")].count("open") == 1
    with pytest.raises(CaseNotFound, match="'F'"):
        store.get("F")  # not referred: no case


def test_due_dates_follow_each_queues_sla(tmp_path, clock):
    store = CaseStore(f"sqlite:///{tmp_path / 'c.db'}", sla_days={"specialist": 3}, clock=clock)
    store.open_cases([Referral("S", "siu_referral", 0.9), Referral("P", "specialist", 0.5)])
    assert store.get("S").due_at == T0 + timedelta(days=14)
    assert store.get("P").due_at == T0 + timedelta(days=3)


def test_a_referral_comes_from_a_decision():
    decision = {"claim_id": "C-9", "route": "siu_referral", "scores": {"fraud": 0.8, "fast_track": 0.1}}
    assert Referral.of_decision(decision, region="west", amount=12.5) == Referral(
        "C-9", "siu_referral", 0.8, "west", 12.5
    )


# --- the queue --------------------------------------------------------------------------------


def test_queue_filters_and_sorts(store, clock):
    store.open_cases(referrals(6))
    clock.advance(days=20)  # the first six are now overdue (SLA 14 days)
    store.open_cases([Referral("N1", "specialist", 0.99, "south", 50.0), Referral("N2", "specialist", None, "south")])
    store.assign(["C001", "C004"], "bob", "lead")
    store.record_disposition("C005", "bob", "duplicate")

    assert ids(store.list_cases().cases) == ["N1", "C005", "C004", "C003", "C002", "C001", "C000", "N2"]
    assert ids(store.list_cases(sort="score").cases)[:2] == ["C000", "C001"]  # ascending, no score last
    assert ids(store.list_cases(sort="age", limit=2).cases) == ["C000", "C001"]
    assert ids(store.list_cases(sort="-amount", limit=2).cases) == ["C005", "C004"]
    assert ids(store.list_cases(assignee="bob").cases) == ["C004", "C001"]
    assert ids(store.list_cases(region="south", sort="age").cases) == ["N1", "N2"]
    assert ids(store.list_cases(queue="specialist").cases) == ["N1", "N2"]
    assert ids(store.list_cases(min_amount=2000, max_amount=3000).cases) == ["C003", "C002"]
    assert ids(store.list_cases(status="closed").cases) == ["C005"]
    assert ids(store.list_cases(status=["open"], unassigned=True, min_score=0.3).cases) == ["N1", "C003"]
    assert ids(store.list_cases(older_than_days=10).cases) == ["C005", "C004", "C003", "C002", "C001", "C000"]
    late = store.list_cases(overdue=True)
    assert ids(late.cases) == ["C004", "C003", "C002", "C001", "C000"]  # a closed case is never overdue
    assert all(c.overdue for c in late.cases)
    assert not any(c.overdue for c in store.list_cases(overdue=False).cases)

    page = store.list_cases(sort="age", limit=3, offset=3)
    assert ids(page.cases) == ["C003", "C004", "C005"] and page.total == 8


@pytest.mark.parametrize(
    "query, field", [({"sort": "colour"}, "sort"), ({"status": "lost"}, "status"), ({"limit": 0}, "limit")]
)
def test_a_bad_queue_query_names_its_field(store, query, field):
    with pytest.raises(InvalidQuery, match=field) as caught:
        store.list_cases(**query)
    assert caught.value.field == field


def test_take_next_gives_the_highest_priority_unassigned_case(store):
    store.open_cases(referrals(5))
    store.assign("C004", "carl", "lead")
    taken = store.take_next("ann")
    assert (taken.claim_id, taken.assignee, taken.status) == ("C003", "ann", "in_review")
    assert store.take_next("bob").claim_id == "C002"
    assert store.take_next("ann", queue="specialist") is None


def test_concurrent_take_next_never_hands_out_a_case_twice(store):
    store.open_cases(referrals(100))
    taken: list[str] = []
    errors: list[BaseException] = []

    def work(user: str) -> None:
        try:
            for _ in range(20):
                case = store.take_next(user)
                if case is not None:
                    taken.append(case.claim_id)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"user{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sorted(taken) == sorted(f"C{i:03d}" for i in range(100))  # each case once, every case taken
    assert store.list_cases(unassigned=True).total == 0


# --- the lifecycle ----------------------------------------------------------------------------


def test_not_fraud_needs_a_reason(store):
    store.open_cases(referrals(1))
    with pytest.raises(InvalidDisposition, match="reason") as caught:
        store.record_disposition("C000", "ann", "not_fraud", reason="  ")
    assert caught.value.field == "reason"
    closed = store.record_disposition("C000", "ann", "not_fraud", reason="receipts check out")
    assert (closed.status, closed.disposition, closed.disposition_reason) == (
        "closed",
        "not_fraud",
        "receipts check out",
    )


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"disposition": "guilty"}, "disposition"),
        ({"disposition": "confirmed_fraud", "amount_saved": -5}, "amount_saved"),
    ],
)
def test_a_bad_disposition_names_its_field(store, kwargs, field):
    store.open_cases(referrals(1))
    with pytest.raises(InvalidDisposition, match=field) as caught:
        store.record_disposition("C000", "ann", **kwargs)
    assert caught.value.field == field
    assert store.get("C000").status == "open"


def test_invalid_transitions_are_refused(store):
    store.open_cases(referrals(1))
    with pytest.raises(InvalidTransition, match="open to closed"):
        store.set_status("C000", "closed", "ann")
    with pytest.raises(InvalidTransition, match="nothing to reopen"):
        store.reopen("C000", "ann")
    store.record_disposition("C000", "ann", "confirmed_fraud", amount_saved=1200)
    for attempt in (
        lambda: store.record_disposition("C000", "ann", "not_proven"),
        lambda: store.set_status("C000", "in_review", "ann"),
        lambda: store.assign("C000", "bob", "lead"),
    ):
        with pytest.raises(InvalidTransition) as caught:
            attempt()
        assert caught.value.field == "status"
    reopened = store.reopen("C000", "lead", reason="new evidence")
    assert (reopened.status, reopened.disposition, reopened.closed_at) == ("reopened", None, None)
    assert store.set_status("C000", "in_review", "ann").status == "in_review"


def test_a_stale_version_is_refused(store):
    store.open_cases(referrals(1))
    read = store.get("C000")
    store.assign("C000", "bob", "lead", version=read.version)
    with pytest.raises(StaleVersion, match="version") as caught:
        store.set_status("C000", "in_review", "ann", version=read.version)
    assert caught.value.field == "version"
    assert store.get("C000").status == "open"


def test_an_unknown_case_is_named(store):
    with pytest.raises(CaseNotFound, match="'NOPE'"):
        store.set_status("NOPE", "in_review", "ann")
    store.open_cases(referrals(1))
    with pytest.raises(CaseNotFound, match="'NOPE'"):
        store.assign(["C000", "NOPE"], "bob", "lead")
    assert store.get("C000").assignee is None  # all or nothing
    with pytest.raises(CaseNotFound):
        store.add_note("NOPE", "ann", "hello")


# --- the audit trail --------------------------------------------------------------------------


def test_each_change_leaves_an_audit_event_with_previous_and_new_values(store, clock):
    store.open_cases(referrals(1))
    clock.advance(hours=1)
    store.take_next("ann")
    store.assign("C000", "bob", "lead")
    store.record_disposition(
        "C000", "bob", "not_fraud", reason="genuine loss", amount_saved=0, note="called the garage"
    )
    store.reopen("C000", "lead")
    changes = [(e.who, e.action, e.field, e.previous, e.new) for e in store.trail("C000") if e.field]
    assert changes == [
        ("ann", "take_next", "assignee", None, "ann"),
        ("ann", "take_next", "status", "open", "in_review"),
        ("lead", "assign", "assignee", "ann", "bob"),
        ("bob", "disposition", "status", "in_review", "closed"),
        ("bob", "disposition", "disposition", None, "not_fraud"),
        ("bob", "disposition", "disposition_reason", None, "genuine loss"),
        ("bob", "disposition", "amount_saved", None, "0"),
        ("bob", "disposition", "closed_at", None, "2026-03-02 10:00:00"),
        ("lead", "reopen", "status", "closed", "reopened"),
        ("lead", "reopen", "disposition", "not_fraud", None),
        ("lead", "reopen", "disposition_reason", "genuine loss", None),
        ("lead", "reopen", "amount_saved", "0", None),
        ("lead", "reopen", "closed_at", "2026-03-02 10:00:00", None),
        ("lead", "reopen", "due_at", "2026-03-16 09:00:00", "2026-03-16 10:00:00"),
    ]


def test_the_trail_is_in_order_and_records_notes_and_views(store, clock):
    store.open_cases(referrals(1))
    store.record_view("ann", "C000", "claim_page")
    clock.advance(minutes=5)
    store.add_note("C000", "ann", "asked for the invoice")
    store.record_view("ann", "UNREFERRED", "explain")  # any claim's views are kept
    trail = store.trail("C000")
    assert [(e.action, e.new) for e in trail] == [
        ("open", "siu_referral, score 0"),
        ("view", "claim_page"),
        ("note", "asked for the invoice"),
    ]
    assert [e.at for e in trail] == [T0, T0, T0 + timedelta(minutes=5)]
    assert trail[2].line() == "2026-03-02 09:05:00Z  ann  note  asked for the invoice"
    assert [e.seq for e in trail] == sorted(e.seq for e in trail)
    assert [e.new for e in store.trail("UNREFERRED")] == ["explain"]
    with pytest.raises(CaseNotFound, match="'GHOST'"):
        store.trail("GHOST")


def test_the_database_refuses_to_change_an_audit_event(store):
    store.open_cases(referrals(1))
    events = store.events
    for statement in (sa.update(events).values(who="mallory"), sa.delete(events)):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(statement)
    assert [e.who for e in store.trail("C000")] == ["system"]


# --- labels -----------------------------------------------------------------------------------


def test_dispositions_map_to_the_history_stores_labels():
    at = datetime(2026, 3, 9, 12, 0)
    assert outcome_for("confirmed_fraud", at) == {
        "investigated": True,
        "fraud_confirmed": True,
        "investigation_closed_date": at,
    }
    for cleared in ("not_fraud", "not_proven"):
        assert outcome_for(cleared, at) == {
            "investigated": True,
            "fraud_confirmed": False,
            "investigation_closed_date": at,
        }
    assert outcome_for("duplicate", at) == outcome_for("withdrawn", at) == {}
    assert all(set(outcome_for(d, at)) <= set(schema.OUTCOMES) for d in DISPOSITIONS)  # record_outcome's keywords
    with pytest.raises(InvalidDisposition, match="'guilty'"):
        outcome_for("guilty", at)


# --- the command ------------------------------------------------------------------------------


def _state_store(tmp_path) -> CaseStore:
    """The case store the ``cli`` fixture's commands open by default."""
    (tmp_path / "state").mkdir(exist_ok=True)
    return CaseStore(Settings(home=(tmp_path / "state").resolve()).resolved().cases_url)


def test_audit_prints_a_claims_trail(cli, tmp_path):
    store = _state_store(tmp_path)
    store.open_cases([Referral("C-7", "siu_referral", 0.93)])
    store.take_next("ann")
    store.record_view("ann", "C-7", "claim_page")
    store.close()
    result = cli("audit", "--claim", "C-7")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 4
    assert lines[0].endswith("system  open  siu_referral, score 0.93")
    assert lines[2].endswith("ann  take_next  status: open -> in_review")
    assert lines[3].endswith("ann  view  claim_page")


def test_audit_refuses_an_unknown_claim_in_one_line(cli, tmp_path):
    _state_store(tmp_path).close()
    result = cli("audit", "--claim", "NOPE")
    assert result.code == 2
    assert result.out == ""
    assert len(result.err_lines) == 1 and "'NOPE'" in result.err


def test_cases_list_shows_the_queue(cli, tmp_path):
    store = _state_store(tmp_path)
    store.open_cases([Referral("LOW", "siu_referral", 0.2), Referral("HIGH", "specialist", 0.9)])
    store.close()
    result = cli("cases", "list", "--status", "open")
    assert result.code == 0, result.err
    assert [line.split()[0] for line in result.out.splitlines()] == ["HIGH", "LOW"]
    bad = cli("cases", "list", "--sort", "colour")
    assert bad.code == 2 and len(bad.err_lines) == 1 and "sort" in bad.err


def test_a_sqlite_store_keeps_planner_statistics_once_it_holds_enough_cases(tmp_path):
    store = CaseStore(f"sqlite:///{tmp_path / 'cases.db'}")
    store.open_cases(referrals(10))

    def analysed() -> set[str]:
        with store.engine.connect() as conn:
            exists = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'").first()
            return {r[0] for r in conn.exec_driver_sql("SELECT tbl FROM sqlite_stat1")} if exists else set()

    assert analysed() == set()
    store.open_cases([Referral(f"D{i:05d}", "siu_referral", score=0.5) for i in range(ANALYZE_FROM)])
    assert {"cases", "case_events"} <= analysed()
    store.close()

"""Casework without a server: referred decisions open cases, dispositions and outcomes become the
history's labels at their decision time (the point-in-time rule extends to them), bad bodies name
the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from features import columns
from features.build import available_features
from features.data.synthetic import generate_claims
from features.errors import ClaimScoreError
from features.store.history import HistoryStore, as_canonical
from features.store.index import HistoryIndex
from features.store.online import online_features
from serving.api import error_answer
from serving.cases import CaseStore
from serving.casework import Casework
from serving.decision_log import Decision, DecisionLog


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def claims() -> pd.DataFrame:
    return as_canonical(generate_claims(3_000, seed=11))


@pytest.fixture
def work(tmp_path, claims):
    history = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    history.load(claims)
    last = claims["report_date"].max().to_pydatetime().replace(tzinfo=UTC)
    clock = Clock(last + timedelta(days=30))
    cases = CaseStore(f"sqlite:///{tmp_path / 'cases.db'}", clock=clock)
    log = DecisionLog(f"sqlite:///{tmp_path / 'decisions.db'}")
    yield Casework(cases, history, log), clock
    cases.close(), history.close(), log.close()


def decision(claim_id: str, route: str, fraud: float) -> Decision:
    return Decision(claim_id, "h", route, {"fraud": fraud, "fast_track": 0.1})


def refer(work: Casework, claims: pd.DataFrame, rows: list[int]) -> list[str]:
    picked = claims.iloc[rows]
    decisions = [decision(cid, "siu_referral", 0.9) for cid in picked["claim_id"]]
    work.log.write(decisions)
    records = picked[["claim_id", "region", "claimed_amount"]].to_dict("records")
    work.refer(decisions, records)
    return list(picked["claim_id"])


def test_only_referred_routes_open_cases_with_region_and_amount(work, claims):
    casework, _ = work
    rows = claims.iloc[:4]
    decisions = [
        decision(rows.claim_id.iloc[0], "siu_referral", 0.8),
        decision(rows.claim_id.iloc[1], "specialist", 0.4),
        decision(rows.claim_id.iloc[2], "standard", 0.1),
        decision(rows.claim_id.iloc[3], "fast_track", 0.01),
    ]
    opened = casework.refer(decisions, rows[["region", "claimed_amount"]].to_dict("records"))
    assert [(c.claim_id, c.queue) for c in opened] == [
        (rows.claim_id.iloc[0], "siu_referral"),
        (rows.claim_id.iloc[1], "specialist"),
    ]
    assert opened[0].region == rows.region.iloc[0] and opened[0].amount == pytest.approx(rows.claimed_amount.iloc[0])
    assert casework.refer(decisions, rows.to_dict("records")) == []  # scoring again opens nothing new


def test_a_disposition_is_the_claims_label_from_its_decision_time(work, claims):
    casework, clock = work
    (claim_id,) = refer(casework, claims, [100])
    case = casework.decide(claim_id, {"disposition": "confirmed_fraud", "amount_saved": 500}, "alice")
    row = casework.history.claim(claim_id)
    assert row["fraud_confirmed"] is True and row["investigated"] is True
    assert row["investigation_closed_date"] == case.closed_at.replace(tzinfo=None) == clock.now.replace(tzinfo=None)


@pytest.mark.parametrize(("disposition", "label"), [("not_proven", False), ("not_fraud", False)])
def test_cleared_dispositions_are_negative_labels(work, claims, disposition, label):
    casework, _ = work
    (claim_id,) = refer(casework, claims, [101])
    casework.decide(claim_id, {"disposition": disposition, "reason": "receipts check out"}, "alice")
    assert casework.history.claim(claim_id)["fraud_confirmed"] is label


@pytest.mark.parametrize("disposition", ["duplicate", "withdrawn"])
def test_dispositions_that_are_no_label_leave_the_history_as_it_was(work, claims, disposition):
    casework, _ = work
    (claim_id,) = refer(casework, claims, [102])
    before = casework.history.claim(claim_id)
    casework.decide(claim_id, {"disposition": disposition}, "alice")
    assert casework.history.claim(claim_id) == before


def test_reopening_withdraws_the_label(work, claims):
    casework, _ = work
    (claim_id,) = refer(casework, claims, [103])
    casework.decide(claim_id, {"disposition": "confirmed_fraud"}, "alice")
    casework.reopen(claim_id, "bob", "new evidence")
    row = casework.history.claim(claim_id)
    assert row["fraud_confirmed"] is None and row["investigation_closed_date"] is None
    assert casework.cases.get(claim_id).status == "reopened"


def test_later_claims_see_a_disposition_and_earlier_ones_never_do(work, claims):
    """The point-in-time rule, through the casework path: the same live claim of the referred
    claimant, reported just before and just after the disposition, in the service's in-memory index."""
    casework, clock = work
    feats = available_features(claims)
    index = HistoryIndex(casework.history)
    with_claimant = claims[claims["claimant_id"].notna() & claims["investigation_closed_date"].isna()]
    row = with_claimant.index[-1]
    (claim_id,) = refer(casework, claims, [claims.index.get_loc(row)])
    decided = clock.now.replace(tzinfo=None)

    def live(suffix: str, reported: datetime) -> dict:
        frame = claims.loc[[row]].assign(claim_id=f"LIVE-{suffix}", report_date=pd.Timestamp(reported))
        frame["incident_date"] = frame["report_date"] - pd.Timedelta(days=1)
        return columns.from_frame(as_canonical(frame))

    def prior(cols: dict) -> float:
        index.refresh()
        return float(online_features(index, cols, feats)["claimant_prior_fraud"][0])

    before_claim, after_claim = live("B", decided - timedelta(seconds=1)), live("A", decided + timedelta(seconds=1))
    was_before, was_after = prior(before_claim), prior(after_claim)
    casework.decide(claim_id, {"disposition": "confirmed_fraud"}, "alice")
    assert prior(before_claim) == was_before
    assert prior(after_claim) == was_after + 1


def test_outcomes_record_only_what_is_sent(work, claims):
    casework, _ = work
    claim_id = claims["claim_id"].iloc[200]
    before = casework.history.claim(claim_id)
    answer = casework.record_outcome(
        {"claim_id": claim_id, "settled_amount": 1234.5, "legal_representation": True}, "claims-system"
    )
    after = casework.history.claim(claim_id)
    assert answer["recorded"] == {"settled_amount": 1234.5, "legal_representation": True}
    assert after["settled_amount"] == 1234.5 and after["legal_representation"] is True
    assert {k: v for k, v in after.items() if k not in answer["recorded"]} == {
        k: v for k, v in before.items() if k not in answer["recorded"]
    }


def test_an_investigation_result_sent_as_an_outcome_is_a_label_at_its_date(work, claims):
    casework, _ = work
    claim_id = claims["claim_id"].iloc[201]
    casework.record_outcome(
        {
            "claim_id": claim_id,
            "investigation_result": "confirmed_fraud",
            "investigation_closed_date": "2026-02-01T10:00",
        },
        "claims-system",
    )
    row = casework.history.claim(claim_id)
    assert row["fraud_confirmed"] is True and row["investigation_closed_date"] == datetime(2026, 2, 1, 10, 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"disposition": "maybe"}, "disposition"),
        ({"disposition": "not_fraud"}, "reason"),
        ({"disposition": "confirmed_fraud", "amount_saved": float("inf")}, "amount_saved"),
        ({"disposition": "confirmed_fraud", "extra": 1}, "extra"),
        ([], "body"),
    ],
)
def test_bad_disposition_bodies_name_the_field_and_change_nothing(work, claims, body, field):
    casework, _ = work
    (claim_id,) = refer(casework, claims, [104])
    before = casework.history.claim(claim_id)
    with pytest.raises(ClaimScoreError) as err:  # refused by the body's model or by the case store
        casework.decide(claim_id, body, "alice")
    assert error_answer(err.value)[0]["errors"][0]["field"] == field and error_answer(err.value)[1] == 422
    assert casework.cases.get(claim_id).status == "open"
    assert casework.history.claim(claim_id) == before

"""Linked groups: the same link rule and the same groups in the batch features, through the history
store and through the service's in-memory index."""

from __future__ import annotations

import logging
import uuid

import pandas as pd
import pytest

from features import columns, schema
from features.build import build_features
from features.errors import HistoryError
from features.store.history import HistoryStore, as_canonical
from features.store.index import HistoryIndex
from features.store.online import online_features

GROUP = ["group_size", "group_prior_fraud"]
T0 = pd.Timestamp("2024-01-01 09:00")
FAR = 800
"""A live claim's day: past every trailing window, so only the group search reaches the history."""


def claims(rows: list[dict]) -> pd.DataFrame:
    """A canonical frame of hand-written claims: ``day`` (and ``closed``, the investigation's
    closing day) are days after ``T0``."""
    out = []
    for r in rows:
        r = dict(r)
        day = r.pop("day")
        if "closed" in r:
            r["investigation_closed_date"] = T0 + pd.Timedelta(days=r.pop("closed"))
        out.append(
            {
                "claim_id": r.pop("id"),
                "line_of_business": "motor",
                "report_date": T0 + pd.Timedelta(days=day),
                "incident_date": T0 + pd.Timedelta(days=day - 1),
                **r,
            }
        )
    return schema.conform(pd.DataFrame(out))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
        yield s
        s.close()
        return
    try:
        s = HistoryStore(
            request.getfixturevalue("postgres_url"),
            table=f"claim_history_{uuid.uuid4().hex[:12]}",
        )
    except HistoryError as exc:
        pytest.skip(f"PostgreSQL: {exc}")
    yield s
    s.drop()
    s.close()


def group_features(
    store: HistoryStore, history: pd.DataFrame, live: pd.DataFrame, max_rows: int = 20_000
) -> dict[str, dict[str, float]]:
    """The live claim's group features by each path: the batch features of history and claim together,
    ``online_features`` against the store, and against an in-memory index of the store."""
    store.load(history)
    batch = build_features(pd.concat([history, live], ignore_index=True), GROUP).iloc[-1]
    stored = online_features(store, live, GROUP, max_rows=max_rows).iloc[0]
    held = online_features(HistoryIndex(store), columns.from_frame(as_canonical(live)), GROUP, max_rows=max_rows)
    return {"batch": batch.to_dict(), "store": stored.to_dict(), "index": {k: v[0] for k, v in held.items()}}


def read_ids(store: HistoryStore, live: pd.DataFrame) -> dict[str, set]:
    """Claim ids of the history rows the store and the index read for the live claim."""
    cols = columns.from_frame(as_canonical(live))
    return {
        "store": set(store.history_columns(cols)["claim_id"]),
        "index": set(HistoryIndex(store).history_columns(cols)["claim_id"]),
    }


@pytest.mark.parametrize(
    "earlier, live, linked",
    [
        ("claimant", "claimant", True),
        ("provider", "provider", False),
        ("provider", "claimant", False),  # an account joins nobody on a claim paid to a provider,
        ("claimant", "provider", False),  # whoever else paid into it privately
    ],
)
def test_a_payee_account_links_claimants_unless_the_claim_pays_a_provider(store, earlier, live, linked):
    history = claims([{"id": "H-E", "day": 0, "claimant_id": "E", "payee_account": "acct", "payee_type": earlier}])
    claim = claims([{"id": "LIVE-F", "day": FAR, "claimant_id": "F", "payee_account": "acct", "payee_type": live}])
    by_path = group_features(store, history, claim)
    assert {path: f["group_size"] for path, f in by_path.items()} == dict.fromkeys(by_path, 2.0 if linked else 1.0)


@pytest.mark.parametrize(
    "account, paid_to, found",
    [
        ("acct-private", "claimant", {"H-PRIVATE"}),
        ("acct-repairer", "claimant", set()),  # the stored claim paid a provider: its account joins nobody
        ("acct-private", "provider", set()),  # the live claim pays a provider: its account starts no search
    ],
)
def test_the_group_search_follows_only_accounts_that_link(store, account, paid_to, found):
    history = claims(
        [
            {
                "id": "H-REPAIRED",
                "day": 0,
                "claimant_id": "E",
                "payee_account": "acct-repairer",
                "payee_type": "provider",
            },
            {
                "id": "H-PRIVATE",
                "day": 1,
                "claimant_id": "G",
                "payee_account": "acct-private",
                "payee_type": "claimant",
            },
        ]
    )
    store.load(history)
    claim = claims([{"id": "LIVE-F", "day": FAR, "claimant_id": "F", "payee_account": account, "payee_type": paid_to}])
    assert read_ids(store, claim) == {"store": found, "index": found}


@pytest.mark.parametrize("day, size", [(FAR, 3), (1.5, 2), (0.5, 1)])
def test_a_chain_through_a_phone_and_an_account_is_one_group_once_linked(store, day, size):
    # A and B share a phone (day 1); B and C share a private account (day 2); A's claim names neither
    history = claims(
        [
            {
                "id": "H-A",
                "day": 0,
                "claimant_id": "A",
                "phone": "p1",
                "investigated": True,
                "fraud_confirmed": True,
                "closed": 0.25,
            },
            {
                "id": "H-B",
                "day": 1,
                "claimant_id": "B",
                "phone": "p1",
                "payee_account": "acct",
                "payee_type": "claimant",
            },
            {"id": "H-C", "day": 2, "claimant_id": "C", "payee_account": "acct", "payee_type": "claimant"},
        ]
    )
    claim = claims([{"id": "LIVE-A", "day": day, "claimant_id": "A"}])
    by_path = group_features(store, history, claim)
    assert by_path == dict.fromkeys(by_path, {"group_size": float(size), "group_prior_fraud": 1.0})


def test_a_group_search_cut_at_max_rows_says_so_and_a_full_one_matches_the_batch(store, caplog):
    # claimants K0 .. K9 in a chain, each sharing a phone with the next
    history = claims(
        [{"id": f"H-{i}", "day": i, "claimant_id": f"K{i}", "phone": f"p{i // 2}"} for i in range(10)]
        + [{"id": f"H-{i}b", "day": 10 + i, "claimant_id": f"K{i}", "phone": f"p{(i + 1) // 2}"} for i in range(10)]
    )
    claim = claims([{"id": "LIVE-K0", "day": FAR, "claimant_id": "K0"}])
    full = group_features(store, history, claim)
    assert full == dict.fromkeys(full, {"group_size": 10.0, "group_prior_fraud": 0.0})
    with caplog.at_level(logging.WARNING, logger="features.store"):
        cut = group_features(store, history, claim, max_rows=4)
    assert cut["batch"]["group_size"] == 10.0
    assert cut["store"]["group_size"] < 10.0 and cut["index"]["group_size"] < 10.0
    warned = [r for r in caplog.records if "LIVE-K0" in r.getMessage() and "max_rows=4" in r.getMessage()]
    assert {r.name for r in warned} == {"features.store.history", "features.store.index"}

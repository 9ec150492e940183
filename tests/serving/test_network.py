"""The linked network of the investigators' claim page, read from the in-memory history index."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from features import columns
from features.data.synthetic import generate_claims
from features.identity import Identity
from features.store.history import HistoryStore, as_canonical
from features.store.index import HistoryIndex
from serving.network import NotInHistory, claim_network

IDENTITY = Identity()  # the built-in (public) secret: tests only
T0 = datetime(2024, 1, 1, 9, 0)
LINKING = ("claimant_id", "phone", "address", "payee_account")


def _history(*claims: dict) -> pd.DataFrame:
    """Hand-made claims, hashed as import hashes them: ``C0``, ``C1``... reported a day apart, each
    with a claimant, phone, address, account and provider of its own unless its dict names one."""
    n = len(claims)
    frame = as_canonical(generate_claims(n, seed=5)).copy()  # valid values for the other columns
    own = {
        "claim_id": [f"C{i}" for i in range(n)],
        "claimant_id": [f"K{i}" for i in range(n)],
        "phone": [f"0400 000 {i:03d}" for i in range(n)],
        "address": [f"{i} Own Street, Hobart" for i in range(n)],
        "payee_account": [f"062-000 {i:08d}" for i in range(n)],
        "payee_type": ["claimant"] * n,
        "provider_id": [f"V{i}" for i in range(n)],
        "report_date": [T0 + timedelta(days=i) for i in range(n)],
        "investigated": [False] * n,
        "fraud_confirmed": [None] * n,
        "investigation_closed_date": [None] * n,
    }
    for name, values in own.items():
        given = [claim.get(name, value) for claim, value in zip(claims, values)]
        frame[name] = pd.array(given, dtype=frame[name].dtype)
    return IDENTITY.hash_frame(frame)


RING = _history(
    {"claimant_id": "K0", "phone": "0400 111 111", "provider_id": "V-shop"},  # C0, the claim shown
    {"phone": "0400 111 111", "address": "7 Ring Road, Hobart"},  # C1: its phone
    {"claimant_id": "K0"},  # C2: its claimant
    {"address": "7 Ring Road, Hobart", "phone": "0400 333 333"},  # C3: C1's address, two hops
    {"phone": "0400 333 333"},  # C4: C3's phone, three hops
    {"provider_id": "V-shop"},  # C5: only its provider
)


@pytest.fixture
def store(tmp_path):
    s = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    yield s
    s.close()


def _index(store: HistoryStore, frame: pd.DataFrame) -> HistoryIndex:
    store.load(frame)
    return HistoryIndex(store)


def _claims(network: dict) -> dict[str, int]:
    """Claim id -> hop of the claims shown."""
    return {n["claim_id"]: n["hop"] for n in network["nodes"] if n["kind"] == "claim"}


def _node(network: dict, claim_id: str) -> dict:
    return next(n for n in network["nodes"] if n.get("claim_id") == claim_id)


def test_claims_within_two_hops_are_shown_with_their_hop(store):
    index = _index(store, RING)
    network = claim_network(index, "C0")
    assert _claims(network) == {"C0": 0, "C1": 1, "C2": 1, "C3": 2}
    assert _claims(claim_network(index, "C0", hops=3)) == {"C0": 0, "C1": 1, "C2": 1, "C3": 2, "C4": 3}
    assert _claims(claim_network(index, "C0", hops=0)) == {"C0": 0}
    assert (network["shown_claims"], network["total_claims"], network["truncated"]) == (4, 4, False)


def test_hops_match_a_search_of_the_whole_table(tmp_path_factory):
    frame = IDENTITY.hash_frame(as_canonical(generate_claims(3_000, seed=11)))
    store = HistoryStore(f"sqlite:///{tmp_path_factory.mktemp('network') / 'history.db'}")
    index = _index(store, frame)
    linked = _pairs(frame)
    ids = frame["claim_id"].to_numpy()  # every claim linked to another, and some at random
    centres = [*sorted(set(linked["a"])), *np.random.default_rng(0).choice(ids, 50, replace=False)]
    neighbours = linked.groupby("a")["b"].agg(set).to_dict()
    far = 0
    for centre in centres:
        expected = {centre: 0}
        for hop in (1, 2):
            level = [c for c, h in expected.items() if h == hop - 1]
            expected |= dict.fromkeys(set().union(*(neighbours.get(c, set()) for c in level)) - set(expected), hop)
        network = claim_network(index, str(centre), max_claims=len(frame))
        assert _claims(network) == expected, centre
        assert not network["truncated"] and network["total_claims"] == len(expected)
        far += sum(hop == 2 for hop in expected.values())
    assert far > 50  # the centres reach two hops out, so the second hop is tested
    store.close()


def _pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Every pair of claims ``a``, ``b`` one hop apart, from the whole table: they share a claimant,
    phone, address or payee account (an account paid to a provider shares nothing)."""
    paid_to_claimant = frame["payee_type"].fillna("") != "provider"
    pairs = []
    for col in LINKING:
        side = frame.loc[paid_to_claimant if col == "payee_account" else slice(None), ["claim_id", col]].dropna()
        both = side.merge(side, on=col, suffixes=("_a", "_b"))
        pairs.append(both.loc[both["claim_id_a"] != both["claim_id_b"], ["claim_id_a", "claim_id_b"]])
    return pd.concat(pairs).set_axis(["a", "b"], axis=1).drop_duplicates()


def test_providers_are_shown_but_link_no_claims(store):
    index = _index(store, RING)
    network = claim_network(index, "C0")
    assert "C5" not in _claims(network)
    provider = next(n for n in network["nodes"] if n["kind"] == "provider")
    assert provider["label"] == "V-shop"
    assert {"source": "claim:C0", "target": provider["id"], "kind": "provider_id"} in network["edges"]


def test_an_account_paid_to_a_provider_links_no_claims(store):
    shop = {"payee_account": "062-999 00000001", "payee_type": "provider"}
    index = _index(
        store,
        _history(
            shop,  # C0: paid to its repairer
            shop,  # C1: the same repairer's account
            {"payee_account": "062-999 00000001"},  # C2: a claimant giving that account
            {"payee_account": "062-555 00000002"},  # C3: paid to the claimant
            {"payee_account": "062-555 00000002", "payee_type": "provider"},  # C4: that account, to a provider
            {"payee_account": "062-555 00000002"},  # C5: that account, to a claimant
        ),
    )
    network = claim_network(index, "C0")
    assert _claims(network) == {"C0": 0}
    assert [n["kind"] for n in network["nodes"]].count("payee_account") == 1  # shown on the claim
    assert _claims(claim_network(index, "C3")) == {"C3": 0, "C5": 1}


def test_confirmed_fraud_is_highlighted_once_decided_by_now(store):
    decided = T0 + timedelta(days=60)
    index = _index(
        store,
        _history(
            {"phone": "0400 111 111"},
            {"phone": "0400 111 111", "fraud_confirmed": True, "investigation_closed_date": decided},
            {"phone": "0400 111 111", "fraud_confirmed": True},  # no closing date: not decided
            {"phone": "0400 111 111", "fraud_confirmed": False, "investigation_closed_date": T0},
        ),
    )

    def highlighted(now: datetime) -> set[str]:
        network = claim_network(index, "C0", now=now)
        return {n["claim_id"] for n in network["nodes"] if n["kind"] == "claim" and n["confirmed_fraud"]}

    assert highlighted(decided - timedelta(seconds=1)) == set()
    assert highlighted(decided) == {"C1"}
    assert highlighted(datetime(2024, 3, 1, 20, 0, tzinfo=UTC)) == {"C1"}  # 9:00 UTC, decided before
    assert highlighted(datetime(2024, 3, 1, 10, 0, tzinfo=UTC) + timedelta(hours=-2)) == set()
    assert highlighted(None) == {"C1"}  # the current time


def test_the_search_stops_at_max_claims_nearest_then_most_recent(store):
    phone = {"phone": "0400 111 111"}
    near = [dict(phone) for _ in range(8)]  # C1..C8 share the claim's phone
    near[3]["report_date"] = near[4]["report_date"] = T0 + timedelta(days=30)  # C4, C5: the latest, tied
    index = _index(store, _history(phone, *near, {"claimant_id": "K1"}))  # C9: C1's claimant, two hops
    network = claim_network(index, "C0", max_claims=4)
    assert _claims(network) == {"C0": 0, "C4": 1, "C5": 1, "C8": 1}
    assert [n["claim_id"] for n in network["nodes"] if n["kind"] == "claim"] == ["C0", "C4", "C5", "C8"]
    assert network["truncated"] and network["shown_claims"] == 4
    assert network["total_claims"] == 9 and not network["total_exact"]  # the second hop was not searched

    network = claim_network(index, "C0", max_claims=9)
    assert network["truncated"] and (network["total_claims"], network["total_exact"]) == (10, True)
    network = claim_network(index, "C0", max_claims=10)
    assert not network["truncated"] and _claims(network)["C9"] == 2


def test_every_node_links_something_and_identifiers_show_only_a_short_hash(store):
    index = _index(store, RING)
    network = claim_network(index, "C0")
    shown = {n["id"] for n in network["nodes"]}
    assert {e["source"] for e in network["edges"]} | {e["target"] for e in network["edges"]} == shown
    by_kind = {}
    for n in network["nodes"]:
        by_kind.setdefault(n["kind"], []).append(n)
    assert sorted(n["label"] for n in by_kind["claimant"]) == ["K0", "K1", "K3"]
    # the claim's own identifiers, and C1's address (it links C3); not C2's or C3's own phone
    assert len(by_kind["phone"]) == 1 and len(by_kind["address"]) == 2 and len(by_kind["payee_account"]) == 1
    ring_phone = IDENTITY.hash_value("0400 111 111", "phone")
    assert by_kind["phone"][0]["label"] == ring_phone[3:11]
    text = json.dumps(network).lower()
    assert "ring road" not in text and "0400" not in text and "111111" not in text


def test_links_name_the_claim_page_and_the_answer_is_the_same_each_time(store):
    frame = _history({"claim_id": "C/7 #a", "phone": "0400 111 111"}, {"phone": "0400 111 111"})
    index = _index(store, frame)
    network = claim_network(index, "C/7 #a")
    assert _node(network, "C/7 #a")["href"] == "/ui/claims/C%2F7%20%23a"
    assert _node(network, "C1")["href"] == "/ui/claims/C1"
    assert _node(network, "C1")["report_date"] == "2024-01-02T09:00:00"
    assert _node(network, "C1")["claimed_amount"] == float(frame["claimed_amount"].iloc[1])
    assert json.loads(json.dumps(network)) == claim_network(index, "C/7 #a") == network


def test_claims_appended_and_outcomes_recorded_show_up(store):
    index = _index(store, RING)
    new = _history(*[{}] * 6, {"claim_id": "C-new", "phone": "0400 111 111"}).iloc[[6]]
    index.append(columns.from_frame(as_canonical(new)))
    assert _claims(claim_network(index, "C0"))["C-new"] == 1
    decided = T0 + timedelta(days=90)
    store.record_outcome("C3", investigated=True, fraud_confirmed=True, investigation_closed_date=decided)
    index.refresh()
    assert _node(claim_network(index, "C0", now=decided), "C3")["confirmed_fraud"]
    store.delete(["C1"])
    index.refresh()
    assert _claims(claim_network(index, "C0")) == {"C0": 0, "C2": 1, "C-new": 1}  # C3 was C1's link


def test_an_unknown_claim_is_refused_by_name(store):
    index = _index(store, RING)
    with pytest.raises(NotInHistory, match="'C99' is not in the claim history"):
        claim_network(index, "C99")
    with pytest.raises(ValueError, match="max_claims"):
        claim_network(index, "C0", max_claims=0)

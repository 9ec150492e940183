"""The in-memory history index answers as the history store does and follows every write to the
store, its own and other writers'."""

from __future__ import annotations

import numpy as np
import pytest

from features import columns
from features.store import history as history_store
from features.store.history import HistoryStore, as_canonical
from features.store.index import HistoryIndex


@pytest.fixture(scope="module")
def claims(prepared_claims):
    return prepared_claims(3_000, seed=21)


@pytest.fixture
def store(tmp_path):
    s = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    yield s
    s.close()


def _live(claims, rows) -> dict:
    return columns.from_frame(as_canonical(claims.iloc[rows]))


def _ids(cols: dict) -> set:
    return set(cols["claim_id"])


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object:
        return a.tolist() == b.tolist()
    return np.array_equal(a, b, equal_nan=True)


def test_the_index_reads_the_rows_the_store_reads(claims, store):
    store.load(claims.iloc[:2_500])
    index = HistoryIndex(store)
    rng = np.random.default_rng(0)
    read = 0
    for size in (1, 1, 5, 32):
        for _ in range(6):
            live = _live(claims, np.sort(rng.choice(np.arange(2_500, 3_000), size, replace=False)))
            expected, got = store.history_columns(live), index.history_columns(live)
            assert _ids(got) == _ids(expected)
            ours, theirs = np.argsort(got["claim_id"].astype(str)), np.argsort(expected["claim_id"].astype(str))
            for name in got:
                assert _same(got[name][ours], expected[name][theirs]), name
            read += len(_ids(got))
    assert read > 500


def test_claims_loaded_outcomes_recorded_and_claims_deleted_by_others_are_followed(claims, store, monkeypatch):
    monkeypatch.setattr(history_store, "LISTED_CHANGES_MAX", 500)
    store.load(claims.iloc[:1_000])
    index = HistoryIndex(store)
    other = HistoryStore(store.engine.url.render_as_string(hide_password=False))  # another process's writer
    other.append(claims.iloc[1_000:1_050])
    decided = claims.iloc[1_000]
    other.record_outcome(
        decided["claim_id"], investigated=True, fraud_confirmed=True, investigation_closed_date="2030-01-01 00:00"
    )
    other.delete([claims["claim_id"].iloc[5]])
    assert index.refresh() == 50 + 1 + 1 and index.reloads == 1
    assert len(index) == 1_049
    live = _live(claims, [2_999])
    assert _ids(index.history_columns(live)) == _ids(store.history_columns(live))
    assert index.get(decided["claim_id"])["fraud_confirmed"] == 1.0
    assert index.get(claims["claim_id"].iloc[5]) is None
    assert index.refresh() == 0

    other.load(claims.iloc[1_050:2_000], chunk=100)  # a bulk write: the index reads everything again
    assert index.refresh() == 1 and index.reloads == 2 and len(index) == 1_999
    other.close()


def test_a_claim_given_twice_is_held_once_with_its_later_values(claims, store):
    index = HistoryIndex(store)
    twice = _live(claims, [7, 7])
    twice["claimed_amount"] = np.array([100.0, 250.0])
    index.append(twice)
    assert len(index) == 1 and len(store) == 1
    assert index.get(claims["claim_id"].iloc[7])["claimed_amount"] == 250.0
    live = _live(claims, [2_999])
    assert len(index.history_columns(live)["claim_id"]) == len(store.history_columns(live)["claim_id"])


def test_its_own_appends_are_held_at_once_and_not_read_back(claims, store):
    index = HistoryIndex(store)
    index.append(_live(claims, list(range(40))))
    assert len(index) == 40 and len(store) == 40
    assert index.refresh() == 0  # the change rows it wrote itself are already applied
    assert index.reloads == 1

"""The batcher: claims waiting together are scored together, without mixing a claim with itself,
without losing a request when a batch fails."""

from __future__ import annotations

import threading

import pytest

from serving.batching import Batcher, Job


class Recorder:
    """A ``process`` that records each batch's claim ids and holds the first batch until released."""

    def __init__(self, fail_on: str | None = None):
        self.batches: list[list[str]] = []
        self.started, self.release = threading.Event(), threading.Event()
        self.fail_on = fail_on

    def __call__(self, jobs: list[Job]) -> list[list[dict]]:
        ids = [r["claim_id"] for job in jobs for r in job.records]
        self.batches.append(ids)
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(10)
        if self.fail_on in ids:
            raise RuntimeError(f"cannot score {self.fail_on}")
        return [[{"claim_id": r["claim_id"], "batch": len(self.batches)} for r in job.records] for job in jobs]


def _claims(*ids: str) -> list[dict]:
    return [{"claim_id": i} for i in ids]


def _while_busy(recorder: Recorder, batcher: Batcher, *requests: tuple[str, ...]):
    """Submit ``requests`` while the worker is busy with a first claim, then let it go on."""
    first = batcher.submit(_claims("first"), [{}], "k")
    assert recorder.started.wait(10)
    futures = [batcher.submit(_claims(*ids), [{}] * len(ids), "k") for ids in requests]
    recorder.release.set()
    return first, futures


def test_claims_waiting_together_are_scored_in_one_batch_in_order():
    recorder = Recorder()
    batcher = Batcher(recorder)
    first, futures = _while_busy(recorder, batcher, ("a",), ("b", "c"), ("d",))
    answers = [f.result(10) for f in futures]
    assert first.result(10) == [{"claim_id": "first", "batch": 1}]
    assert recorder.batches == [["first"], ["a", "b", "c", "d"]]
    assert [[a["claim_id"] for a in answer] for answer in answers] == [["a"], ["b", "c"], ["d"]]
    batcher.close()


def test_the_same_claim_id_never_shares_a_batch():
    recorder = Recorder()
    batcher = Batcher(recorder)
    _, futures = _while_busy(recorder, batcher, ("x",), ("x",), ("y",))
    assert [f.result(10)[0]["batch"] for f in futures] == [2, 3, 2]
    assert recorder.batches[1:] == [["x", "y"], ["x"]]
    batcher.close()


def test_a_batch_holds_at_most_max_claims_but_a_larger_request_still_runs_alone():
    recorder = Recorder()
    batcher = Batcher(recorder, max_claims=3)
    _, futures = _while_busy(recorder, batcher, ("a", "b"), ("c", "d"), ("e", "f", "g", "h"), ("i",))
    for f in futures:
        f.result(10)
    assert recorder.batches[1:] == [["a", "b", "i"], ["c", "d"], ["e", "f", "g", "h"]]
    batcher.close()


def test_a_failing_batch_fails_each_of_its_requests_and_the_next_batch_is_scored():
    recorder = Recorder(fail_on="bad")
    batcher = Batcher(recorder)
    _, futures = _while_busy(recorder, batcher, ("ok",), ("bad",))
    for f in futures:
        with pytest.raises(RuntimeError, match="cannot score bad"):
            f.result(10)
    assert batcher.submit(_claims("later"), [{}], "k").result(10)[0]["claim_id"] == "later"
    batcher.close()


def test_a_busy_batcher_waits_for_claims_arriving_close_behind_and_a_quiet_one_does_not():
    recorder = Recorder()
    recorder.release.set()  # no batch is held
    batcher = Batcher(recorder, gap_s=0.5, linger_s=5.0)
    batcher.submit(_claims("quiet"), [{}], "k").result(10)  # a quiet worker: scored at once, alone
    batcher.mean_claims = 8.0  # as after batches of eight
    first = batcher.submit(_claims("a"), [{}], "k")
    second = batcher.submit(_claims("b"), [{}], "k")  # well within the gap: joins the first
    assert first.result(10)[0]["batch"] == second.result(10)[0]["batch"] == 2
    assert recorder.batches == [["quiet"], ["a", "b"]]
    batcher.close()


def test_a_busy_batcher_stops_waiting_once_the_batch_is_full():
    recorder = Recorder()
    recorder.release.set()
    batcher = Batcher(recorder, max_claims=2, gap_s=30.0, linger_s=60.0)
    batcher.mean_claims = 8.0
    futures = [batcher.submit(_claims(i), [{}], "k") for i in ("a", "b")]
    assert [f.result(10)[0]["batch"] for f in futures] == [1, 1]  # well before the 30 s gap
    batcher.close()

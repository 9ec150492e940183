"""Claims that arrive together are scored together: one feature pass, one model call, one decision-log
commit for every claim waiting, instead of one each.

Requests put their claims on a queue and wait on a future; one worker thread takes everything that
is waiting (up to ``max_claims``) and scores it as one batch. A quiet service scores a claim that
arrives when the worker is idle at once, alone, so it answers as fast as it can. A busy one (its
recent batches held more than one claim on average) lingers a moment for the claims arriving right
behind the first: while claims keep coming less than ``gap_s`` apart, for at most ``linger_s``.
Without that, answers leave in bursts and their clients' next claims arrive in one: the worker took
the first one or two alone and the rest a batch later, and most of what a batch costs (features,
both models, the reasons, two commits) is paid once per batch, whatever its size. Nothing is
dropped: a request waits its turn however long the queue is (the HTTP server's own timeout is the
bound), unlike an adaptive batcher that answers 503 when its latency budget runs out.

Two claims with the same ``claim_id`` never share a batch (a re-scored claim replaces its stored
row, so the second waits for the first). Claims in one batch are features of one table: a claim sees
the others reported strictly before it, as in the batch features.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_CLAIMS = 256
"""Claims scored together at most (a /score_batch request larger than this is scored alone)."""
GAP_S = 0.001
"""A busy worker waits for the next claim while claims keep arriving less than this apart (answers
sent together come back spaced by the HTTP thread's work on each request; the gap is a little more) ..."""
LINGER_S = 0.003
"""... for at most this long after the first. With it, ``claimscore_batch_claims`` in /metrics shows
batches of one or two claims all but gone under load, and ``python -m bench.run serving`` answers
more claims per second (bench/RESULTS.md)."""
BUSY_MEAN_CLAIMS = 1.5
"""A worker is busy while its batches (a moving average) hold more claims than this."""


@dataclass
class Job:
    """One request's claims (validated records), the request bodies and the caller's key."""

    records: list[dict[str, Any]]
    payloads: list[Any]
    key_id: str
    future: Future = field(default_factory=Future)


class Batcher:
    """Runs ``process(jobs)`` on one worker thread for batches of waiting jobs; ``process`` returns
    one list of answers per job (or raises: every job of that batch then gets the error)."""

    def __init__(
        self,
        process: Callable[[list[Job]], list[list[dict]]],
        max_claims: int = DEFAULT_MAX_CLAIMS,
        gap_s: float = GAP_S,
        linger_s: float = LINGER_S,
    ):
        self._process = process
        self.max_claims = max_claims
        self.gap_s, self.linger_s = gap_s, linger_s
        self.mean_claims = 1.0
        """Claims per batch, a moving average over the last few batches."""
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="claimscore-batcher", daemon=True)
        self._worker.start()

    def submit(self, records: list[dict[str, Any]], payloads: list[Any], key_id: str) -> Future:
        """Queue a request's claims; the future resolves to their answers, in order."""
        job = Job(records, payloads, key_id)
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._queue.append(job)
            self._cond.notify()
        return job.future

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._worker.join(timeout=10)

    def _take(self) -> list[Job]:
        """The waiting jobs that fit in one batch, oldest first (the first always fits)."""
        jobs: list[Job] = []
        ids: set[Any] = set()
        claims = 0
        kept: deque[Job] = deque()
        while self._queue:
            job = self._queue.popleft()
            job_ids = {r.get("claim_id") for r in job.records}
            if jobs and (claims + len(job.records) > self.max_claims or ids & job_ids):
                kept.append(job)
                continue
            jobs.append(job)
            ids |= job_ids
            claims += len(job.records)
        self._queue.extendleft(reversed(kept))
        return jobs

    def _linger(self) -> None:
        """Wait (the lock released) while claims keep arriving close behind each other."""
        deadline = time.monotonic() + self.linger_s
        seen = len(self._queue)
        while not self._closed and sum(len(job.records) for job in self._queue) < self.max_claims:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(min(self.gap_s, left))
            if len(self._queue) == seen:  # nothing came within the gap
                return
            seen = len(self._queue)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed and not self._queue:
                    return
                if self.mean_claims > BUSY_MEAN_CLAIMS:
                    self._linger()
                jobs = self._take()
            self.mean_claims += 0.2 * (sum(len(job.records) for job in jobs) - self.mean_claims)
            try:
                answers = self._process(jobs)
            except BaseException as exc:
                for job in jobs:
                    job.future.set_exception(exc)
            else:
                for job, answer in zip(jobs, answers):
                    job.future.set_result(answer)

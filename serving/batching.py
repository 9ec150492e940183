"""Claims that arrive together are scored together: one feature pass, one model call, one decision-log
commit for every claim waiting, instead of one each.

Requests put their claims on a queue and wait on a future; one worker thread takes everything that
is waiting (up to ``max_claims``) and scores it as one batch. Nothing is held back on purpose: a claim
that arrives when the worker is idle is scored at once, alone, so a quiet service answers as fast as
it can, and a busy one answers more claims per batch (throughput grows with concurrency). Nothing is
dropped either: a request waits its turn however long the queue is (the HTTP server's own timeout is
the bound), unlike an adaptive batcher that answers 503 when its latency budget runs out.

Two claims with the same ``claim_id`` never share a batch (a re-scored claim replaces its stored
row, so the second waits for the first). Claims in one batch are features of one table: a claim sees
the others reported strictly before it, as in the batch features.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

DEFAULT_MAX_CLAIMS = 256
"""Claims scored together at most (a /score_batch request larger than this is scored alone)."""


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

    def __init__(self, process: Callable[[list[Job]], list[list[dict]]], max_claims: int = DEFAULT_MAX_CLAIMS):
        self._process = process
        self.max_claims = max_claims
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

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed and not self._queue:
                    return
                jobs = self._take()
            try:
                answers = self._process(jobs)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                for job in jobs:
                    job.future.set_exception(exc)
            else:
                for job, answer in zip(jobs, answers):
                    job.future.set_result(answer)

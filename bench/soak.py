"""Soak: ten minutes at 16 concurrent clients mixing every endpoint, with no answer but the one
expected, resident memory and p99 watched minute by minute.

    python -m bench.run soak                  # the full run; writes bench/results/soak.json and RESULTS.md
    python -m bench.soak --seconds 60 --warm-up 20   # a quick check: prints the JSON, writes nothing

The state is what ``make demo`` builds (:func:`bench.serving.prepare_models`: 200,000 synthetic
claims trained on, promoted and loaded into the history store), with enough new claims of the
same population kept aside for the whole run, each with its own claim id. The server is
:class:`pipelines.local_server.Server` (two workers) with the per-key rate limit off
(``CLAIMSCORE_RATE_LIMIT_PER_SECOND=0``), so the soak measures the service, not the limiter.

Each of the 16 clients (asyncio, one keep-alive connection each, the lean client of
:mod:`bench.serving`) draws its next request from :data:`MIX`: mostly ``POST /score`` of the next
new claim (each is logged and appended to the history, which grows all along), batches of
:data:`BATCH` new claims, ``/explain`` of a claim scored earlier, ``GET /model``, case lists, one
case, ``POST /outcomes`` for a claim scored earlier, a disposition closing a case no one closed
yet, the health probes, and the workbench's queue and claim pages signed in through the sign-in
form (one investigator session per client). Scoring and outcomes use a scorer's key, the cases and
``/explain`` an investigator's; ``GET /metrics`` is scraped every :data:`SCRAPE_S` seconds on a
connection of its own, as Prometheus would. Requests that need a claim scored or a case opened
before them are drawn as ``/score`` until there is one, so every answer expected is a 200: any
other status, or no answer within :data:`TIMEOUT_S`, is an error, listed with its body.

Every :data:`SAMPLE_S` seconds the resident memory (``VmRSS``) of the arbiter and every worker is
summed (the workers' pids read again each time, in case one is replaced). "Flat" compares the mean
of the first minute after the warm-up with the mean of the last minute. Each worker holds the
whole history in memory (:class:`features.store.index.HistoryIndex`), so the growth is also given
per claim added. The load generator runs on the same cores as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from pathlib import Path

import numpy as np

from bench.serving import Client, latency

SECONDS = 600
CLIENTS = 16
WARM_UP_S = 120
WINDOW_S = 60
SAMPLE_S = 5
TIMEOUT_S = 60
BATCH = 10
SEED = 29
SCRAPE_S = 15
"""How often ``GET /metrics`` is asked, as a Prometheus server scrapes (its usual interval)."""
CLAIMS_PER_S = 500
"""New claims kept aside per second of soak: above what 16 clients get scored on 2 cores (the
mix included), so the run never lacks a fresh claim (if it does, it ends early and says so)."""
MIX: dict[str, int] = {
    "score": 64,
    "score_batch": 3,
    "explain": 4,
    "model": 3,
    "cases": 5,
    "case": 4,
    "outcomes": 5,
    "disposition": 3,
    "healthz": 1,
    "readyz": 1,
    "livez": 1,
    "ui_queue": 3,
    "ui_claim": 3,
}
"""Relative weights of the requests each client draws (``GET /metrics`` is scraped apart, every
:data:`SCRAPE_S` seconds)."""
CASE_LISTS = (
    "/cases",
    "/cases?queue=siu_referral&status=open",
    "/cases?queue=specialist&sort=-amount&limit=20",
    "/cases?status=closed&sort=-age",
)
QUEUES = ("siu_referral", "specialist")
DISPOSITIONS = ("confirmed_fraud", "not_proven", "not_fraud", "duplicate", "withdrawn")


def _say(what: str) -> None:
    """Progress on stderr (stdout ends with the JSON result)."""
    print(f"[soak {time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


class Connection(Client):
    """:class:`bench.serving.Client` for any method, path and headers (keys or a session cookie)."""

    def __init__(self, port: int):
        super().__init__(port, key="")

    async def reopen(self) -> None:
        self.writer.close()
        await self.__aenter__()

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        head = await self.reader.readuntil(b"\r\n\r\n")
        fields = [line.lower() for line in head.decode("latin-1").split("\r\n")]
        status = int(fields[0].split()[1])
        length = next((int(f.split(":", 1)[1]) for f in fields if f.startswith("content-length:")), None)
        if length is not None:
            answer = await self.reader.readexactly(length)
        elif "transfer-encoding: chunked" in fields:
            answer = await self._chunks()
        else:
            raise ValueError(f"an answer without its length to {method} {path}: {head!r}")
        if "connection: close" in fields:  # the server asks for a new connection (see serving.api._Connections)
            await self.reopen()
        return status, answer

    async def _chunks(self) -> bytes:
        parts = []
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        await self.reader.readuntil(b"\r\n")
        return b"".join(parts)


class Soak:
    """The shared state of the clients: the new claims not sent yet, the claims scored and the
    cases opened, and what was measured."""

    def __init__(self, port: int, keys: dict[str, str], sessions: list[str], payloads: list[dict], seconds: float):
        self.port, self.seconds = port, seconds
        self.auth = {role: {"Authorization": f"Bearer {key}"} for role, key in keys.items()}
        self.sessions = sessions
        self.fresh = deque(payloads)
        self.scored: list[dict] = []
        self.referred: list[str] = []
        self.open: deque[str] = deque()
        self.requests: list[tuple[str, float, float]] = []
        """(request, seconds since the start when answered, seconds it took)"""
        self.errors: list[dict] = []
        self.scrapes: list[dict] = []
        """Each ``GET /metrics``: when, how long, how large its answer."""
        self.claims_scored = 0
        self.ran_out = False
        self.started = 0.0

    def now(self) -> float:
        return time.perf_counter() - self.started

    def _next_claims(self, n: int) -> list[dict] | None:
        """The next ``n`` new claims; None (and the soak ends) when they ran out: raise :data:`CLAIMS_PER_S`."""
        if len(self.fresh) < n:
            self.ran_out = True
            return None
        return [self.fresh.popleft() for _ in range(n)]

    def _scored(self, answers: list[dict], payloads: list[dict]) -> None:
        self.scored += payloads
        self.claims_scored += len(payloads)
        for answer in answers:
            if answer["route"] in QUEUES:
                self.referred.append(answer["claim_id"])
                self.open.append(answer["claim_id"])

    def draw(self, rng: random.Random) -> str:
        what = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        if what in ("explain", "outcomes") and not self.scored:
            return "score"
        if (what in ("case", "ui_claim") and not self.referred) or (what == "disposition" and not self.open):
            return "score"
        return what

    async def one(self, conn: Connection, what: str, rng: random.Random, session: str) -> None:
        """Send one request of kind ``what``; an answer other than 200 is an error."""
        scorer, investigator, page = self.auth["scorer"], self.auth["investigator"], {"Cookie": session}
        after: tuple | None = None
        if what in ("score", "score_batch"):
            claims = self._next_claims(1 if what == "score" else BATCH)
            if claims is None:
                return
            body = claims[0] if what == "score" else {"claims": claims}
            method, path, headers, after = "POST", f"/{what}", scorer, ("one" if what == "score" else "many", claims)
        elif what == "explain":
            method, path, headers, body = "POST", "/explain", investigator, rng.choice(self.scored)
        elif what == "outcomes":
            claim_id = rng.choice(self.scored)["claim_id"]
            outcome = {"settled_amount": round(rng.uniform(100, 20_000), 2), "disputed": rng.random() < 0.1}
            method, path, headers, body = "POST", "/outcomes", scorer, {"claim_id": claim_id, **outcome}
        elif what == "disposition":
            claim_id = self.open.popleft()  # each case is closed once, by one client
            disposition = rng.choice(DISPOSITIONS)
            decided = {"disposition": disposition, "reason": "soak: closed by the load generator"}
            if disposition == "confirmed_fraud":
                decided["amount_saved"] = round(rng.uniform(0, 10_000), 2)
            method, path, headers, body = "POST", f"/cases/{claim_id}/disposition", investigator, decided
        elif what in ("model", "metrics"):
            method, path, headers, body = "GET", f"/{what}", scorer, None
        elif what == "cases":
            method, path, headers, body = "GET", rng.choice(CASE_LISTS), investigator, None
        elif what == "case":
            method, path, headers, body = "GET", f"/cases/{rng.choice(self.referred)}", investigator, None
        elif what in ("healthz", "readyz", "livez"):
            method, path, headers, body = "GET", f"/{what}", {}, None
        elif what == "ui_queue":
            method, path, headers, body = "GET", "/ui/queue", page, None
        else:  # ui_claim
            method, path, headers, body = "GET", f"/ui/claims/{rng.choice(self.referred)}", page, None
        data = None if body is None else json.dumps(body).encode()
        t0 = time.perf_counter()
        try:
            status, answer = await asyncio.wait_for(conn.request(method, path, headers, data), TIMEOUT_S)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            self.errors.append({"request": what, "path": path, "status": 0, "body": repr(exc), "at_s": self.now()})
            await conn.reopen()
            return
        took = time.perf_counter() - t0
        self.requests.append((what, self.now(), took))
        if what == "metrics":
            self.scrapes.append({"at_s": self.now(), "ms": took * 1e3, "kb": len(answer) / 1024})
        if status != 200:
            text = answer[:1000].decode(errors="replace")
            self.errors.append({"request": what, "path": path, "status": status, "body": text, "at_s": self.now()})
            return
        if after is not None:
            kind, claims = after
            decoded = json.loads(answer)
            self._scored([decoded] if kind == "one" else decoded["results"], claims)

    async def client(self, i: int) -> None:
        rng = random.Random(SEED + i)
        async with Connection(self.port) as conn:
            while self.now() < self.seconds and not self.ran_out:
                await self.one(conn, self.draw(rng), rng, self.sessions[i % len(self.sessions)])

    async def scraper(self) -> None:
        """``GET /metrics`` every :data:`SCRAPE_S` seconds, as Prometheus would (a new connection
        each time: the server closes one left idle for more than a few seconds)."""
        while self.now() < self.seconds and not self.ran_out:
            started = self.now()
            async with Connection(self.port) as conn:
                await self.one(conn, "metrics", random.Random(SEED), "")
            await asyncio.sleep(max(0.0, SCRAPE_S - (self.now() - started)))


def rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    """A process's resident memory (``VmRSS``; ``VmHWM``: its high-water mark), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def sample_memory(server, soak: Soak, history_before: int, samples: list[dict]) -> None:
    """Every :data:`SAMPLE_S` seconds: the summed RSS of the arbiter and every worker, and the
    size of the SQLite WAL files (checkpoints keep them from growing)."""
    while soak.now() < soak.seconds and not soak.ran_out:
        pids = [server.proc.pid, *await asyncio.to_thread(server.workers)]
        each = {pid: rss_mb(pid) for pid in pids}
        samples.append(
            {
                "at_s": soak.now(),
                "rss_mb": sum(v for v in each.values() if v is not None),
                "pids": {str(pid): round(v, 1) for pid, v in each.items() if v is not None},
                "history_claims": history_before + soak.claims_scored,
                "wal_mb": {name: round(mb, 1) for name, mb in files_mb(server.home, "*.db-wal").items()},
            }
        )
        await asyncio.sleep(SAMPLE_S)


async def drive(server, soak: Soak, history_before: int) -> list[dict]:
    samples: list[dict] = []
    soak.started = time.perf_counter()
    memory = asyncio.create_task(sample_memory(server, soak, history_before, samples))
    await asyncio.gather(soak.scraper(), *(soak.client(i) for i in range(CLIENTS)))
    await memory
    return samples


# --- the figures -------------------------------------------------------------------------------


def per_minute(soak: Soak, samples: list[dict]) -> list[dict]:
    """Requests, latency and memory of each full minute."""
    minutes = []
    for m in range(int(soak.seconds // 60)):
        lo, hi = m * 60, (m + 1) * 60
        taken = [(what, s) for what, at, s in soak.requests if lo <= at < hi]
        scores = [s for what, s in taken if what == "score"]
        inside = [x for x in samples if lo <= x["at_s"] < hi]
        rss = [x["rss_mb"] for x in inside]
        minutes.append(
            {
                "minute": m + 1,
                "requests": len(taken),
                "errors": sum(lo <= e["at_s"] < hi for e in soak.errors),
                "p50_ms": float(np.percentile([s for _, s in taken], 50) * 1e3) if taken else None,
                "p99_ms": float(np.percentile([s for _, s in taken], 99) * 1e3) if taken else None,
                "score_p99_ms": float(np.percentile(scores, 99) * 1e3) if scores else None,
                "rss_mb": float(np.mean(rss)) if rss else None,
                "history_claims": max((x["history_claims"] for x in samples if x["at_s"] < hi), default=None),
                "wal_mb": max((sum(x["wal_mb"].values()) for x in inside), default=None),
                "metrics_kb": max((x["kb"] for x in soak.scrapes if lo <= x["at_s"] < hi), default=None),
            }
        )
    return minutes


def window(samples: list[dict], lo: float, hi: float) -> dict:
    inside = [x for x in samples if lo <= x["at_s"] < hi]
    return {
        "from_s": lo,
        "to_s": hi,
        "samples": len(inside),
        "rss_mb": float(np.mean([x["rss_mb"] for x in inside])),
        "history_claims": float(np.mean([x["history_claims"] for x in inside])),
    }


def memory_figures(samples: list[dict], seconds: float, warm_up: float) -> dict:
    """The mean RSS of the first window after the warm-up and of the last window, and the change."""
    span = min(WINDOW_S, (seconds - warm_up) / 2)
    first, last = window(samples, warm_up, warm_up + span), window(samples, seconds - span, seconds)
    added = last["history_claims"] - first["history_claims"]
    return {
        "first": first,
        "last": last,
        "change_pct": 100 * (last["rss_mb"] / first["rss_mb"] - 1),
        "claims_added": added,
        "kb_per_claim_added": (last["rss_mb"] - first["rss_mb"]) * 1024 / added if added else None,
    }


def p99_figures(minutes: list[dict], warm_up: float) -> dict:
    after = [m for m in minutes if (m["minute"] - 1) * 60 >= warm_up and m["p99_ms"] is not None]
    if not after:
        return {}
    p99 = [m["p99_ms"] for m in after]
    return {
        "first_minute": after[0]["minute"],
        "first_p99_ms": after[0]["p99_ms"],
        "last_minute": after[-1]["minute"],
        "last_p99_ms": after[-1]["p99_ms"],
        "max_over_min": max(p99) / min(p99),
    }


def by_request(soak: Soak) -> dict[str, dict]:
    grouped: dict[str, list[float]] = defaultdict(list)
    for what, _, s in soak.requests:
        grouped[what].append(s)
    errors = Counter(e["request"] for e in soak.errors)
    return {
        what: {"requests": len(grouped[what]), "errors": errors[what], **latency(grouped[what])}
        for what in (*MIX, "metrics")
        if grouped[what]
    }


def replaced_workers(samples: list[dict]) -> list[dict]:
    """When the worker pids changed between two samples: which went, which came."""
    events = []
    for before, after in zip(samples, samples[1:]):
        gone, new = set(before["pids"]) - set(after["pids"]), set(after["pids"]) - set(before["pids"])
        if gone or new:
            events.append({"between_s": [before["at_s"], after["at_s"]], "gone": sorted(gone), "new": sorted(new)})
    return events


def kernel_log() -> list[str]:
    """The kernel's messages (``dmesg``; empty where they cannot be read): a worker that crashed
    in native code leaves a ``segfault`` line there and nothing in the server's log."""
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


def files_mb(home: Path, pattern: str) -> dict[str, float]:
    return {p.name: p.stat().st_size / 2**20 for p in sorted(home.glob(pattern))}


def other_servers(ours: int) -> int:
    """BentoML servers on this machine that are not this soak's (another run's load, if any)."""
    out = subprocess.run(["pgrep", "-f", "bentoml serve"], capture_output=True, text=True).stdout.split()
    return sum(int(pid) != ours for pid in out)


# --- the run -----------------------------------------------------------------------------------


def prepare(home: Path, seconds: float, timings: dict) -> tuple[list[dict], int]:
    """Models, history and the new claims to send (canonical JSON, report order); the history's size."""
    import pandas as pd

    from bench.serving import _cli, prepare_models
    from features.config import load_settings
    from features.store.history import HistoryStore
    from pipelines.demo import claim_json

    t0 = time.perf_counter()
    claims = prepare_models(home, new_claims=int(seconds * CLAIMS_PER_S))
    _cli(home, "history", "load", "--data", str(claims), "--source", "synthetic")
    timings["train_and_history_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = pd.read_parquet(home / "new.parquet").sort_values("report_date", kind="stable")
    payloads = [claim_json(row) for _, row in frame.iterrows()]
    timings["payloads_s"] = time.perf_counter() - t0
    store = HistoryStore(load_settings(env={"CLAIMSCORE_HOME": str(home)}).history_url)
    try:
        return payloads, len(store)
    finally:
        store.close()


def run(seconds: float, warm_up: float) -> dict:
    import sqlalchemy as sa

    from bench.fuzz import log_problems
    from bench.serving import _cpu_seconds
    from bench.workbench import sign_in
    from features.config import load_settings
    from features.store.history import HistoryStore
    from pipelines.local_server import Server
    from serving.decision_log import DecisionLog
    from serving.keys import KeyStore

    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        payloads, history_before = prepare(home, seconds, timings)
        _say(f"{history_before:,} claims in the history, {len(payloads):,} new ones to send; starting the server")
        keys = KeyStore(home / "keys.json")
        roles = {role: keys.create(role, f"soak {role}")[0] for role in ("scorer", "investigator")}
        os.environ["CLAIMSCORE_RATE_LIMIT_PER_SECOND"] = "0"  # the service's setting: no per-key limit
        t0 = time.perf_counter()
        server = Server(home)
        timings["server_start_s"] = time.perf_counter() - t0
        try:
            sessions = [f"claimscore_session={sign_in(server.port, roles['investigator'])}" for _ in range(CLIENTS)]
            soak = Soak(server.port, roles, sessions, payloads, seconds)
            metrics_before = len(server.call("GET", "/metrics", key=roles["scorer"])[1])
            workers = server.workers()
            others, load_before = other_servers(server.proc.pid), os.getloadavg()
            kernel_before = len(kernel_log())
            server_cpu, own_cpu = _cpu_seconds([server.proc.pid, *workers]), time.process_time()
            _say(f"soaking for {seconds:.0f} s at {CLIENTS} clients ({others} other BentoML servers running)")
            samples = asyncio.run(drive(server, soak, history_before))
            elapsed = soak.now()
            workers_after = server.workers()
            cpu = {
                "server_cpu_s": _cpu_seconds([server.proc.pid, *workers_after]) - server_cpu,
                "load_generator_cpu_s": time.process_time() - own_cpu,
            }
            load_after = os.getloadavg()
            kernel = [line for line in kernel_log()[kernel_before:] if "segfault" in line or "oom" in line.lower()]
            wal = files_mb(home, "*.db-wal")  # while the server runs: what its checkpoints left
            metrics_after = len(server.call("GET", "/metrics", key=roles["scorer"])[1])
            prometheus_mb = sum(p.stat().st_size for p in (home / "bentoml").rglob("*.db")) / 2**20
        finally:
            server.kill()
        settings = load_settings(env={"CLAIMSCORE_HOME": str(home)})
        store = HistoryStore(settings.history_url)
        history_after = len(store)
        store.close()
        log = DecisionLog(settings.decision_log_url)
        with log.engine.connect() as conn:
            decisions = conn.execute(sa.select(sa.func.count()).select_from(log.table)).scalar_one()
        databases = files_mb(home, "*.db")
        log_hits, log_excerpt = log_problems(home / "server.log")
    minutes = per_minute(soak, samples)
    return {
        "seconds": seconds,
        "elapsed_s": elapsed,
        "clients": CLIENTS,
        "warm_up_s": warm_up,
        "mix": MIX,
        "batch": BATCH,
        "rate_limit_per_second": 0,
        "requests": len(soak.requests) + sum(e["status"] == 0 for e in soak.errors),
        "errors": len(soak.errors),
        "error_list": soak.errors[:50],
        "ran_out_of_claims": soak.ran_out,
        "by_request": by_request(soak),
        "overall": latency([s for _, _, s in soak.requests]),
        "minutes": minutes,
        "p99": p99_figures(minutes, warm_up),
        "memory": memory_figures(samples, seconds, warm_up),
        "memory_samples": samples,
        "workers_before": workers,
        "workers_after": workers_after,
        "workers_replaced": replaced_workers(samples),
        "kernel_messages": kernel[:20],
        "history_before": history_before,
        "history_after": history_after,
        "claims_scored": soak.claims_scored,
        "cases_opened": len(soak.referred),
        "cases_closed": len(soak.referred) - len(soak.open),
        "decisions": decisions,
        "databases_mb": databases,
        "wal_mb": wal,
        "metrics_kb": {"before": metrics_before / 1024, "after": metrics_after / 1024},
        "scrapes": soak.scrapes,
        "prometheus_files_mb": prometheus_mb,
        "log_problem_lines": log_hits,
        "log_excerpt": log_excerpt,
        "cpu": cpu,
        "other_servers": others,
        "load_average": {"before": load_before[0], "after": load_after[0]},
        "setup": timings,
        "client": f"asyncio, {CLIENTS} keep-alive connections (bench.serving's lean client), in the bench process",
        "workers": len(workers),
        "cores": len(os.sched_getaffinity(0)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=SECONDS, help="how long the load runs")
    parser.add_argument("--warm-up", type=float, default=WARM_UP_S, help="seconds before memory and p99 are compared")
    args = parser.parse_args(argv)
    if not 0 <= args.warm_up < args.seconds:
        parser.error(f"--warm-up must be shorter than --seconds ({args.seconds:g})")
    # a secret of the bench's own keys the identifier hashes (bench/run.py sets the same one)
    os.environ.setdefault("CLAIMSCORE_IDENTITY_SECRET", "claimscore-bench-secret-not-for-production-0001")
    return run(args.seconds, args.warm_up)


if __name__ == "__main__":
    print(json.dumps(main()))
    sys.stdout.flush()

"""``/score`` over HTTP on 127.0.0.1: latency one request at a time, throughput at concurrency 32,
beside the in-process floor (LightGBM's own predict plus pred_contrib for both models, one claim at
a time, on the same claims).

The state is what ``make demo`` builds: 200,000 synthetic claims trained on, promoted and loaded into
the history store; the scored claims are new ones from the following quarter, each with its own
claim id (every scored claim is appended to the history, as in production). The load comes from
one asyncio process with keep-alive connections (it shares the 2 cores with the server). Every
answer other than 200 counts as an error: a claim answered 503 is a claim not scored.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HISTORY_CLAIMS = 200_000
SEQUENTIAL = 1_000
CONCURRENCY = 32
CONCURRENT_REQUESTS = 8_000
WARM_UP = 200
WORKERS = 2
"""``claimscore serve``'s default."""


def prepare_models(home: Path, new_claims: int = 0) -> Path:
    """Generate, train and promote as ``make demo`` does, with state in ``home``; the claims file.

    With ``new_claims``, that many later claims of the same population are kept aside in
    ``home / "new.parquet"`` (``generate --new-claims``): never trained on, never in the history."""
    claims = home / "claims.parquet"
    kept = ["--new-claims", str(new_claims), "--new-out", str(home / "new.parquet")] if new_claims else []
    for args in (
        ["generate", "--claims", str(HISTORY_CLAIMS), "--seed", "7", "--out", str(claims), *kept],
        ["train", "--data", str(claims), "--source", "synthetic"],
        ["promote", "--by", "bench", "--reason", "bench"],
    ):
        _cli(home, *args)
    return claims


def _cli(home: Path, *args: str) -> str:
    env = {**os.environ, "CLAIMSCORE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args], env=env, check=True, capture_output=True, text=True
    ).stdout


def prepare(home: Path) -> tuple[str, list[dict]]:
    """Models and history as ``make demo`` makes them; a scorer key and new claims in report order."""
    import pandas as pd

    from pipelines.demo import claim_json

    total = WARM_UP + SEQUENTIAL + CONCURRENT_REQUESTS
    claims = prepare_models(home, new_claims=total)
    new = home / "new.parquet"
    _cli(home, "history", "load", "--data", str(claims), "--source", "synthetic")
    key = _cli(home, "keys", "create", "--role", "scorer", "--name", "bench").strip()
    frame = pd.read_parquet(new).sort_values("report_date", kind="stable")
    return key, [claim_json(row) for _, row in frame.iterrows()]


def floor(home: Path, payloads: list[dict]) -> dict:
    """Per claim, in process: LightGBM predict + pred_contrib for both champion models (features
    already built: the floor leaves out everything but the models)."""
    os.environ["CLAIMSCORE_HOME"] = str(home)
    from features import columns
    from features.build import build_features
    from features.config import load_settings
    from serving.model.scorer import Scorer
    from serving.request import parse_records

    scorer = Scorer.from_registry(load_settings().ensure_dirs())
    table = build_features(columns.from_records(parse_records(payloads[:SEQUENTIAL])), scorer.features, scorer.extras)
    matrices = {task: b.encoder.transform(table) for task, b in scorer.bundles.items()}
    times = []
    for i in range(SEQUENTIAL):
        t0 = time.perf_counter()
        for task, bundle in scorer.bundles.items():
            row = matrices[task][i : i + 1]
            bundle.booster.predict(row, num_threads=1)
            bundle.booster.predict(row, pred_contrib=True, num_threads=1)
        times.append(time.perf_counter() - t0)
    return latency(times)


def latency(seconds: list[float]) -> dict:
    """Percentiles, maximum and mean of request times, in milliseconds (the benchmarks' one summary)."""
    ms = np.array(seconds) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "mean_ms": float(ms.mean()),
    }


class Client:
    """One keep-alive HTTP/1.1 connection to the server (asyncio streams)."""

    def __init__(self, port: int, key: str):
        self.port, self.key = port, key

    async def __aenter__(self) -> Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        self.writer.close()

    async def post(self, path: str, body: dict) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {self.key}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = [line.lower() for line in head.decode("latin-1").split("\r\n")]
        status = int(lines[0].split()[1])
        length = next(int(line.split(":", 1)[1]) for line in lines if line.startswith("content-length:"))
        answer = await self.reader.readexactly(length)
        if "connection: close" in lines:  # the server asks for a new connection, as HTTP/1.1 clients do
            self.writer.close()
            await self.__aenter__()
        return status, answer


async def sequential(port: int, key: str, payloads: list[dict]) -> dict:
    times, errors = [], 0
    async with Client(port, key) as client:
        for p in payloads:
            t0 = time.perf_counter()
            status, _ = await client.post("/score", p)
            times.append(time.perf_counter() - t0)
            errors += status != 200
    return {**latency(times), "requests": len(payloads), "errors": errors}


async def concurrent(port: int, key: str, payloads: list[dict], workers: int) -> dict:
    queue = list(reversed(payloads))
    times: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        async with Client(port, key) as client:
            while queue:
                p = queue.pop()
                t0 = time.perf_counter()
                status, _ = await client.post("/score", p)
                times.append(time.perf_counter() - t0)
                errors += status != 200

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - t0
    return {
        **latency(times),
        "requests": len(payloads),
        "errors": errors,
        "seconds": elapsed,
        "claims_per_s": (len(payloads) - errors) / elapsed,
        "concurrency": workers,
    }


def _all_workers(server, expected: int = WORKERS, seconds: float = 60.0) -> list[int]:
    """The server's worker pids once all ``expected`` have started."""
    deadline = time.monotonic() + seconds
    while len(pids := server.workers()) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return pids


def _cpu_seconds(pids: list[int], http_only: bool = False) -> float:
    """User and system CPU time of these processes so far (``http_only``: of their main threads,
    where uvicorn's event loop answers HTTP; the others score the batches and write the logs)."""
    ticks = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/task/{pid}/stat" if http_only else f"/proc/{pid}/stat")
        fields = stat.read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> dict:
    from pipelines.local_server import Server  # the tests' real-server harness: free port, readiness poll

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        key, payloads = prepare(home)
        server = Server(home)
        try:
            warm, seq = payloads[:WARM_UP], payloads[WARM_UP : WARM_UP + SEQUENTIAL]
            rest = payloads[WARM_UP + SEQUENTIAL :]
            asyncio.run(sequential(server.port, key, warm))
            workers = _all_workers(server)
            result = {"history_claims": HISTORY_CLAIMS, "sequential": asyncio.run(sequential(server.port, key, seq))}
            cpu, http = _cpu_seconds(workers), _cpu_seconds(workers, http_only=True)
            result["concurrent"] = asyncio.run(concurrent(server.port, key, rest, CONCURRENCY))
            result["concurrent"]["server_cpu_ms_per_claim"] = (_cpu_seconds(workers) - cpu) * 1e3 / len(rest)
            result["concurrent"]["http_cpu_ms_per_claim"] = (
                (_cpu_seconds(workers, http_only=True) - http) * 1e3 / len(rest)
            )
            result["workers"] = len(workers)
        finally:
            server.kill()
        result["floor"] = floor(home, payloads)
    result["cores"] = len(os.sched_getaffinity(0))
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
    sys.stdout.flush()

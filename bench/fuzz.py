"""Fuzz: at least ten thousand requests generated from the service's own OpenAPI document, sent
to a real server, with every check schemathesis has; none may be answered 5xx.

    python -m bench.run fuzz                 # the full run; writes bench/results/fuzz.json and RESULTS.md
    python -m bench.fuzz --requests 2000     # a quick check: prints the JSON, writes nothing

The state is what ``make demo`` builds (:func:`bench.serving.prepare_models`: 200,000 synthetic
claims trained on, promoted and loaded into the history store); the server is
:class:`pipelines.local_server.Server` (two workers) with an admin key, so every operation in the
document may be called. Schemathesis (``--checks all``, the hooks of :mod:`bench.contract_hooks`
for the claim rules JSON Schema cannot state) runs with a fixed seed: its first run with every
phase (examples, coverage, fuzzing), then fuzzing alone with the next seed, and the next, until
``--requests`` requests were sent.

Requests are counted from schemathesis's HAR report (every request it sent and the answer it got,
the checks' own extra requests included): a "test case" of its summary is one generated request
before the checks. The server's side is counted too, from BentoML's request counter on
``/metrics`` (it also counts the readiness polls and the schema fetches), and its log is scanned
for tracebacks. The pages under ``/ui`` are not in the document, so they are not fuzzed here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REQUESTS = 10_000
SEED = 17
MAX_EXAMPLES = 1_300
"""Test cases per operation in the first run's fuzzing phase: with the coverage phase's cases, about
ten thousand requests (operations without parameters stop after one). A further run, if needed,
asks for as many as are still lacking."""
MAX_RUNS = 10
LOG_PROBLEMS = re.compile(r"Traceback|Internal Server Error")
LOG_WARNINGS = re.compile(r"Warning:")
ROOT = Path(__file__).resolve().parents[1]


def _say(what: str) -> None:
    """Progress on stderr (stdout ends with the JSON result)."""
    print(f"[fuzz {time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def operation(method: str, url: str) -> str:
    """The document's operation a request went to (``/cases/{claim_id}`` for any claim id)."""
    path = "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    if path.startswith("/cases/"):
        path = "/cases/{claim_id}/disposition" if path.endswith("/disposition") else "/cases/{claim_id}"
    return f"{method} {path}"


def read_har(path: Path) -> tuple[Counter, Counter, list[dict]]:
    """Requests by answer status and by operation in a HAR report; the 5xx answers (or none)."""
    statuses, operations, server_errors = Counter(), Counter(), []
    for entry in json.loads(path.read_text(encoding="utf-8"))["log"]["entries"]:
        request, status = entry["request"], int(entry["response"].get("status") or 0)
        statuses[status] += 1
        operations[operation(request["method"], request["url"])] += 1
        if status >= 500 or status == 0:
            text = entry["response"].get("content", {}).get("text") or ""
            server_errors.append({"request": f"{request['method']} {request['url']}", "status": status, "body": text})
    return statuses, operations, server_errors


def schemathesis(port: int, key: str, seed: int, max_examples: int, first: bool, out: Path) -> dict:
    """One schemathesis run; what it says of itself (JSON report) and what the HAR report holds."""
    out.mkdir(parents=True)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"http://127.0.0.1:{port}/docs.json",
        "-H",
        f"Authorization: Bearer {key}",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--warnings",
        "off",
        *([] if first else ["--phases", "fuzzing"]),
        "--report",
        "har,json",
        "--report-har-path",
        str(out / "har.json"),
        "--report-json-path",
        str(out / "report.json"),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "bench.contract_hooks", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    run = subprocess.run(command, env=env, cwd=out, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if not (out / "report.json").exists():
        raise RuntimeError(f"schemathesis wrote no report (exit {run.returncode}): {run.stdout[-3000:]}{run.stderr}")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    statuses, operations, server_errors = read_har(out / "har.json")
    return {
        "seed": seed,
        "phases": "all" if first else "fuzzing",
        "max_examples": max_examples,
        "seconds": seconds,
        "exit_code": run.returncode,
        "test_cases": report["test_cases"]["generated"],
        "failures": report["test_cases"]["with_failures"],
        "unique_failures": report["test_cases"]["unique_failures"],
        "errored": report["test_cases"]["errored"],
        "failure_details": report["failures"][:20],
        "error_details": report["errors"][:20],
        "requests": sum(statuses.values()),
        "statuses": statuses,
        "operations": operations,
        "server_errors": server_errors,
        "summary": run.stdout[-6000:] if run.returncode else "",  # how to reproduce each failure
    }


def server_counts(server, key: str) -> Counter:
    """Requests the server answered, by status (BentoML's ``bentoml_service_request_total``)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = server.call("GET", "/metrics", key=key)
    if status != 200:
        raise RuntimeError(f"GET /metrics answered {status}")
    counts: Counter = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "bentoml_service_request":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[int(sample.labels["http_response_code"])] += int(sample.value)
    return counts


def log_problems(log: Path, pattern: re.Pattern = LOG_PROBLEMS) -> tuple[int, str]:
    """Lines of the server's log that tell of an unhandled error (``pattern``); the first few of them."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    hits = [i for i, line in enumerate(lines) if pattern.search(line)]
    excerpt = "\n".join(lines[hits[0] : hits[0] + 30]) if hits else ""
    return len(hits), excerpt


def run(requests: int, seed: int, max_examples: int) -> dict:
    from bench.serving import _cli, prepare_models
    from pipelines.local_server import Server
    from serving.keys import KeyStore

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        t0 = time.perf_counter()
        claims = prepare_models(home)
        _cli(home, "history", "load", "--data", str(claims), "--source", "synthetic")
        setup_s = time.perf_counter() - t0
        _say(f"models and history ready in {setup_s:.0f} s; starting the server")
        key = KeyStore(home / "keys.json").create("admin", "fuzz")[0]
        server = Server(home)
        runs: list[dict] = []
        try:
            examples = max_examples
            while (sent := sum(r["requests"] for r in runs)) < requests and len(runs) < MAX_RUNS:
                i = len(runs)
                if runs:  # fuzzing alone: as many examples as the requests still lacking need, and a fifth
                    examples = max(10, -(-examples * (requests - sent) * 6 // (5 * runs[-1]["requests"])))
                r = schemathesis(server.port, key, seed + i, examples, i == 0, home / f"run{i}")
                runs.append(r)
                _say(
                    f"seed {r['seed']} ({r['phases']}): {r['requests']:,} requests, {r['test_cases']:,} test cases, "
                    f"{r['failures']} failures, {r['seconds']:.0f} s"
                )
            served = server_counts(server, key)
        finally:
            server.kill()
        log_hits, log_excerpt = log_problems(home / "server.log")
        warnings, warning_excerpt = log_problems(home / "server.log", LOG_WARNINGS)
    statuses = sum((r["statuses"] for r in runs), Counter())
    operations = sum((r["operations"] for r in runs), Counter())
    return {
        "requests": sum(statuses.values()),
        "server_errors": sum(n for s, n in statuses.items() if s >= 500),
        "no_answer": statuses.get(0, 0),
        "test_cases": sum(r["test_cases"] for r in runs),
        "failures": sum(r["failures"] for r in runs),
        "failure_list": [
            {"seed": r["seed"], "code": f["code"], "title": f["title"], "operations": f["operations"]}
            for r in runs
            for f in r["failure_details"]
        ],
        "errored": sum(r["errored"] for r in runs),
        "seconds": sum(r["seconds"] for r in runs),
        "seeds": [r["seed"] for r in runs],
        "max_examples": max_examples,
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "operations": dict(sorted(operations.items())),
        "runs": [
            {k: v for k, v in r.items() if k not in ("statuses", "operations")} | {"statuses": dict(r["statuses"])}
            for r in runs
        ],
        "server_answered": sum(served.values()),
        "server_5xx": sum(n for s, n in served.items() if s >= 500),
        "server_statuses": {str(s): n for s, n in sorted(served.items())},
        "log_problem_lines": log_hits,
        "log_excerpt": log_excerpt,
        "log_warning_lines": warnings,
        "log_warning_excerpt": warning_excerpt,
        "schemathesis": _version(),
        "setup_s": setup_s,
        "history_claims": _history_claims(),
        "workers": 2,
        "cores": len(os.sched_getaffinity(0)),
    }


def _version() -> str:
    from importlib.metadata import version

    return version("schemathesis")


def _history_claims() -> int:
    from bench.serving import HISTORY_CLAIMS

    return HISTORY_CLAIMS


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=REQUESTS, help="requests to send at least")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the first run (the next runs: +1, +2, ...)")
    parser.add_argument("--max-examples", type=int, default=MAX_EXAMPLES, help="test cases per operation and run")
    args = parser.parse_args(argv)
    # a secret of the bench's own keys the identifier hashes (bench/run.py sets the same one)
    os.environ.setdefault("CLAIMSCORE_IDENTITY_SECRET", "claimscore-bench-secret-not-for-production-0001")
    return run(args.requests, args.seed, args.max_examples)


if __name__ == "__main__":
    print(json.dumps(main()))
    sys.stdout.flush()

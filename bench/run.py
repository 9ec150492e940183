"""Run ClaimScore's benchmarks and write their figures into README.md.

    python -m bench.run              # every benchmark
    python -m bench.run generator    # one of them

Each benchmark returns a markdown block; it replaces the text between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in the README, together with the command, the
date and the machine, so every figure there says how to reproduce it. Raw results also go to
``bench/results/NAME.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "bench" / "results"

def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"

def run_isolated(module: str, *args: str) -> dict:
    """Run ``python -m module args`` in a fresh process (fair memory figures); it prints JSON last."""
    out = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])

def bench_generator() -> tuple[dict, str]:
    rows = 1_000_000
    result = run_isolated("bench.generator", str(rows))
    md = (
        "| claims | generate | write Parquet | total | claims/s | peak memory |\n"
        "|---:|---:|---:|---:|---:|---:|\n"
        f"| {rows:,} | {result['generate_s']:.1f} s | {result['write_s']:.1f} s | "
        f"{result['generate_s'] + result['write_s']:.1f} s | {rows / result['generate_s']:,.0f} | "
        f"{result['peak_rss_mb']:,.0f} MB |\n"
    )
    return result, md

def bench_features() -> tuple[dict, str]:
    rows = 1_000_000
    r = run_isolated("bench.features", str(rows))
    md = (
        "| claims | features | build time | claims/s | peak memory (process, claims included) |\n"
        "|---:|---:|---:|---:|---:|\n"
        f"| {rows:,} | {r['features']} | {r['build_s']:.1f} s | {rows / r['build_s']:,.0f} | "
        f"{r['peak_rss_mb']:,.0f} MB |\n"
    )
    return r, md


def bench_real_data() -> tuple[dict, str]:
    if not (ROOT.parent / "shared" / "data").is_dir():
        return {}, "(../shared/data is absent: not measured)\n"
    r = run_isolated("bench.real_data")
    md = ("| data set | model | test period | features | | ROC-AUC | average precision | positive rate |\n"
          "|---|---|---|---:|---|---:|---:|---:|\n")
    for source, v in r.items():
        for who in ("claimscore", "baseline"):
            m = v[who]
            name = "ClaimScore" if who == "claimscore" else "plain LightGBM"
            md += (f"| {source} | {v['task']} | {v['periods']['test']} | {v['features']} | {name} | "
                   f"{m['roc_auc']:.3f} | {m['average_precision']:.3f} | {m['positive_rate']:.3f} |\n")
    return r, md


def bench_explain() -> tuple[dict, str]:
    r = run_isolated("bench.explain")
    md = ("| model | trees x leaves | memory | **one row per call**: explainer | pred_contrib | pred_contrib, "
          "1 thread | shap.TreeExplainer | speed-up | **bulk**: explainer | pred_contrib | shap.TreeExplainer | "
          "speed-up | largest difference |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    for name, m in r["models"].items():
        one, bulk = m["single"], m["bulk"]
        best_one = max(one["pred_contrib"], one["pred_contrib_1_thread"], one["shap"])
        md += (f"| {name} | {m['trees']} x {m['leaves'] / m['trees']:.0f} | {m['memory_mb']:.1f} MB | "
               f"{one['explainer']:,.0f} rows/s | {one['pred_contrib']:,.0f} | {one['pred_contrib_1_thread']:,.0f} | "
               f"{one['shap']:,.0f} | {one['explainer'] / best_one:.1f}x | {bulk['explainer']:,.0f} rows/s | "
               f"{bulk['pred_contrib']:,.0f} | {bulk['shap']:,.0f} | "
               f"{bulk['explainer'] / max(bulk['pred_contrib'], bulk['shap']):.1f}x | {m['max_abs_diff']:.0e} |\n")
    rows = next(iter(r["models"].values()))["bulk_rows"]
    md += (f"\nModels trained on {r['claims']:,} synthetic claims (fraud and fast-track as `training/fit.py` trains "
           f"them, 500x63 on the same features); every method may use the {r['cores']} cores. Speed-ups are against "
           f"the fastest baseline. Bulk: {rows['explainer']:,} rows for the explainer, a sample for the baselines "
           "(their rate does not depend on the batch). Largest difference: explainer vs pred_contrib (log-odds).\n")
    return r, md


def bench_serving() -> tuple[dict, str]:
    r = run_isolated("bench.serving")
    seq, con, low = r["sequential"], r["concurrent"], r["floor"]
    md = ("| what | requests | errors | p50 | p99 | claims/s |\n|---|---:|---:|---:|---:|---:|\n"
          f"| `/score` over HTTP, one at a time | {seq['requests']:,} | {seq['errors']} | {seq['p50_ms']:.1f} ms | "
          f"{seq['p99_ms']:.1f} ms | {1e3 / seq['mean_ms']:,.0f} |\n"
          f"| `/score` over HTTP, {con['concurrency']} concurrent clients | {con['requests']:,} | {con['errors']} | "
          f"{con['p50_ms']:.1f} ms | {con['p99_ms']:.1f} ms | {con['claims_per_s']:,.0f} |\n"
          f"| floor: LightGBM predict + pred_contrib, both models, in process | {seq['requests']:,} | - | "
          f"{low['p50_ms']:.1f} ms | {low['p99_ms']:.1f} ms | {1e3 / low['mean_ms']:,.0f} |\n"
          f"\nSequential p50 is {seq['p50_ms'] / low['p50_ms']:.1f}x the floor's. Under load the {r['workers']} workers "
          f"spent {con['server_cpu_ms_per_claim']:.2f} ms of CPU per claim, {con['http_cpu_ms_per_claim']:.2f} ms of "
          "it in their HTTP threads (parsing, validation, the answer's JSON, BentoML's middleware) and the rest "
          "scoring the batches and writing the logs. Each answer holds scores, route, rules "
          f"and top reasons, is computed from the claim's history ({r['history_claims']:,} claims loaded, growing "
          "with every claim scored), is committed to the decision log before it leaves and is appended to the "
          "history. The load generator runs on the same 2 cores.\n")
    return r, md


def bench_scoring() -> tuple[dict, str]:
    r = run_isolated("bench.scoring")
    md = ("| claims | time | claims/s | peak memory | output |\n|---:|---:|---:|---:|---:|\n"
          f"| {r['claims']:,} | {r['seconds']:.1f} s | {r['claims_per_s']:,.0f} | {r['peak_rss_mb']:,.0f} MB | "
          f"{r['output_mb']:,.0f} MB Parquet |\n\n`claimscore score` in a fresh process: reading the claims, "
          "features, both models' scores, routes, the top reasons of both models (exact SHAP), writing the file.\n")
    return r, md


def bench_history_index() -> tuple[dict, str]:
    r = run_isolated("bench.history_index", "1000000")
    md = ("| stored claims | read into memory | held in memory | distinct identifiers |\n|---:|---:|---:|---:|\n"
          f"| {r['claims']:,} | {r['read_s']:.1f} s | {r['held_mb']:,.0f} MB | {r['distinct_identifiers']:,} |\n\n"
          "Per service worker, at start and after a bulk load (SQLite store, synthetic claims).\n")
    return r, md


BENCHMARKS: dict[str, Callable[[], tuple[dict, str]]] = {
    "generator": bench_generator,
    "features": bench_features,
    "real_data": bench_real_data,
    "explain": bench_explain,
    "history_index": bench_history_index,
    "serving": bench_serving,
    "scoring": bench_scoring,
}

def write_readme(name: str, block: str, command: str) -> None:
    text = README.read_text(encoding="utf-8")
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    stamp = f"Measured {date.today().isoformat()} on {machine()} with `{command}`:\n\n"
    new = f"{start}\n{stamp}{block}{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: new, text)
    else:
        text += f"\n{new}\n"
    README.write_text(text, encoding="utf-8")

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(BENCHMARKS):
        t0 = time.perf_counter()
        print(f"bench {name} ...", flush=True)
        result, block = BENCHMARKS[name]()
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        command = "make bench" if not args.names else f"python -m bench.run {name}"
        write_readme(name, block, command)
        print(block, f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())

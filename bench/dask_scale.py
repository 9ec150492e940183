"""Batch scoring in one process against scoring on a local Dask cluster: ``claimscore score`` and
``claimscore score --dask-workers 2`` on the same N new synthetic claims (the file ``claimscore
generate`` writes), each in a fresh process, with the champions trained as ``make demo`` trains them
(200,000 claims).

    python -m bench.dask_scale --claims 200000
    python -m bench.dask_scale --claims 1000000 --home /tmp/bench-home   # train once, reuse after
    python -m bench.dask_scale --task train --claims 1000000             # claimscore train both ways
    python -m bench.dask_scale --task monitor --claims 1000000           # claimscore monitor --data both ways
    python -m bench.dask_scale --claims 5000000 --only dask              # one way only (the other does not fit)

Each run is timed end to end (start-up, loading the models, reading, features, scores, reasons,
writing). Memory is the peak resident set (the kernel's ``VmHWM``) of every process of the run,
read every 0.2 s while it runs: the command itself (in one process; or the Dask client and
scheduler) and each Dask worker. The two outputs are compared claim by claim (sorted by
``claim_id``; every column, exactly) up to ``--compare-max`` claims.

The machine may be shared: the load average before and after each run is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CLAIMS = 200_000
WORKERS = 2
COMPARE_MAX = 1_000_000
SAMPLE_S = 0.2


def main(
    claims: int = CLAIMS,
    workers: int = WORKERS,
    compare_max: int = COMPARE_MAX,
    home: Path | None = None,
    only: str | None = None,
) -> dict:
    """Figures of one run. ``home``: a state folder to keep the champions in (trained there on the
    first run, used as they are by the next: runs at several sizes share one training). ``only``:
    ``in_process`` or ``dask``, one way alone."""
    from pipelines.distributed import PARTITION_ROWS

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        home = _champions(home or work)
        new = work / "new.parquet"
        _cli(home, "generate", "--claims", claims, "--seed", 9, "--start", "2025-01-01", "--years", 1, "--out", new)
        setup_s = time.perf_counter() - t0
        runs = {}
        if only != "dask":
            runs["in_process"] = _timed(home, "score", "--data", new, "--out", work / "in_process.parquet")
        if only != "in_process":
            out = work / "on_dask.parquet"
            runs["dask"] = _timed(home, "score", "--data", new, "--out", out, "--dask-workers", workers)
            runs["dask_parts"] = len(list(out.iterdir()))
        both = only is None and claims <= compare_max
        identical = _identical(work / "in_process.parquet", work / "on_dask.parquet") if both else None
        for run in (runs.get("in_process"), runs.get("dask")):
            if run:
                run["claims_per_s"] = claims / run["seconds"]
                run.pop("stdout")
        return {
            "task": "score",
            "claims": claims,
            "partition_rows": PARTITION_ROWS,
            "workers": workers,
            "cores": len(os.sched_getaffinity(0)),
            "setup_s": setup_s,
            **runs,
            "identical": identical,
        }


def monitor_main(
    claims: int = CLAIMS, workers: int = WORKERS, home: Path | None = None, only: str | None = None
) -> dict:
    """``claimscore monitor --data`` in one process against ``--dask-workers N``: the champions
    (trained as in :func:`main`) over N later labelled synthetic claims, the whole table the window;
    seconds, peak memory per process, and whether the two summaries agree (every figure, floats to
    1e-9 relative; the time they were made, the source's name and the quality report's path aside)."""
    from monitoring.monitor import summary_differences

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = _champions(home or work)
        data = work / "claims.parquet"
        _cli(home, "generate", "--claims", claims, "--seed", 9, "--start", "2025-01-01", "--years", 1, "--out", data)
        runs, summaries = {}, {}
        for name, extra in (("in_process", []), ("dask", ["--dask-workers", workers])):
            if only not in (None, name):
                continue
            run = _timed(home, "monitor", "--data", data, "--out", work / name, *extra, ok=(0, 3))
            run.pop("stdout")
            runs[name] = run | {"claims_per_s": claims / run["seconds"]}
            summaries[name] = json.loads((work / name / "summary.json").read_text())
        return {
            "task": "monitor",
            "claims": claims,
            "workers": workers,
            "cores": len(os.sched_getaffinity(0)),
            **runs,
            "same_summary": not summary_differences(summaries["dask"], summaries["in_process"])
            if len(summaries) == 2
            else None,
        }


def _champions(home: Path) -> Path:
    """``home`` with the benchmark's champions (trained there on its first use)."""
    from bench.serving import prepare_models

    if not (home / "mlflow.db").exists():
        home.mkdir(parents=True, exist_ok=True)
        prepare_models(home)
    return home


def train_main(claims: int = CLAIMS, workers: int = WORKERS, only: str | None = None) -> dict:
    """``claimscore train --no-refit`` in one process against ``--dask-workers N`` on the same N
    labelled synthetic claims, each in a fresh process and a fresh state folder: seconds, peak memory
    per process, and each run's test figures as it prints them."""
    import re

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "claims.parquet"
        _cli(work / "gen", "generate", "--claims", claims, "--seed", 7, "--out", data)
        runs = {}
        for name, extra in (("in_process", []), ("dask", ["--dask-workers", workers])):
            if only not in (None, name):
                continue
            home = work / name
            home.mkdir()
            run = _timed(home, "train", "--data", data, "--no-refit", *extra)
            run["test"] = {
                m.group(1): {"roc_auc": float(m.group(2)), "average_precision": float(m.group(3))}
                for m in re.finditer(
                    r"claimscore-([\w-]+) v\d+ \(challenger\): test ROC-AUC ([\d.]+), average precision ([\d.]+)",
                    run.pop("stdout"),
                )
            }
            runs[name] = run
        return {"task": "train", "claims": claims, "workers": workers, "cores": len(os.sched_getaffinity(0)), **runs}


def _cli(home: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLAIMSCORE_HOME": str(home)}
    cmd = [sys.executable, "-m", "pipelines.cli", *map(str, args)]
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)


def _timed(home: Path, *args, ok: tuple[int, ...] = (0,)) -> dict:
    """Run ``claimscore ARGS`` in a fresh process: seconds, and the peak memory of each process of its
    tree. ``ok``: the exit codes of a run that worked (``monitor`` exits 3 when something alerts)."""
    env = {**os.environ, "CLAIMSCORE_HOME": str(home)}
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peaks: dict[int, tuple[str, float]] = {}
    done = threading.Event()
    sampler = threading.Thread(target=_sample, args=(proc.pid, peaks, done), daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    elapsed = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode not in ok:
        raise RuntimeError(f"claimscore {' '.join(map(str, args))} failed: {stderr[-2000:]}")
    processes = sorted(peaks.values(), key=lambda p: (p[0] != "command", p[0]))
    return {
        "seconds": elapsed,
        "processes": [{"role": role, "peak_rss_mb": mb} for role, mb in processes],
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "summary": stdout.strip().splitlines()[-1],
        "stdout": stdout,
    }


def _sample(root: int, peaks: dict[int, tuple[str, float]], done: threading.Event) -> None:
    """Every ``SAMPLE_S``: the high-water mark of resident memory of ``root`` and its descendants."""
    import psutil

    from bench.soak import rss_mb

    try:
        top = psutil.Process(root)
    except psutil.NoSuchProcess:
        return
    while not done.is_set():
        try:
            tree = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in tree:
            mb = rss_mb(p.pid, "VmHWM")
            if mb is not None:
                role = "command" if p.pid == root else _role(p)
                peaks[p.pid] = (role, max(mb, peaks.get(p.pid, ("", 0.0))[1]))
        done.wait(SAMPLE_S)


def _role(process) -> str:
    """A Dask worker (spawned by its nanny), or a helper process (multiprocessing's resource tracker)."""
    try:
        cmd = " ".join(process.cmdline())
    except Exception:  # it exited between listing and reading
        return "exited"
    if "resource_tracker" in cmd:
        return "helper"
    return "worker" if "multiprocessing" in cmd else "other"


def _identical(a: Path, b: Path) -> bool:
    """Whether two scored outputs (a file, a folder) hold the same rows, exactly, column by column
    (one column of each in memory at a time)."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    def column(path: Path, name: str) -> np.ndarray:
        return pd.read_parquet(path, columns=[name])[name].to_numpy()

    ids_a, ids_b = column(a, "claim_id"), column(b, "claim_id")
    if len(ids_a) != len(ids_b):
        return False
    order_a, order_b = np.argsort(ids_a, kind="stable"), np.argsort(ids_b, kind="stable")
    return all(np.array_equal(column(a, n)[order_a], column(b, n)[order_b]) for n in pq.read_schema(a).names)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=CLAIMS, help="new claims to score")
    parser.add_argument("--workers", type=int, default=WORKERS, help="Dask worker processes")
    parser.add_argument("--compare-max", type=int, default=COMPARE_MAX, help="compare the outputs up to this many")
    parser.add_argument("--home", type=Path, help="keep the champions here, to reuse them in the next run")
    parser.add_argument("--task", choices=("score", "train", "monitor"), default="score", help="what to run both ways")
    parser.add_argument("--only", choices=("in_process", "dask"), help="one way only")
    a = parser.parse_args()
    if a.task == "train":
        print(json.dumps(train_main(a.claims, a.workers, a.only)))
    elif a.task == "monitor":
        print(json.dumps(monitor_main(a.claims, a.workers, a.home, a.only)))
    else:
        print(json.dumps(main(a.claims, a.workers, a.compare_max, a.home, a.only)))
    sys.stdout.flush()

"""Batch scoring end to end: ``claimscore score`` on 1,000,000 new synthetic claims (features,
scores, routes and the top reasons of both models, written to Parquet), in a fresh process, with
the champions trained as ``make demo`` trains them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLAIMS = 1_000_000


def main() -> dict:
    from bench.serving import prepare_models

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        prepare_models(home)
        env = {**os.environ, "CLAIMSCORE_HOME": str(home)}
        cli = [sys.executable, "-m", "pipelines.cli"]
        new, out = home / "new.parquet", home / "scored.parquet"
        subprocess.run(
            cli
            + [
                "generate",
                "--claims",
                str(CLAIMS),
                "--seed",
                "9",
                "--start",
                "2025-01-01",
                "--years",
                "1",
                "--out",
                str(new),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        t0 = time.perf_counter()
        done = subprocess.run(
            [
                "/usr/bin/time",
                "-f",
                "%M",
                *cli,
                "score",
                "--data",
                str(new),
                "--source",
                "synthetic",
                "--out",
                str(out),
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - t0
        peak_kb = int(done.stderr.strip().splitlines()[-1])
        return {
            "claims": CLAIMS,
            "seconds": elapsed,
            "claims_per_s": CLAIMS / elapsed,
            "peak_rss_mb": peak_kb / 1024,
            "cores": len(os.sched_getaffinity(0)),
            "output_mb": out.stat().st_size / 2**20,
        }


if __name__ == "__main__":
    print(json.dumps(main()))
    sys.stdout.flush()

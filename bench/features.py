"""Batch feature throughput: every available feature for N synthetic claims, in a fresh process.

Reports the time to build features from a canonical frame already in memory, and the process's peak
memory (which includes the claims themselves).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(rows: int) -> dict:
    import pandas as pd

    from features.build import available_features, build_features
    from features.schema import conform

    with tempfile.TemporaryDirectory() as tmp:  # generated in another process: its peak is not ours
        path = Path(tmp) / "claims.parquet"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "generate",
                "--claims",
                str(rows),
                "--seed",
                "7",
                "--out",
                str(path),
            ],
            check=True,
            capture_output=True,
        )
        claims = conform(pd.read_parquet(path))
    names = available_features(claims)
    build_features(claims.head(2_000), names)  # compile the numba sweeps (cached on disk afterwards)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    table = build_features(claims, names)
    elapsed = time.perf_counter() - t0
    return {
        "rows": rows,
        "features": len(names),
        "build_s": elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": rss_before,
        "table_mb": table.memory_usage(deep=True).sum() / 2**20,
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)))

"""Generator throughput: N synthetic claims generated and written to Parquet, in a fresh process."""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from features.data.synthetic import generate_claims


def main(rows: int) -> dict:
    t0 = time.perf_counter()
    frame = generate_claims(rows, seed=7)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        frame.to_parquet(Path(tmp) / "claims.parquet", index=False)
    t2 = time.perf_counter()
    return {
        "rows": rows,
        "generate_s": t1 - t0,
        "write_s": t2 - t1,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)))

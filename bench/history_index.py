"""The service's in-memory history (features/store/index.py): time to read a store of N claims
and the memory it then holds, in a fresh process (the store is filled in another one)."""

from __future__ import annotations

import ctypes
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _resident_mb() -> float:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # what was freed goes back: resident is what is held
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def main(claims: int) -> dict:
    from features.store.history import HistoryStore
    from features.store.index import HistoryIndex

    with tempfile.TemporaryDirectory() as tmp:
        data, url = Path(tmp) / "claims.parquet", f"sqlite:///{Path(tmp) / 'history.db'}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "generate",
                "--claims",
                str(claims),
                "--seed",
                "3",
                "--out",
                str(data),
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, pandas as pd; from features.store.history import "
                "HistoryStore; HistoryStore(sys.argv[1]).load(pd.read_parquet(sys.argv[2]))",
                url,
                str(data),
            ],
            check=True,
            capture_output=True,
        )
        store = HistoryStore(url)
        before = _resident_mb()
        t0 = time.perf_counter()
        index = HistoryIndex(store)
        read_s = time.perf_counter() - t0
        held = _resident_mb() - before
        distinct = index.distinct_identifiers
        return {"claims": len(index), "read_s": read_s, "held_mb": held, "distinct_identifiers": distinct}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)))
    sys.stdout.flush()

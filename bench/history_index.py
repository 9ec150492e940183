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


def appends(held: int = 200_000, added: int = 100_000, batch: int = 32) -> dict:
    """Memory one service worker's history adds per claim scored: ``held`` claims loaded, then
    ``added`` appended live through the index (written to the store, held in memory) in batches of
    ``batch``, as a worker appends its scored batches. What a soak's memory grows by with its history.

        python -m bench.history_index --appends"""

    from features import columns
    from features.data.synthetic import generate_claims
    from features.store.history import HistoryStore
    from features.store.index import HistoryIndex

    frame = generate_claims(held + added, seed=3).sort_values("report_date", ignore_index=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'history.db'}"
        HistoryStore(url).load(frame.iloc[:held])
        index = HistoryIndex(HistoryStore(url))
        live = columns.from_frame(frame.iloc[held:])
        before = _resident_mb()
        for start in range(0, added, batch):
            index.append({k: v[start : start + batch] for k, v in live.items()})
        grown = _resident_mb() - before
    return {"held": held, "added": added, "batch": batch, "grown_mb": grown, "kb_per_claim": grown * 1024 / added}


if __name__ == "__main__":
    if sys.argv[1:] == ["--appends"]:
        print(json.dumps(appends()))
    else:
        print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)))
    sys.stdout.flush()

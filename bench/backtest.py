"""A routing backtest at scale: a million claims, a hundred policies.

    python -m bench.run backtest                 # the full size; writes RESULTS.md
    python -m bench.backtest --claims 100000     # a quick check: prints the JSON, writes nothing

Set-up (not timed): ``TRAIN_CLAIMS + claims`` synthetic claims (seed 11), a champion trained (no
refit) and promoted on the first ``TRAIN_CLAIMS``, the features of all of them built and both models
scored. Timed, in one process: the book (:func:`monitoring.backtest.make_book`: rule masks, the fraud
estimate) and :func:`monitoring.backtest.sweep` over ``POLICIES`` policies (SIU threshold x
fast-track threshold x amount limit). The floor is routing alone: ``RoutingPolicy.route_table`` for
the same policies on the same claims with the rules' masks given, the least a backtest must do.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLAIMS = 1_000_000
TRAIN_CLAIMS = 50_000
SEED = 11


def _say(what: str) -> None:
    print(f"[backtest {time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=CLAIMS)
    args = parser.parse_args(argv)
    os.environ.setdefault("CLAIMSCORE_IDENTITY_SECRET", "claimscore-bench-secret-not-for-production-0001")
    with tempfile.TemporaryDirectory(prefix="claimscore-bench-backtest-") as tmp:
        os.environ["CLAIMSCORE_HOME"] = tmp
        from features.build import build_features
        from features.config import load_settings
        from features.data.synthetic import generate_claims
        from monitoring import backtest as bt
        from monitoring.costs import CostModel
        from serving.model.scorer import Scorer
        from training import registry
        from training.config import TrainingConfig
        from training.pipeline import train

        settings = load_settings().resolved().ensure_dirs()
        t0 = time.perf_counter()
        frame = generate_claims(TRAIN_CLAIMS + args.claims, seed=SEED).sort_values("report_date", ignore_index=True)
        frame.iloc[:TRAIN_CLAIMS].to_parquet(Path(tmp) / "train.parquet")
        train(str(Path(tmp) / "train.parquet"), "synthetic", settings, TrainingConfig(refit=False))
        registry.configure(settings)
        registry.promote("average_precision", 0.0, "bench", "backtest bench")
        scorer = Scorer.from_registry(settings)
        table = build_features(frame, scorer.features, scorer.extras).iloc[TRAIN_CLAIMS:].reset_index(drop=True)
        claims = frame.iloc[TRAIN_CLAIMS:].reset_index(drop=True)
        scores = {"champion": {t: b.predict(b.encoder.transform(table)) for t, b in scorer.bundles.items()}}
        setup_s = time.perf_counter() - t0
        _say(f"set up {len(claims):,} claims in {setup_s:.0f} s; backtesting")

        costs = CostModel()
        base = scorer.policy
        fraud = scores["champion"]["fraud"]
        policies = [
            dataclasses.replace(
                base, siu_threshold=float(a), fast_track_threshold=float(b), fast_track_amount_limit=float(c)
            )
            for a, b, c in itertools.product(
                np.quantile(fraud, 1 - np.linspace(0.01, 0.10, 5)),
                np.linspace(0.3, 0.9, 5),
                [2_500, 5_000, 7_500, 10_000],
            )
        ]
        t0 = time.perf_counter()
        book = bt.make_book(claims, table, scores, [base], costs)
        book_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        swept = bt.sweep(book, policies, "champion", costs, bt.Constraints(capacity_per_week=1e9))
        sweep_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for p in policies:
            p.route_table(
                book.features, fraud, scores["champion"].get("fast_track"), fired=book.fired, with_names=False
            )
        floor_s = time.perf_counter() - t0
        result = {
            "claims": len(claims),
            "policies": len(policies),
            "book_s": book_s,
            "sweep_s": sweep_s,
            "total_s": book_s + sweep_s,
            "floor_s": floor_s,
            "per_policy_ms": 1000 * sweep_s / len(policies),
            "feasible": int(swept["feasible"].sum()),
            "setup_s": setup_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        _say(f"book {book_s:.1f} s, {len(policies)} policies {sweep_s:.1f} s (routing alone {floor_s:.1f} s)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

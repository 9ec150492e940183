"""Monitoring a window of a million decisions: ``claimscore monitor`` over the decision log.

    python -m bench.run monitoring                 # the full size; writes RESULTS.md
    python -m bench.monitoring --decisions 100000  # a quick check: prints the JSON, writes nothing

The state is built in a temporary CLAIMSCORE_HOME (not timed):

- one synthetic population of ``TRAIN_CLAIMS + decisions`` claims (seed 11), in report order; a
  champion trained (no refit) and promoted on the first ``TRAIN_CLAIMS``; every claim hashed and
  loaded into the history store;
- the last ``decisions`` claims scored in bulk with the champion (features over the whole table,
  both scores, routes) and written to the decision log as the service writes them (features, scores,
  route, rules; reasons left empty: monitoring does not read them), with the decision time spread
  over the claims' report times; a case opened for each claim routed to a queue.

Then, timed, in a fresh process, :func:`pipelines.monitoring.run_monitoring` over the whole log (every stage of
``claimscore monitor``: read the log, join the history and the cases, drift, data quality,
performance, fairness, KPIs, the report), and each stage's share. The floor is reading the same
rows from the decision log without decoding them (one ``SELECT``), in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DECISIONS = 1_000_000
TRAIN_CLAIMS = 50_000
SEED = 11
CHUNK = 20_000


def _say(what: str) -> None:
    print(f"[monitoring {time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def build(home: Path, decisions: int, timings: dict) -> object:
    import numpy as np
    import pandas as pd

    from features.build import build_features
    from features.config import load_settings
    from features.data.sources import load_claims
    from features.data.synthetic import generate_claims
    from features.store.history import HistoryStore
    from serving.cases import CaseStore, Referral
    from serving.decision_log import Decision, DecisionLog
    from serving.model.scorer import Scorer
    from training import registry
    from training.config import TrainingConfig
    from training.pipeline import train

    os.environ["CLAIMSCORE_HOME"] = str(home)
    settings = load_settings().resolved().ensure_dirs()
    t0 = time.perf_counter()
    frame = generate_claims(TRAIN_CLAIMS + decisions, seed=SEED).sort_values("report_date", ignore_index=True)
    data = home / "claims.parquet"
    frame.to_parquet(data)
    frame.iloc[:TRAIN_CLAIMS].to_parquet(home / "train.parquet")
    del frame
    train(str(home / "train.parquet"), "synthetic", settings, TrainingConfig(refit=False))
    registry.configure(settings)
    registry.promote("average_precision", 0.0, "bench", "monitoring bench")
    timings["setup_train_s"] = time.perf_counter() - t0
    _say(f"generated and trained in {timings['setup_train_s']:.0f} s; loading the history")

    t0 = time.perf_counter()
    hashed = load_claims(str(data), "synthetic", settings).frame
    outcomes = [c for c in hashed.columns if c in ("fraud_confirmed", "simple_settlement")]
    HistoryStore(settings.history_url).load(hashed)
    timings["setup_history_s"] = time.perf_counter() - t0
    _say(f"history of {len(hashed):,} claims loaded in {timings['setup_history_s']:.0f} s; scoring")

    t0 = time.perf_counter()
    scorer = Scorer.from_registry(settings)
    table = build_features(hashed, scorer.features, scorer.extras)
    live = np.arange(TRAIN_CLAIMS, len(hashed))
    table = table.iloc[live].reset_index(drop=True)
    scores = {t: b.predict(b.encoder.transform(table)) for t, b in scorer.bundles.items()}
    routes, rules = scorer.policy.route_table(table, scores.get("fraud"), scores.get("fast_track"))
    claims = hashed.iloc[live].reset_index(drop=True)
    del hashed, outcomes
    timings["setup_score_s"] = time.perf_counter() - t0
    _say(f"scored {len(claims):,} claims in {timings['setup_score_s']:.0f} s; writing the decision log")

    t0 = time.perf_counter()
    log = DecisionLog(settings.decision_log_url)
    cases = CaseStore(settings.cases_url)
    stamps = pd.to_datetime(claims["report_date"]).dt.tz_localize("UTC")
    names = list(table.columns)
    for start in range(0, len(claims), CHUNK):
        part = slice(start, min(start + CHUNK, len(claims)))
        values = table.iloc[part].astype(object).where(table.iloc[part].notna(), None).to_numpy()
        batch = [
            Decision(
                claim_id=str(claims["claim_id"].iat[i]),
                input_hash="bench",
                route=str(routes[i]),
                scores={t: float(s[i]) for t, s in scores.items()},
                features=dict(zip(names, values[i - start])),
                rules=rules[i],
                versions=dict(scorer.versions),
                key_id="bench",
                decided_at=stamps.iat[i].isoformat(timespec="microseconds"),
            )
            for i in range(part.start, part.stop)
        ]
        log.write(batch)
        cases.open_cases([Referral.of_decision(d) for d in batch if d.route in ("siu_referral", "specialist")])
    log.close()
    cases.close()
    timings["setup_log_s"] = time.perf_counter() - t0
    _say(f"decision log of {len(claims):,} written in {timings['setup_log_s']:.0f} s")
    return settings


def floor(settings) -> float:
    """Seconds to read the log's rows as stored (no JSON decoding): the least any monitor can do."""
    import sqlalchemy as sa

    engine = sa.create_engine(settings.decision_log_url)
    t0 = time.perf_counter()
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT claim_id, decided_at, route, scores, rules, features FROM decisions ORDER BY id"
        ).fetchall()
    seconds = time.perf_counter() - t0
    engine.dispose()
    del rows
    return seconds


def measure(home: Path) -> dict:
    """Floor and monitoring run on a built state, in this (fresh) process."""
    import resource

    os.environ["CLAIMSCORE_HOME"] = str(home)
    from features.config import load_settings
    from monitoring.config import MonitorConfig
    from pipelines.monitoring import run_monitoring

    settings = load_settings().resolved()
    floor_s = floor(settings)
    _say(f"floor (reading the log's rows) {floor_s:.1f} s; monitoring")
    stages: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    summary, folder = run_monitoring(
        settings, MonitorConfig(), out=home / "run", on_stage=lambda s: stages.append((s, time.perf_counter()))
    )
    total = time.perf_counter() - t0
    previous, split = t0, {}
    for name, at in stages:
        split[name] = at - previous
        previous = at
    _say(f"monitored in {total:.1f} s ({len(summary.alerts)} alerts)")
    return {
        "monitor_s": total,
        "floor_s": floor_s,
        "stages_s": split,
        "claims": summary.data["window"]["claims"],
        "alerts": len(summary.alerts),
        "report_kb": (folder / "report.html").stat().st_size / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=DECISIONS)
    parser.add_argument("--measure", type=Path, help="(internal) measure a built state in this process")
    args = parser.parse_args(argv)
    os.environ.setdefault("CLAIMSCORE_IDENTITY_SECRET", "claimscore-bench-secret-not-for-production-0001")
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    timings: dict = {}
    with tempfile.TemporaryDirectory(prefix="claimscore-bench-monitoring-") as tmp:
        build(Path(tmp), args.decisions, timings)
        out = subprocess.run(
            [sys.executable, "-m", "bench.monitoring", "--measure", tmp], check=True, capture_output=True, text=True
        )
        sys.stderr.write(out.stderr)
        result = {"decisions": args.decisions, **json.loads(out.stdout.strip().splitlines()[-1]), **timings}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

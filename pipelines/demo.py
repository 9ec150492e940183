"""The end of ``make demo``: wait for the local service, score a few claims over HTTP, show how.

python -m pipelines.demo --port 3000 --claims FILE.parquet --key KEY
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

import pandas as pd

from features.schema import NOTICE


def _post(url: str, body: dict, key: str) -> tuple[int, dict]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def claim_json(row: pd.Series) -> dict:
    out = {}
    for name in NOTICE:
        value = row.get(name)
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            out[name] = None  # unknown, said so: the service refuses a claim lacking a field the model uses
            continue
        out[name] = (
            value.isoformat()
            if isinstance(value, pd.Timestamp)
            else (value.item() if hasattr(value, "item") else value)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--claims", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--investigator-key", help="Shown with the queue's address, to sign in to the pages.")
    p.add_argument("--queue-claims", type=int, default=1000, help="New claims scored to fill the queue.")
    args = p.parse_args(argv)
    base = f"http://127.0.0.1:{args.port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                print(
                    f"error: the service did not become ready on {base} (see .claimscore/demo/server.log)",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.5)
    claims = pd.read_parquet(args.claims).head(args.n)
    print(f"\nScored over HTTP by {base}/score:")
    print(f"  {'claim':<12} {'fraud':>7} {'fast track':>10}  {'route':<13} top fraud reason")
    for _, row in claims.iterrows():
        status, body = _post(f"{base}/score", claim_json(row), args.key)
        if status != 200:
            print(f"  {row['claim_id']}: HTTP {status} {body}")
            continue
        reason = (body["reasons"].get("fraud") or [{"text": "-"}])[0]["text"]
        print(
            f"  {body['claim_id']:<12} {body['fraud_score']:>7.3f} {body['fast_track_score']:>10.3f}  "
            f"{body['route']:<13} {reason}"
        )
    first = claim_json(claims.iloc[0])
    example = json.dumps(first)
    shown = ", ".join(f"{k} {first[k]!r}" for k in ("phone", "address", "payee_account") if k in first)
    if shown:
        print(f"\nThe claims carry identifiers as a claim system sends them ({shown}): the service")
        print("hashes them (HMAC, CLAIMSCORE_IDENTITY_SECRET) before it scores, stores or logs a claim.")
    print(f"\nThe service keeps running on {base} (stop it with: make stop). Your scorer key: {args.key}")
    print(
        f"  curl -s -X POST {base}/score -H 'Authorization: Bearer {args.key}' "
        f"-H 'Content-Type: application/json' -d '{example}'"
    )
    print(f"  API description: {base}/   model: curl -s {base}/model -H 'Authorization: Bearer {args.key}'")
    if args.investigator_key:
        _fill_queue(base, pd.read_parquet(args.claims).iloc[args.n : args.n + args.queue_claims], args.key)
        print(f"\nThe investigators' workbench: {base}/ui/queue")
        print(f"  sign in with the investigator key: {args.investigator_key}")
    return 0


def _fill_queue(base: str, claims: pd.DataFrame, key: str) -> None:
    """Score more new claims in batches: those referred open cases in the queue."""
    routes: dict[str, int] = {}
    for start in range(0, len(claims), 500):
        batch = [claim_json(row) for _, row in claims.iloc[start : start + 500].iterrows()]
        status, body = _post(f"{base}/score_batch", {"claims": batch}, key)
        if status != 200:
            print(f"  scoring a batch for the queue failed: HTTP {status} {body}")
            return
        for r in body["results"]:
            routes[r["route"]] = routes.get(r["route"], 0) + 1
    shown = ", ".join(f"{n:,} {route}" for route, n in sorted(routes.items()))
    print(f"\nScored {len(claims):,} more new claims for the queue: {shown}")


if __name__ == "__main__":
    sys.exit(main())

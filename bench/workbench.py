"""The investigators' workbench at scale: the case list, a case, the queue page and the claim page
over HTTP with a million claims in the history and tens of thousands of open cases.

    python -m bench.run workbench                   # the full size; writes RESULTS.md
    python -m bench.workbench --claims 100000       # a quick check: prints the JSON, writes nothing

The state is built in a temporary CLAIMSCORE_HOME:

- one synthetic population of ``claims + live`` claims (seed 11), in report order; a champion
  trained and promoted on its first ``TRAIN_CLAIMS`` claims; its first ``claims`` claims hashed
  and loaded into the history store;
- a real server (:class:`pipelines.local_server.Server`, two workers); the population's last
  ``live`` claims scored through ``POST /score_batch`` in batches of ``BATCH`` as new claims: each
  decision is logged, each claim appended to the history, and those routed to a queue open cases
  by themselves;
- up to ``cases`` open cases: the rest opened directly in the case store
  (:meth:`serving.cases.CaseStore.open_cases`) for random claims of the history, each with a
  decision in the decision log copied from one of the live referred decisions (its features,
  scores, reasons and versions; the claim page explains the latest decision's features), the
  case's priority being that decision's fraud score.

Then, one request at a time on one keep-alive connection (``http.client``, in this process, on
the same cores as the server), each path ``WARM_UP`` times untimed and ``REQUESTS`` times timed:
``/readyz`` and ``/model`` as the floor (BentoML's own probe; the smallest authenticated FastAPI
route), ``GET /cases?queue=siu_referral`` (first page, default sort), a filtered and sorted page
deep in the list, ``GET /cases/{claim_id}`` for random referred claims (a different one each
time; reading a case is an audit event, so each is also a write), and the pages ``GET /ui/queue``
(default filters), a filtered queue page, and ``GET /ui/claims/{claim_id}``, signed in through
the sign-in form with an investigator's key. Every answer other than 200 counts as an error; a
claim page without its reasons chart or its network counts as incomplete.
Finally, in process, :func:`serving.network.claim_network` on an index of the whole history
(as a worker holds it) for the same claims.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

import numpy as np

from bench.serving import latency

HISTORY_CLAIMS = 1_000_000
TRAIN_CLAIMS = 50_000
LIVE_CLAIMS = 10_000
CASES = 30_000
BATCH = 500
REQUESTS = 200
WARM_UP = 20
DEEP_OFFSET = 5_000
"""How deep the filtered page starts (at most half of the cases that match its filters)."""
SEED = 11
CLAIM_PAGE_HOLDS = (b'class="waterfall"', b'id="network-data"')
"""What a claim page must show to count as complete: the reasons chart and the linked network."""


def _say(what: str) -> None:
    """Progress on stderr (stdout ends with the JSON result)."""
    print(f"[workbench {time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


class Client:
    """One keep-alive HTTP/1.1 connection (``http.client`` reopens it when the server closes it)."""

    def __init__(self, port: int, headers: dict[str, str] | None = None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = dict(headers or {})

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, http.client.HTTPResponse]:
        self.conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
        response = self.conn.getresponse()
        return response.status, response.read(), response

    def close(self) -> None:
        self.conn.close()


def _cookie(response: http.client.HTTPResponse, name: str) -> str | None:
    for header in response.headers.get_all("set-cookie") or []:
        first = header.split(";", 1)[0]
        if first.startswith(f"{name}="):
            return first.split("=", 1)[1]
    return None


def sign_in(port: int, key: str) -> str:
    """The session cookie the sign-in form gives for ``key`` (GET the form, POST it back)."""
    client = Client(port)
    try:
        status, page, response = client.request("GET", "/ui/login")
        if status != 200:
            raise RuntimeError(f"GET /ui/login answered {status}")
        token = re.search(rb'name="login_token" value="([^"]+)"', page).group(1).decode()
        login_cookie = _cookie(response, "claimscore_login")
        body = urlencode({"api_key": key, "login_token": token, "next": "/ui/queue"}).encode()
        status, _, response = client.request(
            "POST",
            "/ui/login",
            body,
            {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"claimscore_login={login_cookie}"},
        )
        session = _cookie(response, "claimscore_session")
        if status not in (302, 303) or not session:
            raise RuntimeError(f"POST /ui/login answered {status} without a session")
        return session
    finally:
        client.close()


def measure(client: Client, paths: Callable[[int], str], n: int, warm_up: int, must: tuple[bytes, ...] = ()) -> dict:
    """``GET paths(i)`` for i in range(warm_up + n), the last n timed, one at a time; ``incomplete``
    counts the answers (200s) that lack one of ``must``."""
    times, errors, incomplete, sizes = [], 0, 0, []
    for i in range(warm_up + n):
        t0 = time.perf_counter()
        status, body, _ = client.request("GET", paths(i))
        elapsed = time.perf_counter() - t0
        if i >= warm_up:
            times.append(elapsed)
            errors += status != 200
            incomplete += status == 200 and not all(m in body for m in must)
            sizes.append(len(body))
    return {
        **latency(times),
        "requests": n,
        "errors": errors,
        "incomplete": incomplete,
        "mean_kb": float(np.mean(sizes)) / 1024,
    }


# --- the state ---------------------------------------------------------------------------------


def build_history(home: Path, claims: int, live: int, timings: dict) -> tuple[object, object]:
    """Train and promote a champion, load ``claims`` claims into the history; the settings, the
    hashed history frame and the canonical live claims (not hashed: they are sent as new claims)."""
    import pandas as pd

    from features.config import load_settings
    from features.data.sources import load_claims
    from features.data.synthetic import generate_claims
    from features.store.history import HistoryStore
    from training import registry
    from training.config import TrainingConfig
    from training.pipeline import train

    os.environ["CLAIMSCORE_HOME"] = str(home)
    settings = load_settings().resolved().ensure_dirs()

    t0 = time.perf_counter()
    frame = generate_claims(claims + live, seed=SEED).sort_values("report_date", kind="stable", ignore_index=True)
    history, new = frame.iloc[:claims], frame.iloc[claims:].reset_index(drop=True)
    data, train_data = home / "history.parquet", home / "train.parquet"
    history.to_parquet(data)
    history.iloc[: min(TRAIN_CLAIMS, claims)].to_parquet(train_data)
    del frame, history
    timings["generate_s"] = time.perf_counter() - t0
    _say(f"generated {claims + live:,} claims in {timings['generate_s']:.0f} s; training")

    t0 = time.perf_counter()
    train(str(train_data), "synthetic", settings, TrainingConfig(refit=False))
    registry.configure(settings)
    registry.promote("average_precision", 0.0, "bench", "workbench bench")
    timings["train_s"] = time.perf_counter() - t0
    _say(f"trained and promoted in {timings['train_s']:.0f} s; hashing the history")

    t0 = time.perf_counter()
    hashed = load_claims(str(data), "synthetic", settings).frame
    timings["hash_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    HistoryStore(settings.history_url).load(hashed)
    timings["history_load_s"] = time.perf_counter() - t0
    _say(
        f"history of {claims:,} claims hashed in {timings['hash_s']:.0f} s, loaded in {timings['history_load_s']:.0f} s"
    )
    data.unlink()
    return settings, hashed[["claim_id", "region", "claimed_amount"]].copy(), pd.DataFrame(new)


def score_live(server, key: str, new, timings: dict) -> dict:
    """Score the live claims through ``/score_batch``; the route of each claim."""
    from pipelines.demo import claim_json

    payloads = [claim_json(row) for _, row in new.iterrows()]
    routes: dict[str, str] = {}
    t0 = time.perf_counter()
    for start in range(0, len(payloads), BATCH):
        status, body = server.call("POST", "/score_batch", {"claims": payloads[start : start + BATCH]}, key)
        if status != 200:
            raise RuntimeError(f"/score_batch answered {status}: {str(body)[:500]}")
        routes.update({r["claim_id"]: r["route"] for r in body["results"]})
    timings["live_score_s"] = time.perf_counter() - t0
    return routes


def open_more_cases(settings, history, referred_live: list[str], cases: int, rng) -> list[str]:
    """Open cases for random history claims until ``cases`` are open; each gets a decision copied
    from a live referred decision. The claim ids of the cases opened here."""
    from serving.cases import CaseStore, Referral
    from serving.decision_log import Decision, DecisionLog

    wanted = cases - len(referred_live)
    if wanted <= 0:
        return []
    log = DecisionLog(settings.decision_log_url)
    templates = [log.read(claim_id=cid)[-1] for cid in referred_live[:500]]
    store = CaseStore(settings.cases_url)
    rows = rng.choice(len(history), size=wanted, replace=False)
    picked = history.iloc[np.sort(rows)]
    opened: list[str] = []
    for start in range(0, len(picked), 5_000):
        chunk = picked.iloc[start : start + 5_000]
        decisions, referrals = [], []
        for cid, region, amount in zip(chunk["claim_id"], chunk["region"], chunk["claimed_amount"]):
            t = templates[int(rng.integers(len(templates)))]
            decisions.append(
                Decision(
                    claim_id=str(cid),
                    input_hash=t["input_hash"],
                    route="siu_referral",
                    scores=t["scores"],
                    features=t["features"],
                    rules=t["rules"],
                    reasons=t["reasons"],
                    versions=t["versions"],
                    key_id="bench",
                )
            )
            amount = None if amount != amount else float(amount)
            referrals.append(Referral(str(cid), "siu_referral", t["scores"]["fraud"], region, amount))
        log.write(decisions)
        opened += [c.claim_id for c in store.open_cases(referrals)]
    store.close()
    return opened


# --- the run -----------------------------------------------------------------------------------


def network_in_process(settings, claim_ids: list[str]) -> dict:
    """:func:`serving.network.claim_network` on an index of the whole history, as a worker holds it."""
    from features.store.history import HistoryStore
    from features.store.index import HistoryIndex
    from serving.network import claim_network

    t0 = time.perf_counter()
    index = HistoryIndex(HistoryStore(settings.history_url))
    read_s = time.perf_counter() - t0
    times, shown = [], []
    for cid in claim_ids:
        t0 = time.perf_counter()
        net = claim_network(index, cid)
        times.append(time.perf_counter() - t0)
        shown.append(net["shown_claims"])
    return {
        **latency(times),
        "calls": len(claim_ids),
        "index_claims": len(index),
        "index_read_s": read_s,
        "mean_shown_claims": float(np.mean(shown)),
        "max_shown_claims": int(np.max(shown)),
    }


def run(claims: int, cases: int, live: int, requests: int) -> dict:
    from pipelines.local_server import Server
    from serving.keys import KeyStore

    rng = np.random.default_rng(SEED)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        settings, history, new = build_history(home, claims, live, timings)
        keys = KeyStore(home / "keys.json")
        scorer, investigator = keys.create("scorer", "bench")[0], keys.create("investigator", "bench")[0]

        t0 = time.perf_counter()
        server = Server(home)
        timings["server_start_s"] = time.perf_counter() - t0
        _say(f"server ready in {timings['server_start_s']:.0f} s; scoring {live:,} live claims")
        try:
            routes = score_live(server, scorer, new, timings)
            referred_live = [cid for cid, route in routes.items() if route == "siu_referral"]
            if not referred_live:
                raise RuntimeError(f"none of the {live:,} live claims was referred: the bench needs some")
            t0 = time.perf_counter()
            opened = open_more_cases(settings, history, referred_live, cases, rng)
            timings["open_cases_s"] = time.perf_counter() - t0
            _say(f"{len(referred_live):,} cases from live claims, {len(opened):,} opened directly; measuring")
            referred = referred_live + opened
            route_share = {r: sum(v == r for v in routes.values()) / len(routes) for r in sorted(set(routes.values()))}

            # the deep filtered page: the commonest region among the cases, sorted by amount
            regions = history.set_index("claim_id").loc[opened, "region"] if opened else None
            region = str(regions.value_counts().index[0]) if regions is not None else "north"
            status, body = server.call(
                "GET", f"/cases?queue=siu_referral&status=open&region={quote(region)}&limit=1", key=investigator
            )
            matching = body["total"]
            offset = min(DEEP_OFFSET, matching // 2)
            filtered = f"queue=siu_referral&status=open&region={quote(region)}&sort=-amount&offset={offset}"
            status, body = server.call("GET", "/cases?queue=siu_referral&limit=1", key=investigator)
            open_cases = body["total"]

            sample = [referred[i] for i in rng.permutation(len(referred))[: WARM_UP + requests]]
            api = Client(server.port, {"Authorization": f"Bearer {investigator}"})
            results = {
                "readyz": measure(api, lambda i: "/readyz", requests, WARM_UP),
                "model": measure(api, lambda i: "/model", requests, WARM_UP),
                "cases_first_page": measure(api, lambda i: "/cases?queue=siu_referral", requests, WARM_UP),
                "cases_filtered_page": measure(api, lambda i: f"/cases?{filtered}", requests, WARM_UP),
                "case": measure(api, lambda i: f"/cases/{quote(sample[i], safe='')}", requests, WARM_UP),
            }
            api.close()
            pages = Client(server.port, {"Cookie": f"claimscore_session={sign_in(server.port, investigator)}"})
            results |= {
                "ui_queue": measure(pages, lambda i: "/ui/queue", requests, WARM_UP),
                "ui_queue_filtered": measure(pages, lambda i: f"/ui/queue?{filtered}", requests, WARM_UP),
                "ui_claim": measure(
                    pages, lambda i: f"/ui/claims/{quote(sample[i], safe='')}", requests, WARM_UP, CLAIM_PAGE_HOLDS
                ),
            }
            pages.close()
        finally:
            server.kill()
        _say("reading the history index in process for claim_network")
        network = network_in_process(settings, sample[WARM_UP:])
    return {
        "history_claims": claims,
        "history_claims_after_live": claims + live,
        "train_claims": min(TRAIN_CLAIMS, claims),
        "live_claims": live,
        "live_route_share": route_share,
        "cases_from_live": len(referred_live),
        "cases_opened_directly": len(opened),
        "open_cases": open_cases,
        "filtered_query": filtered,
        "filtered_matching": matching,
        "requests": requests,
        "warm_up": WARM_UP,
        "client": "http.client, one keep-alive connection, sequential, in the bench process",
        "setup": timings,
        "http": results,
        "network_in_process": network,
        "cores": len(os.sched_getaffinity(0)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.workbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=HISTORY_CLAIMS, help="claims in the history store")
    parser.add_argument("--cases", type=int, default=CASES, help="open cases (live referrals + opened directly)")
    parser.add_argument("--live", type=int, default=LIVE_CLAIMS, help="new claims scored through /score_batch")
    parser.add_argument("--requests", type=int, default=REQUESTS, help="timed requests per path")
    args = parser.parse_args(argv)
    # a secret of the bench's own keys the identifier hashes (bench/run.py sets the same one)
    os.environ.setdefault("CLAIMSCORE_IDENTITY_SECRET", "claimscore-bench-secret-not-for-production-0001")
    return run(args.claims, args.cases, args.live, args.requests)


if __name__ == "__main__":
    print(json.dumps(main()))
    sys.stdout.flush()

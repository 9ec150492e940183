"""Access: key file changes under a lock, keys compared in constant time, default deny for paths
without a role, only the documentation's own files open without a key, a rate limit per key, and no
plain HTTP beyond the loopback address without saying so."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

import httpx
import pytest

from serving import api
from serving.keys import KeyStore, verify


def _create(args: tuple[str, int]) -> str:
    path, i = args
    return KeyStore(path).create("scorer", f"k{i}")[1].key_id


def test_concurrent_key_changes_never_undo_each_other(tmp_path):
    path = str(tmp_path / "keys.json")
    store = KeyStore(path)
    _, victim = store.create("scorer", "victim")
    with multiprocessing.get_context("fork").Pool(8) as pool:
        pending = pool.map_async(_create, [(path, i) for i in range(48)])
        store.revoke(victim.key_id)  # races the creations
        created = pending.get(timeout=60)
    records = {r.key_id: r for r in KeyStore(path).list()}
    assert set(created) <= set(records) and len(records) == 49
    assert records[victim.key_id].revoked


def test_a_key_is_found_only_by_itself(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    key, record = store.create("investigator", "a")
    other, _ = store.create("scorer", "b")
    lookup = store.lookup()
    assert verify(lookup, f"Bearer {key}") == record
    assert verify(lookup, f"Bearer {key[:-1]}x") is None
    assert verify(lookup, f"Basic {key}") is None
    store.revoke(record.key_id)
    assert verify(store.lookup(), f"Bearer {key}") is None and verify(store.lookup(), f"Bearer {other}") is not None


async def _ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _client(tmp_path, rate: float = 0.0) -> tuple[httpx.AsyncClient, dict[str, str]]:
    store = KeyStore(tmp_path / "keys.json")
    keys = {role: store.create(role, role)[0] for role in ("scorer", "investigator", "admin")}
    app = api.AuthMiddleware(_ok, str(tmp_path / "keys.json"), rate_per_second=rate)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"), keys


def test_a_path_without_a_role_is_refused_to_every_role(tmp_path):
    async def run():
        client, keys = _client(tmp_path)
        async with client:
            for key in keys.values():
                answer = await client.get("/internal/anything", headers={"Authorization": f"Bearer {key}"})
                assert answer.status_code == 403 and "no role may use /internal/anything" in answer.text
            answer = await client.get("/model", headers={"Authorization": f"Bearer {keys['scorer']}"})
            assert answer.status_code == 200

    asyncio.run(run())


def test_only_the_documentations_own_files_are_open_without_a_key(tmp_path):
    assert "/static_content/swagger-ui.css" in api.DOC_ASSETS

    async def run():
        client, _ = _client(tmp_path)
        async with client:
            assert (await client.get("/static_content/swagger-ui.css")).status_code == 200
            for path in ("/static_content/secret.txt", "/static/keys.json", "/staticfoo", "/static_content/"):
                assert (await client.get(path)).status_code == 401, path

    asyncio.run(run())


def test_a_key_over_its_rate_is_told_when_to_retry(tmp_path):
    async def run():
        client, keys = _client(tmp_path, rate=5)
        async with client:
            scorer = {"Authorization": f"Bearer {keys['scorer']}"}
            codes = [(await client.get("/model", headers=scorer)).status_code for _ in range(5)]
            assert codes == [200] * 5  # a second's worth at once
            refused = await client.get("/model", headers=scorer)
            assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["errors"][0]["field"] == "Authorization"
            # another key has its own bucket
            other = {"Authorization": f"Bearer {keys['investigator']}"}
            assert (await client.get("/model", headers=other)).status_code == 200

    asyncio.run(run())


def test_the_bucket_refills_at_the_rate():
    limiter = api.RateLimiter(2)
    assert limiter.wait("k", now=0.0) == 0 and limiter.wait("k", now=0.0) == 0
    assert limiter.wait("k", now=0.0) == pytest.approx(0.5)
    assert limiter.wait("k", now=0.5) == 0  # half a second buys one request
    assert api.RateLimiter(0).wait("k", now=0.0) == 0  # no limit


def test_serving_beyond_loopback_needs_tls_or_says_plain_http(cli, tmp_path):
    result = cli("serve", "--host", "0.0.0.0")
    assert result.code == 2 and "--host" in result.err and "ssl-certfile" in result.err
    result = cli(
        "serve", "--host", "0.0.0.0", "--ssl-certfile", tmp_path / "missing.pem", "--ssl-keyfile", tmp_path / "k.pem"
    )
    assert result.code == 2 and "is not a file" in result.err
    from pipelines.cli.serve import _tls

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    assert _tls("0.0.0.0", cert, key, False) == ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    assert _tls("127.0.0.1", None, None, False) == [] and _tls("10.0.0.5", None, None, True) == []


def test_the_rate_limit_setting_accepts_zero_and_refuses_negatives():
    from features.config import load_settings
    from features.errors import ConfigError

    assert load_settings(env={"CLAIMSCORE_RATE_LIMIT_PER_SECOND": "0"}).rate_limit_per_second == 0
    with pytest.raises(ConfigError, match="rate_limit_per_second"):
        load_settings(env={"CLAIMSCORE_RATE_LIMIT_PER_SECOND": "-1"})
    assert Path(api.keys_path()).name == "keys.json"

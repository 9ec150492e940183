"""API keys: shown once, only hashes stored, roles, revocation."""

from __future__ import annotations

import pytest

from serving.keys import ApiKeyError, KeyStore, verify


def test_a_key_verifies_with_its_role_and_only_its_hash_is_stored(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    key, record = store.create("scorer", "claims system")
    assert key.startswith("cs_") and len(key) > 40
    assert key not in (tmp_path / "keys.json").read_text()
    assert (tmp_path / "keys.json").stat().st_mode & 0o077 == 0
    found = verify(store.lookup(), f"Bearer {key}")
    assert found is not None and found.role == "scorer" and found.key_id == record.key_id


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer cs_wrong", "Bearer nothing"])
def test_missing_or_wrong_keys_do_not_verify(tmp_path, header):
    store = KeyStore(tmp_path / "keys.json")
    store.create("admin")
    assert verify(store.lookup(), header) is None


def test_a_revoked_key_no_longer_verifies(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    key, record = store.create("investigator")
    other, _ = store.create("scorer")
    store.revoke(record.key_id)
    assert verify(store.lookup(), f"Bearer {key}") is None
    assert verify(store.lookup(), f"Bearer {other}") is not None


def test_unknown_roles_and_ids_are_named(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    with pytest.raises(ApiKeyError, match="unknown role 'boss'"):
        store.create("boss")
    with pytest.raises(ApiKeyError, match="no key with id 'nope'"):
        store.revoke("nope")


def test_keys_cli_prints_the_key_once(cli):
    created = cli("keys", "create", "--role", "scorer", "--name", "test")
    assert created.code == 0 and created.out.strip().startswith("cs_")
    listed = cli("keys", "list")
    assert created.out.strip() not in listed.out and "scorer" in listed.out
    assert cli("keys", "create", "--role", "boss").code == 2

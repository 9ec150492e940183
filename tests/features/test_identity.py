"""The identity function: the same identifier in any format hashes alike, different ones do not,
hashes are keyed, idempotent, and the service refuses the public demo secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from features.config import Settings, load_settings
from features.errors import ConfigError
from features.identity import DEMO_SECRET, Identity, is_hashed, require_real_secret

ID = Identity("test-secret")

SAME = [
    ("phone", ["+61 412 345 678", "0412 345 678", "61412345678", "(04) 1234-5678", "+61 (0)412 345 678", "412345678"]),
    ("phone", ["+44 20 7946 0000", "+44 (0)20 7946 0000", "+442079460000"]),
    (
        "address",
        [
            "12 Banksia Street, Carlton VIC 3053",
            "12 BANKSIA ST CARLTON VIC 3053",
            "12  banksia st.,  Carlton,VIC 3053",
            "12 Banksia Street\nCarlton VIC 3053",
        ],
    ),
    ("email", ["Jo.Citizen@Example.com", " jo.citizen@example.COM "]),
    ("account", ["062-000 1234 5678", "062000 12345678", "06200012345678", "062-000-12345678"]),
    ("text", ["AB 123", "AB  123", " AB 123 "]),
]
DIFFERENT = [
    ("phone", ["0412 345 678", "0412 345 679", "+64 412 345 678", "0312 345 678"]),
    ("address", ["12 Banksia St Carlton", "14 Banksia St Carlton", "12 Banksia Rd Carlton", "12 Wattle St Carlton"]),
    ("account", ["062-000 12345678", "062-000 12345679", "063-000 12345678"]),
    ("text", ["AB123", "ab123", "AB 123"]),
]


@pytest.mark.parametrize(("kind", "values"), SAME, ids=[f"{k}:{v[0]}" for k, v in SAME])
def test_formats_of_one_identifier_hash_alike(kind, values):
    hashes = {ID.hash_value(v, kind) for v in values}
    assert len(hashes) == 1 and is_hashed(hashes.pop())


@pytest.mark.parametrize(("kind", "values"), DIFFERENT, ids=[f"{k}:{v[0]}" for k, v in DIFFERENT])
def test_different_identifiers_hash_differently(kind, values):
    assert len({ID.hash_value(v, kind) for v in values}) == len(values)


def test_phone_rule_follows_the_configured_country():
    uk = Identity("test-secret", country_code="44", trunk_prefix="0")
    assert uk.normalise("020 7946 0000", "phone") == "442079460000"
    assert uk.hash_value("020 7946 0000", "phone") == ID.hash_value("+44 20 7946 0000", "phone")
    assert Identity("s", country_code="", trunk_prefix="").normalise("(02) 7946-0000", "phone") == "0279460000"


def test_a_hash_is_its_own_hash_and_nulls_stay_null():
    h = ID.hash_value("+61 412 345 678", "phone")
    assert h.startswith("h1:") and len(h) == 3 + 32
    assert ID.hash_value(h, "phone") == h and ID.hash_value(h, "address") == h
    assert Identity("another").hash_value(h, "phone") == h  # a hash is never hashed again, whatever the key
    for empty in (None, float("nan"), pd.NA, "", "  ", "n/a", "---"):
        assert ID.hash_value(empty, "phone") is None


def test_the_kind_is_part_of_the_hash():
    assert ID.hash_value("12345678", "account") != ID.hash_value("12345678", "text")


def test_different_secrets_give_different_hashes():
    values = ["0412 345 678", "12 Banksia St", "062-000 12345678"]
    kinds = ["phone", "address", "account"]
    a = [Identity("secret-a").hash_value(v, k) for v, k in zip(values, kinds)]
    b = [Identity("secret-b").hash_value(v, k) for v, k in zip(values, kinds)]
    assert all(x != y for x, y in zip(a, b))


def test_a_column_is_hashed_per_distinct_value_like_one_by_one():
    s = pd.Series(["0412 345 678", None, "+61412345678", "0412 345 679", "0412 345 678"] * 3, index=range(10, 25))
    out = ID.hash_series(s, "phone")
    assert list(out.index) == list(s.index)
    assert [None if pd.isna(v) else v for v in out] == [ID.hash_value(v, "phone") for v in s]


def test_records_and_payloads_have_only_their_personal_fields_hashed():
    claim = {"claim_id": "C-1", "phone": "0412 345 678", "address": None, "payee_account": "062000 12345678"}
    out = ID.hash_record(claim)
    assert out["claim_id"] == "C-1" and out["address"] is None
    assert out["phone"] == ID.hash_value("+61 412 345 678", "phone") and is_hashed(out["payee_account"])
    assert claim["phone"] == "0412 345 678"  # a copy
    assert ID.hash_payload({**claim, "x_note": "0412 345 678"})["x_note"] == "0412 345 678"


def test_settings_read_the_secret_demo_flag_and_phone_rule(tmp_path: Path):
    env = {
        "CLAIMSCORE_IDENTITY_SECRET": "s3cret",
        "CLAIMSCORE_DEMO": "1",
        "CLAIMSCORE_PHONE_COUNTRY_CODE": "44",
        "CLAIMSCORE_HOME": str(tmp_path),
    }
    s = load_settings(env=env)
    assert (s.identity_secret, s.demo, s.phone_country_code) == ("s3cret", True, "44")
    assert load_settings(env={"CLAIMSCORE_DEMO": "false", "CLAIMSCORE_HOME": str(tmp_path)}).demo is False
    toml = tmp_path / "c.toml"
    toml.write_text('hash_salt = "x"\n')
    with pytest.raises(ConfigError, match="identity_secret"):
        load_settings(toml, env={})
    toml.write_text('demo = "perhaps"\n')
    with pytest.raises(ConfigError, match="true or false"):
        load_settings(toml, env={})


def test_the_service_refuses_the_demo_secret_unless_told_it_is_a_demo(tmp_path: Path):
    for refused in (Settings(home=tmp_path), Settings(home=tmp_path, identity_secret=DEMO_SECRET)):
        with pytest.raises(ConfigError, match="CLAIMSCORE_IDENTITY_SECRET"):
            require_real_secret(refused)
    require_real_secret(Settings(home=tmp_path, demo=True))
    require_real_secret(Settings(home=tmp_path, identity_secret="a real secret"))


def test_imports_with_the_demo_secret_warn_once(monkeypatch, caplog):
    import features.identity as identity

    monkeypatch.setattr(identity, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="claimscore.identity"):
        Identity.from_settings(Settings())
        Identity.from_settings(Settings())
        Identity.from_settings(Settings(identity_secret="mine"))
    assert len(caplog.records) == 1 and "CLAIMSCORE_IDENTITY_SECRET" in caplog.records[0].getMessage()
    caplog.clear()
    monkeypatch.setattr(identity, "_warned", False)
    Identity.from_settings(Settings(demo=True))
    assert not caplog.records


def test_serve_refuses_the_demo_secret_with_one_line(cli, monkeypatch):
    for name in ("CLAIMSCORE_IDENTITY_SECRET", "CLAIMSCORE_DEMO", "CLAIMSCORE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    result = cli("serve", "--port", "3999")
    assert result.code == 2
    assert len(result.err_lines) == 1 and "CLAIMSCORE_IDENTITY_SECRET" in result.err_lines[0], result.err
    assert "--demo" in result.err_lines[0]


def test_a_frame_has_its_personal_columns_hashed_and_stays_hashed():
    frame = pd.DataFrame(
        {"claim_id": ["C-1", "C-2"], "phone": ["0412 345 678", None], "address": ["1 A St", "1 a st."]}
    )
    once = ID.hash_frame(frame)
    assert list(once["claim_id"]) == ["C-1", "C-2"] and pd.isna(once["phone"].iloc[1])
    assert once["address"].iloc[0] == once["address"].iloc[1] and is_hashed(once["phone"].iloc[0])
    pd.testing.assert_frame_equal(ID.hash_frame(once), once)


@pytest.mark.parametrize("secret", ["k", "a secret of some length", "x" * 64, "long" * 40, "ключ"])
def test_the_hash_is_hmac_sha256_of_kind_and_normal_form(secret):
    import hashlib
    import hmac

    expected = hmac.new(secret.encode(), b"phone:61412345678", hashlib.sha256).hexdigest()[:32]
    assert Identity(secret).hash_value("0412 345 678", "phone") == "h1:" + expected


def test_the_secret_never_shows_in_a_repr():
    assert "zzz-secret" not in repr(Settings(identity_secret="zzz-secret")) + repr(Identity("zzz-secret"))


def test_an_identity_pickles_for_dask_workers():
    import pickle

    copy = pickle.loads(pickle.dumps(ID))
    assert copy.hash_value("0412 345 678", "phone") == ID.hash_value("0412 345 678", "phone")

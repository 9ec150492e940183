"""One identity function for personal identifiers, used on every path in: normalise, then a keyed hash.

    identity = Identity.from_settings(settings)
    identity.hash_value("+61 412 345 678", "phone")   # 'h1:' + 32 hex digits
    identity.hash_value("(04) 1234-5678", "phone")    # the same
    identity.hash_series(frame["address"], "address") # each distinct value hashed once

Every way a claim comes in uses it: mapping import and canonical files
(:mod:`features.data.sources.apply`), hence ``claimscore history load`` / ``score`` / ``train``, and
the live API (:mod:`serving.state`), so a claim scored live links to the history it was loaded with.

Normalisation (what counts as "the same identifier"):

- ``phone``: digits only, in international form. A number written with ``+`` is international
  already; a ``(0)`` after the country code is dropped ("+61 (0)4..."); a number starting with the
  trunk prefix (``phone_trunk_prefix``, default ``0``) is national: the prefix is replaced by the
  country code (``phone_country_code``, default ``61``); a number starting with the country code
  is kept; any other number is national without its trunk prefix and gets the country code. So
  "+61 412 345 678", "0412 345 678", "61412345678", "412 345 678" and "(04) 1234-5678" are all
  ``61412345678``. International access codes ("0011 ...", "00 ...") are not interpreted.
- ``address`` and ``email``: Unicode compatibility form, case-folded; addresses also lose their
  punctuation (letters, digits and single spaces remain) and write common street types short
  ("Street" -> "st", "Road" -> "rd"); e-mail addresses lose all white space (their dots and ``@``
  carry meaning).
- ``account``: letters and digits only, upper case ("062-000 1234 5678" -> "06200012345678").
- ``text`` (anything a mapping marks ``hash: true``): trimmed, inner white space collapsed.

A value that normalises to nothing (a phone without digits, an address of punctuation) is null.

The hash is HMAC-SHA256 keyed with ``identity_secret`` over ``kind + ":" + normalised value``, kept
to 128 bits and written ``h1:`` + 32 hex digits. The kind is part of the message so that a phone and
an account with the same digits do not hash alike. A value that already is such a hash passes
through unchanged (canonical files written by an earlier import are re-read as they are).

The built-in secret (:data:`DEMO_SECRET`, used while ``identity_secret`` is unset) is public: it is
for demos and tests. The service refuses to start with it unless ``demo`` is set
(:func:`require_real_secret`); the import commands use it with a one-line warning.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd

from features import schema
from features.errors import ConfigError

Kind = Literal["phone", "address", "email", "account", "text"]

HASH_PREFIX = "h1:"
"""Marks a ClaimScore identity hash (version 1: HMAC-SHA256, 128 bits, hex)."""
HASH_HEX = 32
DEMO_SECRET = "claimscore-demo-secret-public-do-not-use-for-real-claims"
"""The built-in secret: public, so only for demos and tests."""
SECRET_HINT = (
    "set CLAIMSCORE_IDENTITY_SECRET (or identity_secret in claimscore.toml) to a secret of your own, "
    "e.g. the output of: python -c 'import secrets; print(secrets.token_hex(32))'"
)

FIELD_KINDS: dict[str, Kind] = {"phone": "phone", "address": "address", "payee_account": "account"}
"""How each personal field of the schema is normalised (a personal field not listed: ``text``)."""

STREET_TYPES = {
    "street": "st",
    "road": "rd",
    "avenue": "ave",
    "av": "ave",
    "drive": "dr",
    "court": "ct",
    "place": "pl",
    "lane": "ln",
    "crescent": "cres",
    "parade": "pde",
    "highway": "hwy",
    "boulevard": "blvd",
    "terrace": "tce",
    "close": "cl",
    "apartment": "apt",
}
"""Common street types written short, so "12 Smith Street" and "12 smith st." are one address."""

_HASHED = re.compile(rf"{re.escape(HASH_PREFIX)}[0-9a-f]{{{HASH_HEX}}}")
_NOT_DIGIT = re.compile(r"[^0-9]+")
_NOT_WORD = re.compile(r"[\W_]+")
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]+")
_SPACE = re.compile(r"\s+")
_BLOCK = 64  # SHA-256's block size in bytes
_log = logging.getLogger("claimscore.identity")
_warned = False


def is_hashed(value: Any) -> bool:
    """Whether ``value`` already is a ClaimScore identity hash (``h1:`` + 32 hex digits)."""
    return isinstance(value, str) and _HASHED.fullmatch(value) is not None


SHORT_HEX = 8
"""Hex digits of a hash shown to people (enough to tell two apart on one page)."""


def short_hash(value: str) -> str:
    """The first :data:`SHORT_HEX` hex digits of an identity hash, for people to read."""
    return value[len(HASH_PREFIX) : len(HASH_PREFIX) + SHORT_HEX]


def kind_of(name: str) -> Kind:
    """The normaliser a canonical field uses: its own for personal fields, ``text`` otherwise."""
    return FIELD_KINDS.get(name, "text")


def personal_fields() -> tuple[str, ...]:
    """The schema's personal fields: hashed wherever a claim comes in."""
    return _PERSONAL


_PERSONAL = tuple(f.name for f in schema.FIELDS if f.personal)


# --- normalisers -----------------------------------------------------------------------------------


def normalise_phone(value: str, country_code: str = "61", trunk_prefix: str = "0") -> str | None:
    """Digits in international form (see the module docstring); None without digits."""
    value = unicodedata.normalize("NFKC", value)
    international = value.lstrip().startswith("+")
    digits = _NOT_DIGIT.sub("", value.replace("(0)", ""))
    if not digits:
        return None
    if international or not country_code:
        return digits
    if trunk_prefix and digits.startswith(trunk_prefix):
        return country_code + digits[len(trunk_prefix) :]
    if digits.startswith(country_code):
        return digits
    return country_code + digits


def normalise_address(value: str) -> str | None:
    words = _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", value).casefold()).split()
    return " ".join(STREET_TYPES.get(w, w) for w in words) or None


def normalise_email(value: str) -> str | None:
    return _SPACE.sub("", unicodedata.normalize("NFKC", value).casefold()) or None


def normalise_account(value: str) -> str | None:
    return _NOT_ALNUM.sub("", unicodedata.normalize("NFKC", value)).upper() or None


def normalise_text(value: str) -> str | None:
    return _SPACE.sub(" ", value).strip() or None


# --- the keyed hash --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Normalise and hash personal identifiers with one secret and one phone rule."""

    secret: str = field(default=DEMO_SECRET, repr=False)
    country_code: str = "61"
    trunk_prefix: str = "0"

    def __post_init__(self) -> None:
        if not self.secret:
            raise ConfigError(f"identity_secret is empty: {SECRET_HINT}")
        for name in ("country_code", "trunk_prefix"):
            if not getattr(self, name).isdigit() and getattr(self, name):
                raise ConfigError(f"phone_{name} must be digits, got '{getattr(self, name)}'")
        # HMAC-SHA256 (RFC 2104) from SHA-256 states keyed once: the same digest as hmac.digest, at
        # less than half its cost per value (the import path hashes millions of distinct values)
        key = self.secret.encode("utf-8")
        key = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
        object.__setattr__(self, "_inner", hashlib.sha256(bytes(k ^ 0x36 for k in key)))
        object.__setattr__(self, "_outer", hashlib.sha256(bytes(k ^ 0x5C for k in key)))

    def __reduce__(self) -> tuple:
        # rebuilt from its fields (SHA-256 states do not pickle): Dask ships it to its workers
        return (type(self), (self.secret, self.country_code, self.trunk_prefix))

    @classmethod
    def from_settings(cls, settings: Any, *, warn: bool = True) -> Identity:
        """The identity of ``settings`` (:class:`features.config.Settings`). With the built-in secret
        outside a demo, logs a one-line warning once per process (``warn=False``: not)."""
        secret = settings.identity_secret or DEMO_SECRET
        identity = cls(secret, settings.phone_country_code, settings.phone_trunk_prefix)
        global _warned
        if warn and identity.is_demo_secret and not settings.demo and not _warned:
            _warned = True
            _log.warning(
                "warning: personal identifiers are hashed with the public demo secret (for demos: "
                "CLAIMSCORE_DEMO=1 silences this); %s",
                SECRET_HINT,
            )
        return identity

    @property
    def is_demo_secret(self) -> bool:
        return self.secret == DEMO_SECRET

    def normalise(self, value: str, kind: Kind) -> str | None:
        """The normal form of ``value`` as ``kind`` (see the module docstring); None: nothing left."""
        return self._normaliser(kind)(value)

    def hash_value(self, value: Any, kind: Kind) -> str | None:
        """The identity hash of one value; None for null or a value that normalises to nothing; a
        value that is a hash already is returned as it is."""
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return None
        return self.hash_values([value], kind)[0]

    def hash_values(self, values: Iterable[Any], kind: Kind) -> list[str | None]:
        """:meth:`hash_value` of each of ``values`` (not null), each normalised form hashed once."""
        normalise, tag = self._normaliser(kind), f"{kind}:".encode()
        done: dict[str, str | None] = {}
        out: list[str | None] = []
        for value in values:
            text = str(value).strip()
            if text.startswith(HASH_PREFIX) and is_hashed(text):
                out.append(text)
                continue
            normal = normalise(text)
            if normal not in done:
                done[normal] = None if normal is None else self._hmac(tag + normal.encode())
            out.append(done[normal])
        return out

    def _hmac(self, message: bytes) -> str:
        inner, outer = self._inner.copy(), self._outer.copy()  # type: ignore[attr-defined]
        inner.update(message)
        outer.update(inner.digest())
        return HASH_PREFIX + outer.hexdigest()[:HASH_HEX]

    def _normaliser(self, kind: Kind) -> Callable[[str], str | None]:
        if kind == "phone":
            return partial(normalise_phone, country_code=self.country_code, trunk_prefix=self.trunk_prefix)
        return {
            "address": normalise_address,
            "email": normalise_email,
            "account": normalise_account,
        }.get(kind, normalise_text)

    def hash_series(self, values: pd.Series, kind: Kind) -> pd.Series:
        """Hash a column, each distinct value once (a million rows cost their distinct values); nulls
        stay null; the result has dtype ``str``."""
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        hashed = np.array(self.hash_values(np.asarray(uniques, dtype=object), kind) + [None], dtype=object)
        return pd.Series(pd.array(hashed[codes], dtype="str"), index=values.index)

    def hash_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A canonical frame with its personal columns hashed (hashed ones stay as they are); works
        per partition (``ddf.map_partitions(identity.hash_frame)``): the hash depends on the value only."""
        personal = [c for c in personal_fields() if c in frame.columns]
        return frame.assign(**{c: self.hash_series(frame[c], kind_of(c)) for c in personal}) if personal else frame

    def hash_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """A copy of a claim (field -> value) with its personal fields hashed."""
        out = dict(record)
        for name in _PERSONAL:
            if name in out:
                out[name] = self.hash_value(out[name], kind_of(name))
        return out

    def hash_payload(self, payload: Any) -> Any:
        """A request body (a JSON object) with its personal fields hashed; anything else as it is."""
        if not isinstance(payload, dict):
            return payload
        out = dict(payload)
        for name in _PERSONAL:
            if isinstance(out.get(name), str):
                out[name] = self.hash_value(out[name], kind_of(name))
        return out


def require_real_secret(settings: Any) -> None:
    """Raise :class:`ConfigError` when ``settings`` use the built-in secret outside a demo (the service
    calls this before it starts)."""
    if settings.demo:
        return
    if (settings.identity_secret or DEMO_SECRET) == DEMO_SECRET:
        raise ConfigError(
            "refusing to serve with the public demo identity secret: "
            f"{SECRET_HINT} (and load the history with it), or run a demo: claimscore serve --demo"
        )

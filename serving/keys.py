"""API keys with roles. A key is shown once, when it is created; only its SHA-256 hash is stored.

Keys are random 256-bit secrets, so a plain hash is enough (no slow password hashing needed): a
stolen key file reveals no key. Roles: ``scorer`` (claim systems), ``investigator``, ``admin``.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from features.errors import ClaimScoreError

ROLES = ("scorer", "investigator", "admin")
PREFIX = "cs_"


class ApiKeyError(ClaimScoreError):
    """A key operation the user asked for cannot be done (unknown role or key id)."""


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    """The first 12 hex digits of the key's hash: safe to show and log."""
    role: str
    name: str
    created_at: str
    key_hash: str
    revoked: bool = False


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """Keys in a JSON file under the state directory (written atomically, readable by its owner only).
    Every change reads, changes and writes the file under an exclusive lock (``keys.json.lock``), so
    two commands at once never undo each other (a ``create`` racing a ``revoke`` keeps both)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> list[KeyRecord]:
        if not self.path.exists():
            return []
        try:
            return [KeyRecord(**r) for r in json.loads(self.path.read_text(encoding="utf-8"))]
        except (ValueError, TypeError) as exc:
            raise ApiKeyError(f"key file {self.path} is damaged: {exc}") from None

    def _write(self, records: list[KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump([asdict(r) for r in records], f, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def create(self, role: str, name: str = "") -> tuple[str, KeyRecord]:
        """A new key for ``role``: returns the key (show it once) and its stored record."""
        if role not in ROLES:
            raise ApiKeyError(f"unknown role '{role}' (roles: {', '.join(ROLES)})")
        key = PREFIX + secrets.token_urlsafe(32)
        digest = _hash(key)
        record = KeyRecord(digest[:12], role, name, datetime.now(UTC).isoformat(timespec="seconds"), digest)
        with self._locked():
            self._write(self._read() + [record])
        return key, record

    def list(self) -> list[KeyRecord]:
        return self._read()

    def revoke(self, key_id: str) -> KeyRecord:
        with self._locked():
            records = self._read()
            for i, r in enumerate(records):
                if r.key_id == key_id:
                    records[i] = KeyRecord(**{**asdict(r), "revoked": True})
                    self._write(records)
                    return records[i]
        raise ApiKeyError(f"no key with id '{key_id}' (see claimscore keys list)")

    def lookup(self) -> dict[str, KeyRecord]:
        """Hash -> record for the keys in force (the service loads this once, and on reload)."""
        return {r.key_hash: r for r in self._read() if not r.revoked}


def verify(lookup: dict[str, KeyRecord], authorization: str | None) -> KeyRecord | None:
    """The record for an ``Authorization: Bearer KEY`` header value, or None. The key's hash is
    compared with every key in force in constant time (``hmac.compare_digest``), whichever matches:
    how long an answer takes says nothing about how close a guess came."""
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip().startswith(PREFIX):
        return None
    digest = _hash(key.strip()).encode()
    found = None
    for known, record in lookup.items():
        if hmac.compare_digest(digest, known.encode()):
            found = record
    return found

"""Shared fixtures: small deterministic synthetic claims, the shared real data folder, a CLI runner."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data sets beside the checkout; tests using them skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_claims():
    """5,000 synthetic claims, seed 11 (generated once per session; do not mutate)."""
    from features.data.synthetic import generate_claims

    return generate_claims(5_000, seed=11)


POSTGRES_URL = os.environ.get("CLAIMSCORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL's URL (connect timeout 2 s); tests using it skip when no server answers."""
    import sqlalchemy as sa

    url = sa.engine.make_url(POSTGRES_URL)
    try:
        socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=2).close()
    except OSError as exc:
        pytest.skip(f"no PostgreSQL answers at {url.host}:{url.port or 5432} ({exc})")
    return url.update_query_dict({"connect_timeout": "2"}).render_as_string(hide_password=False)


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@pytest.fixture
def cli(capsys, tmp_path, monkeypatch):
    """Run ``claimscore ARGS`` in-process with state in a temp dir; return code, stdout, stderr."""
    from pipelines.cli import main

    monkeypatch.setenv("CLAIMSCORE_HOME", str(tmp_path / "state"))

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run

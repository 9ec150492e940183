"""Shared fixtures: small deterministic synthetic claims, the shared real data folder, a CLI runner."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
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


# --- a served champion, trained once per session ---------------------------------------------


@pytest.fixture(scope="module")
def demo_mode():
    """Serve with the built-in identity secret: a demo, as far as the service is concerned (without
    it the service refuses that secret; tests/serving/test_identity_live.py serves with a secret of
    its own). A module that serves the champion uses it: ``pytest.mark.usefixtures("demo_mode")``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLAIMSCORE_DEMO", "1")
        yield


CHAMPION_CLAIMS, LIVE_CLAIMS = 40_000, 1_000


@pytest.fixture(scope="session")
def champion(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A state directory with a promoted champion trained on 40,000 synthetic claims (seed 23, no
    refit), the same claims loaded into the history store, and the next 1,000 claims of the same
    population (to score live). Trained once per session: a test module that serves takes its own
    copy of the directory (:func:`served_home`), so what one module's server writes, another never sees."""
    from features.config import Settings
    from features.data.sources import load_claims
    from features.data.synthetic import generate_claims
    from features.store.history import HistoryStore
    from training import registry
    from training.config import TrainingConfig
    from training.pipeline import train

    frame = generate_claims(CHAMPION_CLAIMS + LIVE_CLAIMS, seed=23)
    frame = frame.sort_values("report_date", kind="stable", ignore_index=True)

    def make(base: Path) -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CLAIMSCORE_DEMO", "1")  # the built-in identity secret (see tests/serving/test_service.py)
            settings = Settings(home=base).resolved().ensure_dirs()
            data = base / "claims.parquet"
            frame.iloc[:CHAMPION_CLAIMS].to_parquet(data)
            train(str(data), "synthetic", settings, TrainingConfig(refit=False))
            registry.configure(settings)
            registry.promote("average_precision", 0.0, "tests", "served-champion tests")
            store = HistoryStore(settings.history_url)
            store.load(load_claims(str(data), "synthetic", settings).frame)
            store.close()

    return once_per_run(tmp_path_factory, "champion", make), frame.iloc[CHAMPION_CLAIMS:].reset_index(drop=True)


def once_per_run(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder ``make`` fills once per test run, whichever test process asks first (``make test``
    runs modules in two processes, pytest-xdist; the others wait for it, then read it)."""
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each test process's own
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".made").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a process that failed half-way left
            folder.mkdir()
            make(folder)
            (folder / ".made").touch()
    return folder


@pytest.fixture(scope="session")
def served_home(champion, tmp_path_factory) -> Callable[[str], Path]:
    """``served_home(name)``: a fresh copy of the champion's state directory (models, registry,
    history) to serve from."""

    def copy_of(name: str) -> Path:
        home = tmp_path_factory.mktemp(name)
        shutil.copytree(champion[0], home, dirs_exist_ok=True)
        return home

    return copy_of

"""Every MLproject entry point runs offline with ``mlflow run . --env-manager local``, in order,
on a small synthetic book, against an MLflow store of the test's own (a SQLite file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# eleven `mlflow run`s, three of them training: 3-10 minutes on 2 cores, beyond make test's budget;
# `make test-long` runs it
pytestmark = [pytest.mark.slow, pytest.mark.long]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_every_entry_point_runs_offline(tmp_path):
    entry_points = set(yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"])
    claims, state = tmp_path / "claims.parquet", tmp_path / "state"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "CLAIMSCORE_HOME": str(state),
        "CLAIMSCORE_DEMO": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'runs.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "NO_PROXY": "*",
        "HTTP_PROXY": "http://127.0.0.1:9",  # no network: a download attempt fails at once
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    env.pop("MLFLOW_RUN_ID", None)

    def mlflow_run(entry: str, **params) -> subprocess.CompletedProcess:
        args = [str(BIN / "mlflow"), "run", str(ROOT), "--env-manager", "local", "-e", entry]
        for key, value in params.items():
            args += ["-P", f"{key}={value}"]
        return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    def ok(entry: str, **params) -> None:
        done = mlflow_run(entry, **params)
        assert done.returncode == 0, f"{entry}: {done.stderr[-3000:]}"
        ran.add(entry)

    ran: set[str] = set()
    ok("generate", claims=10000, data_seed=5, out=claims)
    assert claims.is_file()
    ok("validate", data=claims)
    ok("features", data=claims, out=tmp_path / "features.parquet")
    ok("train", data=claims)
    ok("promote", by="test", reason="first champion")
    ok("evaluate", data=claims)
    ok("score", data=claims, out=tmp_path / "scored.parquet")
    assert (tmp_path / "scored.parquet").is_file()
    ok("backtest", data=claims, out=tmp_path / "backtest")
    subprocess.run(
        [str(BIN / "claimscore"), "history", "load", "--data", str(claims), "--source", "synthetic"],
        env=env,
        check=True,
        capture_output=True,
    )
    # monitoring exits 3 when something alerts, retraining 4 when the challenger is refused: either
    # is a finished run whose outcome is in its files
    done = mlflow_run("monitor", source="history", out=tmp_path / "monitoring")
    assert done.returncode == 0 or (tmp_path / "monitoring" / "summary.json").is_file(), done.stderr[-3000:]
    ran.add("monitor")
    done = mlflow_run("retrain", out=tmp_path / "retrain")
    summary = tmp_path / "retrain" / "retrain.json"
    assert summary.is_file(), done.stderr[-3000:]
    assert (done.returncode == 0) == json.loads(summary.read_text())["promoted"]
    ran.add("retrain")
    ok("main", claims=10000, data_seed=6, out=tmp_path / "main.parquet")
    assert ran == entry_points

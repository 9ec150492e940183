"""``claimscore monitor --data`` on Dask: the window of a table made on a loopback cluster (features over
the whole table, scores, reconstruction errors and quality checks where the claims are) gives the
summary an in-process run gives: every drift row, quality line, performance figure, fairness row and
KPI. Bad options get one line and exit 2; the window's rows are not left behind.

The champion is the session's (tests/conftest.py); the table is its claims of the test period (the
window) and the half year before it, in four Parquet files in report order (so claimants' earlier
claims lie in other partitions), the window shifted (amounts tripled, a channel gone, a few
impossible values) so that drift and quality have something to say."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pipelines.distributed
from monitoring.monitor import summary_differences
from pipelines.cli import main
from pipelines.distributed_monitoring import WINDOW_FOLDER

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_mode")]  # a champion, and Dask clusters

FILES = 4
PARTITION_ROWS = 2_000  # the table's 12,477 rows in eight partitions, the window's 8,006 in six
HISTORY_DAYS = 180
"""Claims reported this long before the window are in the table: its history."""


@pytest.fixture(scope="module")
def home(served_home) -> Path:
    return served_home("dask_monitoring")


def run(home: Path, *args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("CLAIMSCORE_HOME", str(home))
        mp.setattr(pipelines.distributed, "PARTITION_ROWS", PARTITION_ROWS)
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def table(home, tmp_path_factory) -> tuple[Path, Path, str, str]:
    """The champion's claims of its test period (shifted) and the ``HISTORY_DAYS`` before: one file,
    the same rows in ``FILES`` files; the window's ``--since`` and ``--until``."""
    from features.config import load_settings
    from serving.model.scorer import Scorer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLAIMSCORE_HOME", str(home))
        period = Scorer.from_registry(load_settings()).bundles["fraud"].reference["extra"]["period"]
    first, last = (pd.Timestamp(t) for t in period.split(" to "))
    since, until = first, last + pd.Timedelta(days=1)
    frame = pd.read_parquet(home / "claims.parquet")
    frame = frame[frame["report_date"] >= since - pd.Timedelta(days=HISTORY_DAYS)].reset_index(drop=True)
    window = np.flatnonzero(((frame["report_date"] >= since) & (frame["report_date"] < until)).to_numpy())
    frame.loc[window, "claimed_amount"] *= 3
    frame.loc[window, "channel"] = frame.loc[window, "channel"].replace({"phone": "app"})
    frame.loc[window[[5, 1_600, 4_000]], "claimed_amount"] = [-5.0, -7.5, -5.0]  # in three partitions
    frame.loc[window[[10, 6_000]], "vehicle_age_years"] = 250.0
    folder = tmp_path_factory.mktemp("dask_monitor")
    frame.to_parquet(folder / "claims.parquet")
    (folder / "parts").mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(frame)), FILES)):
        frame.iloc[part].to_parquet(folder / "parts" / f"{i}.parquet")
    return folder / "claims.parquet", folder / "parts", f"{since:%Y-%m-%dT%H:%M:%S}", f"{until:%Y-%m-%d}"


@pytest.fixture(scope="module")
def summaries(home, table, tmp_path_factory) -> tuple[dict, dict, Path]:
    one, parts, since, until = table
    out = tmp_path_factory.mktemp("runs")
    window = ("--since", since, "--until", until)
    code, stdout, stderr = run(home, "monitor", "--data", one, *window, "--out", out / "in_process")
    assert code == 3, stdout + stderr  # it alerts: the shift
    code, stdout, stderr = run(home, "monitor", "--data", parts, *window, "--out", out / "dask", "--dask-workers", 2)
    assert code == 3, stdout + stderr
    read = [json.loads((out / name / "summary.json").read_text()) for name in ("in_process", "dask")]
    return read[0], read[1], out


def test_dask_window_gives_the_in_process_summary(summaries):
    expected, got, _ = summaries
    assert got["window"]["claims"] == expected["window"]["claims"] > 5_000
    assert summary_differences(got, expected) == []


def test_through_a_scheduler_address_the_summary_is_the_same(home, table, summaries, scheduler, tmp_path):
    _, parts, since, until = table
    out = tmp_path / "via_scheduler"
    window = ("--since", since, "--until", until)
    code, stdout, stderr = run(home, "monitor", "--data", parts, *window, "--out", out, "--scheduler", scheduler)
    assert code == 3, stdout + stderr
    assert summary_differences(json.loads((out / "summary.json").read_text()), summaries[0]) == []


def test_a_claim_id_twice_is_refused_in_one_line_and_no_folder_is_left(home, table, scheduler, tmp_path):
    _, parts, _, _ = table
    (tmp_path / "twice").mkdir()
    for f in sorted(parts.iterdir()):
        frame = pd.read_parquet(f)
        pd.concat([frame, frame.tail(1)]).to_parquet(tmp_path / "twice" / f.name)
    out = tmp_path / "run"

    code, stdout, stderr = run(home, "monitor", "--data", tmp_path / "twice", "--out", out, "--scheduler", scheduler)

    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "claim_id is missing or not unique" in errors[0], stderr
    assert "Traceback" not in stdout + stderr and not out.exists()


def test_the_summary_has_something_to_compare(summaries):
    """The shift is seen: amounts and channel drifted, the impossible values named with examples,
    performance measured on labels, fairness and KPIs judged (else equality would prove little)."""
    expected, _, _ = summaries
    drifted = {r["feature"] for r in expected["drift"]["features"] if r["drifted"]}
    assert {"claimed_amount", "channel"} <= drifted
    failed = expected["quality"]["failed"]
    assert any(line.startswith("claimed_amount: must be between") and "3 of" in line for line in failed), failed
    assert any("-5.0, -7.5" in line for line in failed), failed  # examples, repeats dropped, in row order
    assert any(line.startswith("vehicle_age_years") for line in failed), failed
    assert expected["performance"]["fraud"]["labelled"] > 100
    assert expected["fairness"]["rows"] and expected["kpis"]["series"]
    assert expected["drift"]["multivariate"]["chunks"]


def test_the_window_rows_are_removed_and_the_report_written(summaries):
    _, _, out = summaries
    assert not (out / "dask" / WINDOW_FOLDER).exists()
    assert "<svg" in (out / "dask" / "report.html").read_text()
    assert list((out / "dask").glob("validation-monitor-quality-*.html"))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--dask-workers", "2"], "give --data"),
        (["--data", "x.parquet", "--dask-workers", "1", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
        (["--data", "x.parquet", "--dask-workers", "0"], "--dask-workers"),
    ],
)
def test_bad_dask_options_get_one_line_and_exit_2(home, args, says):
    code, out, err = run(home, "monitor", *args)
    assert code == 2
    assert says in err and "Traceback" not in err + out


def test_a_source_not_read_on_dask_is_refused_in_one_line(home, table, tmp_path):
    _, parts, _, _ = table
    code, out, err = run(home, "monitor", "--data", parts, "--source", "history", "--dask-workers", "1")
    assert code != 0 and "is not read on Dask" in err + out
    assert "Traceback" not in err + out

"""``claimscore score`` on Dask: a Parquet dataset scored partition by partition on a loopback cluster
gives, claim for claim and to the last bit, what scoring in one process gives (scores, routes, rules,
reasons); identifiers are hashed on the same path; bad options get one line and exit 2.

The champion is the session's (tests/conftest.py); the claims are 3,000 later ones split in report
order over three files, so claimants' and providers' earlier claims lie in other partitions.
``--dask-workers 2`` starts worker processes as a user's run does; the ``--scheduler`` tests use a
cluster of this module (two workers as threads: quicker to start, the same graph, the same
serialisation over TCP on 127.0.0.1)."""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import pytest

from features.data.synthetic import generate_claims
from pipelines.cli import main
from tests.pipelines.test_nothing_leaks import _matcher, _needles

pytestmark = pytest.mark.slow  # a champion, and Dask clusters

N_CLAIMS, FILES = 3_000, 3


@pytest.fixture(scope="module")
def home(served_home) -> Path:
    return served_home("dask_scoring")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """``claims.parquet`` (one file, row groups of 700 claims) and ``parts/`` (the same claims in three
    files, in report order)."""
    folder = tmp_path_factory.mktemp("dask_claims")
    claims = generate_claims(N_CLAIMS, seed=31, start="2025-03-01", years=1.0)
    claims.to_parquet(folder / "claims.parquet", row_group_size=700)
    (folder / "parts").mkdir()
    for i in range(FILES):
        claims.iloc[i * N_CLAIMS // FILES : (i + 1) * N_CLAIMS // FILES].to_parquet(folder / "parts" / f"{i}.parquet")
    return folder


def run(home: Path, *args) -> tuple[int, str, str]:
    """``claimscore ARGS`` in this process with the champion's state; exit code, stdout, stderr."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("CLAIMSCORE_HOME", str(home))
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def scored(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).sort_values("claim_id", ignore_index=True)


@pytest.fixture(scope="module")
def in_process(home, data) -> tuple[pd.DataFrame, str]:
    out = data / "in_process.parquet"
    code, stdout, stderr = run(home, "score", "--data", data / "claims.parquet", "--out", out)
    assert code == 0, stderr
    return scored(out), stdout


@pytest.fixture(scope="module")
def on_dask_workers(home, data) -> tuple[Path, str]:
    """The parts scored by ``--dask-workers 2`` (a local cluster of two worker processes)."""
    out = data / "on_dask.parquet"
    code, stdout, stderr = run(home, "score", "--data", data / "parts", "--out", out, "--dask-workers", 2)
    assert code == 0, stderr
    return out, stdout


def routes_of(summary: str) -> str:
    return summary.strip().splitlines()[-1].split("; routes: ")[1]


def test_scores_on_dask_workers_equal_in_process_scores(in_process, on_dask_workers, data):
    expected, summary = in_process
    out, dask_summary = on_dask_workers
    parts = sorted(p.name for p in out.iterdir())
    got = scored(out)

    assert out.is_dir() and len(parts) >= 2, parts
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)  # every score to the bit, every reason
    assert (expected["rules"] != "[]").any() and expected["fraud_reasons"].str.contains("claimant_").any()
    assert routes_of(dask_summary) == routes_of(summary) and f"{N_CLAIMS:,} claims" in dask_summary


def test_earlier_claims_in_other_files_count_as_history(data):
    """What makes the equality above a test of the shuffles: history crosses the files."""
    parts = [pd.read_parquet(p) for p in sorted((data / "parts").iterdir())]
    seen_before = set(parts[0]["claimant_id"]) | set(parts[1]["claimant_id"])
    assert parts[2]["claimant_id"].isin(seen_before).sum() > 50


def test_scores_through_a_scheduler_address_equal_in_process_scores(home, data, in_process, scheduler, monkeypatch):
    # partitions of 1,000 claims of one file, which cut across its row groups of 700
    monkeypatch.setattr("pipelines.distributed.PARTITION_ROWS", N_CLAIMS // FILES)
    out = data / "via_scheduler.parquet"

    code, stdout, stderr = run(home, "score", "--data", data / "claims.parquet", "--out", out, "--scheduler", scheduler)

    assert code == 0, stderr
    assert f"on the Dask cluster at {scheduler}" in stdout
    assert len(list(out.iterdir())) == FILES
    pd.testing.assert_frame_equal(scored(out), in_process[0], check_exact=True)


def test_claims_are_hashed_on_the_in_process_path_and_nothing_raw_is_written(home, data, on_dask_workers):
    from features.config import load_settings
    from features.data.sources import load_claims
    from pipelines.distributed import read_claims_dask

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLAIMSCORE_HOME", str(home))
        settings = load_settings()
        expected = load_claims(data / "claims.parquet", "synthetic", settings, purpose="score").frame
        from_parts = read_claims_dask(data / "parts", settings).frame.compute(scheduler="sync")
        mp.setattr("pipelines.distributed.PARTITION_ROWS", 1_000)
        mp.setattr("pipelines.distributed.READ_BATCH_ROWS", 256)
        one_file = read_claims_dask(data / "claims.parquet", settings).frame
        partitions, from_one_file = one_file.npartitions, one_file.compute(scheduler="sync")

    assert partitions == 3
    pd.testing.assert_frame_equal(from_parts.reset_index(drop=True), expected, check_exact=True)  # in file order
    pd.testing.assert_frame_equal(from_one_file.reset_index(drop=True), expected, check_exact=True)
    assert expected["phone"].dropna().str.startswith("h1:").all()
    raw = pd.read_parquet(data / "claims.parquet")
    raw_identifiers = _matcher(_needles(raw))  # as sent, and normalised
    assert raw_identifiers.search(f"x {raw['phone'].dropna().iloc[0]} x")  # the pattern finds what it should
    written = pd.read_parquet(on_dask_workers[0])
    assert not raw_identifiers.search("\n".join(" ".join(map(str, written[c])) for c in written.columns))


def test_a_claim_id_twice_is_refused_and_nothing_is_left_written(home, data, scheduler):
    claims = pd.read_parquet(data / "parts" / "0.parquet")
    (data / "twice").mkdir()
    pd.concat([claims, claims.tail(1)]).to_parquet(data / "twice" / "0.parquet")
    out = data / "twice.parquet"

    code, _, stderr = run(home, "score", "--data", data / "twice", "--out", out, "--scheduler", scheduler)

    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "claim_id is not unique" in errors[0], stderr
    assert "Traceback" not in stderr and not out.exists()


def test_a_missing_column_is_refused_or_allowed_on_dask_as_in_process(home, data, scheduler):
    claims = pd.read_parquet(data / "parts" / "0.parquet").drop(columns=["claimed_amount"])
    (data / "no_amount").mkdir()
    claims.to_parquet(data / "no_amount" / "0.parquet")
    dask_out, plain_out = data / "no_amount_dask.parquet", data / "no_amount.parquet"
    on_dask = ["score", "--data", data / "no_amount", "--out", dask_out, "--scheduler", scheduler]

    code, _, stderr = run(home, *on_dask)

    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "--allow-missing claimed_amount" in errors[0], stderr
    assert not dask_out.exists()

    allow = ["--allow-missing", "claimed_amount"]
    code, stdout, stderr = run(home, *on_dask, *allow)
    plain = run(home, "score", "--data", data / "no_amount" / "0.parquet", "--out", plain_out, *allow)

    assert code == 0 and plain[0] == 0, stderr + plain[2]
    assert stdout.splitlines()[0] == plain[1].splitlines()[0]  # "scored without claimed_amount (unknown: ...)"
    pd.testing.assert_frame_equal(scored(dask_out), scored(plain_out), check_exact=True)


def test_a_column_of_unreadable_values_is_refused_on_dask_as_in_process(home, data, scheduler):
    """Read, the column has values; mapped, none (amounts that are words): refused once scored, as
    one process refuses it, and nothing is left written."""
    claims = pd.read_parquet(data / "parts" / "0.parquet").assign(claimed_amount="unknown")
    (data / "words").mkdir()
    claims.to_parquet(data / "words" / "0.parquet")
    out = data / "words.parquet"

    plain = run(home, "score", "--data", data / "words" / "0.parquet", "--out", data / "words_plain.parquet")
    code, _, stderr = run(home, "score", "--data", data / "words", "--out", out, "--scheduler", scheduler)

    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == plain[0] == 2 and len(errors) == 1, stderr
    assert errors == [line for line in plain[2].splitlines() if line.startswith("error:")]
    assert "claimed_amount" in errors[0] and not out.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "case",
    [
        "no workers",
        "nothing at the address",
        "not an address",
        "both",
        "out is a file",
        "out holds other files",
        "out is csv",
        "not canonical",
        "not parquet",
        "no data",
    ],
)
def test_bad_dask_options_get_one_line_and_exit_2(case, data, tmp_path):
    """Checked before the models load or a cluster starts: no champion is needed to be refused."""
    claims, out = data / "claims.parquet", tmp_path / "out.parquet"
    args = ["--data", claims, "--out", out, "--dask-workers", 2]
    if case == "no workers":
        args[-1], expected = 0, "--dask-workers"
    elif case == "nothing at the address":
        args[-2:], expected = ["--scheduler", f"tcp://127.0.0.1:{_free_port()}"], "no Dask scheduler answers"
    elif case == "not an address":
        args[-2:], expected = ["--scheduler", "scheduler"], "not a Dask scheduler address"
    elif case == "both":
        args += ["--scheduler", "tcp://127.0.0.1:8786"]
        expected = "not both"
    elif case == "out is a file":
        out.write_text("keep me")
        expected = "is a file"
    elif case == "out holds other files":
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
        expected = "other files (notes.txt)"
    elif case == "out is csv":
        args[3], expected = tmp_path / "out.csv", "Parquet folder"
    elif case == "not canonical":
        args += ["--source", "vehicle_fraud"]
        expected = "canonical"
    elif case == "not parquet":
        args[1] = tmp_path / "claims.csv"
        args[1].write_text("claim_id\nC1\n")
        expected = "not a readable Parquet file"
    else:
        args[1], expected = tmp_path / "none.parquet", "no such file or folder"

    code, _, stderr = run(tmp_path / "state", "score", *args)

    errors = [line for line in stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert code == 2 and len(errors) == 1 and expected in errors[0], stderr
    if case in ("out is a file", "out holds other files"):  # left as they were
        assert "keep me" in (out.read_text() if out.is_file() else (out / "notes.txt").read_text())

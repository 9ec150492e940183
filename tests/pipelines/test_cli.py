"""The claimscore command: help everywhere, one readable line and a non-zero exit for user errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features import schema
from pipelines.cli import app


def _commands() -> list[str]:
    return sorted(cmd.name or cmd.callback.__name__ for cmd in app.registered_commands)


@pytest.mark.parametrize("command", _commands())
def test_every_subcommand_has_help(cli, command):
    result = cli(command, "--help")
    assert result.code == 0
    assert f"Usage: claimscore {command}" in result.out
    assert result.out.count("--") >= 2  # documents its options


def test_top_level_help_lists_every_subcommand(cli):
    result = cli("--help")
    assert result.code == 0
    for command in _commands():
        assert command in result.out


def test_help_answers_without_importing_the_heavy_stack():
    code = (
        "import sys; from pipelines.cli import main; main(['--help']); "
        "heavy = [m for m in ('pandas', 'lightgbm', 'great_expectations', 'mlflow', 'bentoml') if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_generate_writes_the_claims_it_says(cli, tmp_path):
    out = tmp_path / "claims.parquet"
    result = cli("generate", "--claims", 500, "--seed", 3, "--out", out)
    assert result.code == 0, result.err
    assert "wrote 500 claims" in result.out
    frame = pd.read_parquet(out)
    assert len(frame) == 500 and frame["claim_id"].is_unique


def test_generate_writes_csv_too(cli, tmp_path):
    out = tmp_path / "claims.csv"
    assert cli("generate", "--claims", 50, "--out", out).code == 0
    assert len(pd.read_csv(out)) == 50


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("generate", "--claims", 0, "--out", "x.parquet"), "--claims"),
        (("generate", "--claims", "many", "--out", "x.parquet"), "--claims"),
        (("generate", "--claims", 10, "--out", "x.txt"), ".parquet or .csv"),
        (("generate", "--claims", 10, "--out", "x.csv", "--start", "2021-13-01"), "--start"),
        (("generate",), "--out"),
        (("generat",), "No such command"),
        (("generate", "--bogus"), "--bogus"),
        (("validate", "--source", "nonsense", "--data", "x.csv"), "nonsense"),
    ],
)
def test_user_errors_get_one_readable_line(cli, args, fragment):
    result = cli(*args)
    assert result.code == 2
    assert len(result.err_lines) == 1, result.err
    assert result.err_lines[0].startswith("error: ")
    assert fragment in result.err_lines[0]
    assert "Traceback" not in result.err


def test_the_installed_command_exits_non_zero_with_one_line(tmp_path):
    exe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pipelines.cli import main; sys.exit(main())",
            "validate",
            "--data",
            str(tmp_path / "missing.parquet"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert exe.returncode == 2
    lines = [line for line in exe.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "missing.parquet" in lines[0], exe.stderr


def test_generated_claims_validate(cli, tmp_path):
    out = tmp_path / "claims.parquet"
    assert cli("generate", "--claims", 3000, "--seed", 9, "--out", out).code == 0
    result = cli("validate", "--data", out, "--source", "synthetic")
    assert result.code == 0, result.err
    assert "valid: 3,000 claims" in result.out
    report = result.out.rsplit("report: ", 1)[1].strip()
    assert report.endswith(".html") and "claims" in Path(report).read_text(encoding="utf-8")


@pytest.mark.realdata
@pytest.mark.parametrize("source, rows", [("vehicle_fraud", 11_336), ("aus_bodily_injury", 17_975)])
def test_each_builtin_source_maps_its_real_file_with_no_validation_failure(cli, shared_data, monkeypatch, source, rows):
    monkeypatch.setenv("CLAIMSCORE_SHARED_DATA", str(shared_data))
    result = cli("validate", "--source", source)
    assert result.code == 0, result.err
    assert f"valid: {rows:,} claims" in result.out


def test_invalid_claims_fail_with_one_line_per_check_and_a_report(cli, tmp_path):
    from features.data.synthetic import generate_claims

    frame = generate_claims(2000, seed=4)
    frame.loc[3, "claimed_amount"] = -50.0
    frame.loc[7, "claim_id"] = frame.loc[8, "claim_id"]
    frame.loc[11, "report_date"] = frame.loc[11, "incident_date"] - pd.Timedelta(days=3)
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    result = cli("validate", "--data", path)
    assert result.code == 1
    lines = result.err_lines
    assert any(line.strip().startswith("claimed_amount:") and "-50.0" in line for line in lines), lines
    assert any(line.strip().startswith("claim_id: must be unique") for line in lines), lines
    assert any(line.strip().startswith("report_date:") and "incident_date" in line for line in lines), lines
    assert lines[-1].startswith("error: 3 check(s) failed on 2,000 claims; report: ")
    assert lines[-1].split("report: ")[1].endswith(".html")
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    "make_file, fragment",
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty"),
        (lambda p: (p.write_bytes(b"\x00\x01garbage" * 50), p)[1], "bad.parquet"),
    ],
)
def test_bad_files_get_one_readable_line(cli, tmp_path, make_file, fragment):
    path = make_file(tmp_path / "bad.parquet")
    result = cli("validate", "--data", path)
    assert result.code == 2
    assert len(result.err_lines) == 1 and fragment in result.err_lines[0], result.err


def test_wrongly_encoded_csv_gets_one_readable_line(cli, tmp_path):
    path = tmp_path / "claims.csv"
    path.write_bytes(
        "claim_id,line_of_business,incident_date,report_date\nC1,motor,2024-01-01,2024-01-02\n"
        "C2,motor,2024-01-01,2024-01-02 caf\xe9\n".encode("latin-1")
    )
    result = cli("validate", "--data", path)
    assert result.code == 2
    assert len(result.err_lines) == 1 and "encod" in result.err_lines[0].lower(), result.err


@pytest.mark.slow  # starts a Dask cluster
def test_features_on_dask_match_the_pandas_table(cli, tmp_path):
    data, plain, on_dask = tmp_path / "c.parquet", tmp_path / "f.parquet", tmp_path / "fd.parquet"
    assert cli("generate", "--claims", 3000, "--seed", 2, "--out", data).code == 0
    assert cli("features", "--data", data, "--out", plain).code == 0
    result = cli("features", "--data", data, "--out", on_dask, "--dask-workers", 2)
    assert result.code == 0, result.err
    a = pd.read_parquet(on_dask).sort_index()
    b = pd.read_parquet(plain).set_index("claim_id").sort_index()
    b = b.drop(columns=["report_date", *schema.LABELS.values()])  # beside the features in the plain table
    pd.testing.assert_frame_equal(a, b, check_dtype=False, check_names=False, rtol=1e-9)


def test_dask_needs_canonical_parquet(cli, tmp_path):
    result = cli("features", "--source", "vehicle_fraud", "--out", tmp_path / "x.parquet", "--dask-workers", 2)
    assert result.code == 2 and "--dask-workers" in result.err_lines[0]


@pytest.mark.slow
def test_mlproject_runs_offline_with_the_local_environment(tmp_path):
    import os
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    data = tmp_path / "c.parquet"
    from features.data.synthetic import generate_claims

    generate_claims(2_000, seed=5).to_parquet(data)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CLAIMSCORE_HOME": str(tmp_path / "state"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}",
    }
    done = subprocess.run(
        [
            str(bin_dir / "mlflow"),
            "run",
            str(repo),
            "--env-manager",
            "local",
            "-e",
            "validate",
            "-P",
            f"data={data}",
            "--experiment-name",
            "claimscore",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "valid: 2,000 claims" in done.stdout


def test_generate_keeps_the_latest_claims_of_the_same_population_aside(cli, tmp_path):
    out, new = tmp_path / "claims.parquet", tmp_path / "new.parquet"
    result = cli("generate", "--claims", "3000", "--seed", "3", "--out", out, "--new-claims", "300", "--new-out", new)
    assert result.code == 0, result.err
    history, later = pd.read_parquet(out), pd.read_parquet(new)
    assert len(history) == 3000 and len(later) == 300
    assert later["report_date"].min() >= history["report_date"].max()
    assert not set(later["claim_id"]) & set(history["claim_id"])
    # the same claimants go on claiming: their new claims carry the phone they gave before
    same = later.merge(history[["claimant_id", "phone"]].drop_duplicates("claimant_id"), on="claimant_id")
    assert (
        len(same) > 30
        and (
            same["phone_x"].str.replace(r"\D", "", regex=True).str[-8:]
            == same["phone_y"].str.replace(r"\D", "", regex=True).str[-8:]
        ).mean()
        > 0.9
    )
    refused = cli("generate", "--claims", "100", "--out", out, "--new-claims", "10")
    assert refused.code == 2 and "--new-claims and --new-out go together" in refused.err

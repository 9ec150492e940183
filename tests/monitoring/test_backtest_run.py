"""``claimscore backtest`` end to end on the session's champion (tests/conftest.py): the champion's
test period replayed under its own policy and others, swept, optimised, and the optimised policy
file replayed again."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_mode")]


@pytest.fixture(scope="module")
def home(served_home) -> Path:
    return served_home("backtest")


@pytest.fixture
def state(home, monkeypatch) -> Path:
    monkeypatch.setenv("CLAIMSCORE_HOME", str(home))
    return home


def _run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["backtest", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _test_period_start() -> str:
    from features.config import load_settings
    from serving.model.scorer import Scorer

    period = Scorer.from_registry(load_settings()).bundles["fraud"].reference["extra"]["period"]
    return period.split(" to ")[0]


def test_policies_side_by_side_bracket_the_truth_and_the_optimised_policy_replays(state, tmp_path, capsys):
    since = _test_period_start()
    data = state / "claims.parquet"
    code, out, err = _run(
        capsys, "--data", data, "--since", since, "--set", "strict:siu_threshold=0.5",
        "--optimise", "--out", tmp_path / "bt",
    )  # fmt: skip
    assert code == 0, out + err
    assert "total claim cost" in out and "strict" in out and "optimised:" in out
    result = json.loads((tmp_path / "bt" / "backtest.json").read_text())
    champion, strict = result["policies"]
    reported = pd.read_parquet(data)["report_date"]
    assert champion["claims"] == int((reported >= since).sum())
    for name in ("fraud_caught", "leakage"):  # synthetic data: the truth is known
        assert champion[f"{name}_low"] <= champion[f"{name}_true"] <= champion[f"{name}_high"], name
    assert strict["siu_referrals"] <= champion["siu_referrals"]
    assert strict["cost_change"] == pytest.approx(strict["cost_total"] - champion["cost_total"])
    best = result["optimised"][0]
    assert best["feasible"] and best["siu_per_week"] <= result["constraints"]["capacity_per_week"] + 1e-9
    assert best["cost_total"] == min(r["cost_total"] for r in result["sweep"] if r["feasible"])
    assert "<svg" in (tmp_path / "bt" / "report.html").read_text()

    code, out, err = _run(capsys, "--data", data, "--since", since, "--policy", tmp_path / "bt" / "policy.json",
                          "--out", tmp_path / "again")  # fmt: skip
    assert code == 0, out + err
    replayed = json.loads((tmp_path / "again" / "backtest.json").read_text())["policies"][1]
    assert replayed["cost_total"] == pytest.approx(best["cost_total"])
    assert replayed["siu_referrals"] == best["siu_referrals"]

    # the optimised policy becomes the champion's: same models, new versions, recorded
    from features.config import load_settings
    from serving.model.scorer import Scorer

    before = Scorer.from_registry(load_settings())
    capsys.readouterr()
    code = main(["promote", "--policy", str(tmp_path / "bt" / "policy.json"), "--by", "tests", "--reason", "optimised"])
    assert code == 0, capsys.readouterr()
    after = Scorer.from_registry(load_settings())
    assert after.versions != before.versions
    assert after.policy.siu_threshold == pytest.approx(best["siu_threshold"])
    assert after.policy.fast_track_amount_limit == pytest.approx(best["fast_track_amount_limit"])
    assert after.bundles["fraud"].booster.model_to_string() == before.bundles["fraud"].booster.model_to_string()
    assert after.bundles["fraud"].reference == before.bundles["fraud"].reference
    code, out, err = _run(capsys, "--data", data, "--since", since, "--out", tmp_path / "now")
    now = json.loads((tmp_path / "now" / "backtest.json").read_text())["policies"][0]
    assert now["cost_total"] == pytest.approx(best["cost_total"])


def test_bad_options_are_one_readable_line(state, tmp_path, capsys):
    data = state / "claims.parquet"
    for args, words in (
        (("--set", "siu_treshold=0.5"), "siu_treshold=0.5"),
        (("--set", "siu_threshold=high"), "not a number"),
        (("--policy", tmp_path / "nope.json"), "does not exist"),
        (("--since", "2999-01-01"), "no claims to replay"),
    ):
        code, _, err = _run(capsys, "--data", data, *args)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err

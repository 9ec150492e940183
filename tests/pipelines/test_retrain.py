"""``claimscore retrain``: the scheduled loop refuses a worse challenger and a poisoned one, saying
why, and promotes a better one; each run leaves its summary, backtest and monitoring report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_mode")]


@pytest.fixture(scope="module")
def home(served_home):
    home = served_home("retrain")
    (home / "weak.yaml").write_text(
        "refit: false\nlightgbm: {max_rounds: 4, num_leaves: 2, early_stopping_rounds: 2}\n"
    )
    # a short recipe: what is asserted is the gates' verdicts, not the models' last digits
    quick = "refit: false\nlightgbm: {max_rounds: 120, early_stopping_rounds: 20}\n"
    (home / "quick.yaml").write_text(quick)
    # the weak champion routes nearly at random, so any model that tells claims apart treats groups
    # less evenly than it does: against it, the fairness gate's margin is widened
    (home / "against_weak.yaml").write_text(quick + "fairness: {promotion_margin: 0.5}\n")
    return home


@pytest.fixture
def run(cli, home, monkeypatch):
    monkeypatch.setenv("CLAIMSCORE_HOME", str(home))
    return cli


def _versions(home) -> dict[str, str]:
    from features.config import Settings
    from training import registry

    registry.configure(Settings(home=home).resolved())
    return {t: str(registry.version_for(t, registry.CHAMPION).version) for t in registry.MODEL_NAMES}


def test_a_worse_challenger_is_refused_saying_why(run, home):
    before = _versions(home)
    out = home / "runs" / "worse"
    done = run("retrain", "--training-config", home / "weak.yaml", "--out", out)
    assert done.code == 4, done.out + done.err
    assert "refused:" in done.out and "refuse (needs" in done.out  # the metric it missed, by how much
    summary = json.loads((out / "retrain.json").read_text())
    assert summary["promoted"] is False and any("refuse (needs" in r for r in summary["reasons"])
    policies = {row["policy"] for row in summary["backtest"]}
    # backtested against the champion: each model under its policy, the challenger under the champion's
    assert any(p.startswith("champion v") for p in policies) and "challenger model, champion policy" in policies
    assert (out / "backtest" / "backtest.json").is_file() and (out / "monitoring" / "report.html").is_file()
    assert _versions(home) == before


def test_a_better_challenger_is_promoted(run, home):
    from features.config import Settings
    from training import registry

    # the champion becomes the weak model trained above (forced: it is worse), so that a default
    # retrain is better than it
    registry.configure(Settings(home=home).resolved())
    registry.promote("average_precision", -1.0, "tests", "a weak champion to beat", override="a test's set-up")
    weak = _versions(home)
    out = home / "runs" / "better"
    # the weak champion routes nothing to fast track, so the better model's routes move beyond the
    # poisoning gate's 10 points: a real change, said so with --override (and recorded)
    done = run(
        "retrain",
        "--training-config",
        home / "against_weak.yaml",
        "--out",
        out,
        "--override",
        "replaces a weak champion",
    )
    assert done.code == 0, done.out + done.err
    assert "promoted:" in done.out and "fast_track share" in done.out
    summary = json.loads((out / "retrain.json").read_text())
    assert summary["promoted"] is True and summary["reasons"] == []
    now = _versions(home)
    assert all(now[t] != weak[t] for t in now) and set(summary["challenger"].values()) == set(now.values())
    assert registry.version_for("fraud", registry.CHAMPION).tags["override"].startswith("replaces a weak champion")


def test_a_poisoned_challenger_is_refused_naming_what_moved(run, home):
    before = _versions(home)
    frame = pd.read_parquet(home / "claims.parquet")  # the claims of the history, as the source sent them
    late = frame["report_date"] >= frame["report_date"].max() - pd.Timedelta(days=90)
    flipped = late & (np.random.default_rng(4).random(len(frame)) < 0.25)
    frame.loc[flipped, ["investigated", "fraud_confirmed"]] = True
    frame.to_parquet(home / "poisoned.parquet")
    out = home / "runs" / "poisoned"
    done = run(
        "retrain",
        "--data",
        home / "poisoned.parquet",
        "--source",
        "synthetic",
        "--training-config",
        home / "quick.yaml",
        "--out",
        out,
    )
    assert done.code == 4, done.out + done.err
    assert "data moved against the champion: fraud label rate of the last 3 months" in done.out
    # refused whatever its metric: "refuse (data moved)" where it would otherwise have been promoted
    assert "labels flipped?" in done.out and "refused:" in done.out
    assert json.loads((out / "retrain.json").read_text())["poisoning"]
    assert _versions(home) == before

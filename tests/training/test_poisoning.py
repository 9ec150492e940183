"""Poisoned training data never becomes champion: relabelled history, labels flipped lately,
duplicated claims, shifted features and moved behaviour are named, and promotion refuses them
unless overridden (recorded)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.reference import Reference, build_reference
from training.poisoning import PoisoningConfig, data_profile, duplicate_share, findings, reference_shift

CFG = PoisoningConfig()


def _claims(months: int = 24, per_month: int = 500, rate: float = 0.05, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = months * per_month
    report = pd.Timestamp("2023-01-01") + pd.to_timedelta(np.repeat(np.arange(months) * 31, per_month), unit="D")
    return pd.DataFrame(
        {
            "claim_id": [f"C{i}" for i in range(n)],
            "report_date": report + pd.to_timedelta(rng.integers(0, 20, n), unit="D"),
            "claimed_amount": rng.gamma(2, 1500, n).round(2),
            "channel": rng.choice(["web", "phone", "app"], n),
            "fraud_confirmed": rng.random(n) < rate,
            "simple_settlement": rng.random(n) < 0.5,
        }
    )


def test_a_clean_table_has_no_findings_against_itself():
    frame = _claims()
    profile = data_profile(frame)
    reference = build_reference(frame[["claimed_amount", "channel"]], ["channel"], {}, np.array([]), {})
    shares = {"fast_track": (0.4, 0.41), "siu_referral": (0.03, 0.03)}
    assert findings(profile, profile, reference, reference, shares, CFG) == []


def test_labels_flipped_in_the_latest_months_are_named():
    frame = _claims()
    late = pd.to_datetime(frame["report_date"]) >= "2024-10-01"
    rng = np.random.default_rng(1)
    frame.loc[late, "fraud_confirmed"] = rng.random(int(late.sum())) < 0.3  # 5% -> 30%
    [line] = findings(data_profile(frame), None, Reference(), None, None, CFG)
    assert line.startswith("fraud label rate of the last 3 months") and "labels flipped?" in line


def test_relabelled_history_is_named_but_labels_maturing_since_are_not():
    old = _claims()
    new = old.copy()
    month = pd.to_datetime(new["report_date"]).dt.strftime("%Y-%m")
    new.loc[month == "2023-06", "fraud_confirmed"] = True  # a mature month rewritten
    new.loc[month == "2024-12", "fraud_confirmed"] = (
        np.random.default_rng(2).random(int((month == "2024-12").sum())) < 0.2
    )
    lines = findings(data_profile(new), data_profile(old), Reference(), None, None, CFG)
    assert any(line.startswith("fraud label rate of 2023-06:") for line in lines)
    assert not any("of 2024-12:" in line for line in lines)  # still maturing when the champion trained


def test_duplicated_claims_are_counted_and_named():
    frame = _claims()
    copies = frame.sample(600, random_state=3).assign(claim_id=lambda f: "D" + f["claim_id"])
    poisoned = pd.concat([frame, copies], ignore_index=True)
    assert duplicate_share(frame) == 0.0
    assert duplicate_share(poisoned) == pytest.approx(600 / len(poisoned))
    lines = findings(data_profile(poisoned), None, Reference(), None, None, CFG)
    assert any("repeat another claim's notice fields" in line for line in lines)


def test_a_shifted_feature_and_moved_routes_are_named():
    frame = _claims()
    old = build_reference(frame[["claimed_amount", "channel"]], ["channel"], {}, np.array([]), {})
    shifted = frame.assign(claimed_amount=frame["claimed_amount"] * 2)
    new = build_reference(shifted[["claimed_amount", "channel"]], ["channel"], {}, np.array([]), {})
    distances = {name: d for name, _, d in reference_shift(new, old)}
    assert distances["claimed_amount"] > 0.5 and distances["channel"] == pytest.approx(0.0, abs=1e-9)
    lines = findings(data_profile(shifted), None, new, old, {"siu_referral": (0.2, 0.03)}, CFG)
    assert any(line.startswith("claimed_amount shifted") for line in lines)
    assert any(line.startswith("siu_referral share of the test claims 20.0%") for line in lines)


@pytest.mark.slow
@pytest.mark.usefixtures("demo_mode")
def test_a_challenger_trained_on_flipped_labels_is_refused_until_overridden(served_home):
    from features.config import Settings
    from training import registry
    from training.config import TrainingConfig
    from training.pipeline import train

    home = served_home("poisoning")
    settings = Settings(home=home).resolved()
    frame = pd.read_parquet(home / "claims.parquet")
    late = frame["report_date"] >= frame["report_date"].max() - pd.Timedelta(days=90)
    rng = np.random.default_rng(4)
    flipped = late & (rng.random(len(frame)) < 0.25)
    frame.loc[flipped, ["investigated", "fraud_confirmed"]] = True
    frame.to_parquet(home / "poisoned.parquet")
    result = train(str(home / "poisoned.parquet"), "synthetic", settings, TrainingConfig(refit=False))
    assert any(line.startswith("fraud label rate of the last 3 months") for line in result.poisoning)

    with pytest.raises(registry.PromotionRefused) as refused:
        registry.promote("average_precision", -1.0, "tests", "poisoned")
    message = str(refused.value)
    assert "refuse (data moved)" in message and "data or behaviour moved: " in message
    assert "fraud label rate of the last 3 months" in message and "(labels flipped?)" in message
    assert "--override" in message

    registry.promote("average_precision", -1.0, "tests", "a real change", override="new fraud definition")
    champion = registry.version_for("fraud", registry.CHAMPION)
    assert str(champion.version) == str(result.models["fraud"].version)
    assert champion.tags["override"].startswith("new fraud definition (over: fraud label rate")

"""The promotion gate's fairness check: a challenger whose routes treat a group worse than the
champion's do on the same test claims is refused, naming the group and both ratios."""

from __future__ import annotations

import pandas as pd
import pytest

from features.config import Settings
from training import registry
from training.config import RoutingConfig, RoutingRule, TrainingConfig
from training.pipeline import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(served_home):
    return served_home("fairness-gate")


def test_a_challenger_that_refers_the_young_far_more_is_refused_naming_the_group(home, monkeypatch):
    monkeypatch.setenv("CLAIMSCORE_DEMO", "1")
    settings = Settings(home=home).resolved()
    young = RoutingRule(name="young_claimant", when="claimant_age < 30", route="siu_referral")
    cfg = TrainingConfig(refit=False, routing=RoutingConfig(rules=(*RoutingConfig().rules, young)))
    result = train(str(home / "claims.parquet"), "synthetic", settings, cfg)

    reference = result.bundles["fraud"].reference
    assert reference["extra"]["period"] == result.periods["test"]
    assert set(reference["scores"]) == {"fraud", "fast_track"} and "claimed_amount" in reference["numeric"]
    assert reference["metrics"]["fraud"]["roc_auc"] == pytest.approx(result.metrics["fraud.test.roc_auc"])

    with pytest.raises(registry.PromotionRefused) as refused:
        registry.promote("average_precision", 0.0, "tests", "fairness gate", fairness_margin=0.05)
    message = str(refused.value)
    assert "fairness: age_band=" in message and "referral_rate ratio" in message and "against the champion's" in message
    assert registry.version_for("fraud", registry.CHAMPION).version != result.models["fraud"].version


def test_a_challenger_as_fair_as_the_champion_draws_no_fairness_objection(home, monkeypatch):
    monkeypatch.setenv("CLAIMSCORE_DEMO", "1")
    settings = Settings(home=home).resolved()
    train(str(home / "claims.parquet"), "synthetic", settings, TrainingConfig(refit=False, seed=1))
    try:
        rows = registry.promote("average_precision", 0.0, "tests", "same routes", fairness_margin=0.05)
        assert all("fairness" not in (r["note"] or "") for r in rows)
    except registry.PromotionRefused as refused:  # refused on its metric, if at all
        assert "fairness:" not in str(refused)
        assert "refuse (needs" in str(refused)
    assert pd.notna(registry.version_for("fraud", registry.CHALLENGER))

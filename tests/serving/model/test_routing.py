"""Routing rules fail loudly: a rule naming a feature that does not exist is refused by name when the
policy is built, when it is loaded and when it is applied; never quietly switched off."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import ConfigError
from serving.model.routing import PolicyError, RoutingPolicy, Rule
from training.config import RoutingConfig, RoutingRule
from training.routing import choose_policy, usable_rules

EARLY = Rule("early_claim", "days_since_policy_start < 30 and claimed_amount > 3000", "siu_referral")


def policy(*rules: Rule, inputs=("days_since_policy_start", "claimed_amount", "incident_severity")) -> RoutingPolicy:
    return RoutingPolicy(None, None, None, 5_000, 50_000, ("high",), tuple(rules), inputs=inputs)


def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "days_since_policy_start": [5.0, 200.0, np.nan],
            "claimed_amount": [4_000.0, 4_000.0, 9e4],
            "incident_severity": ["low", "low", "high"],
        }
    )


def test_a_rule_fires_on_a_table_and_on_one_claim_alike():
    p = policy(EARLY)
    routes, fired = p.route_table(table(), None, None)
    assert list(routes) == ["siu_referral", "standard", "specialist"]
    assert fired == [["early_claim"], [], []]
    for i, row in table().iterrows():
        assert p.route_one(row.to_dict(), None, None) == (routes[i], fired[i])


def test_a_policy_whose_rule_names_a_missing_feature_is_refused_when_built_and_loaded():
    typo = Rule("early_claim", "days_since_policy_strat < 30", "siu_referral")
    with pytest.raises(PolicyError, match="early_claim.*days_since_policy_strat"):
        policy(typo)
    good = policy(EARLY).to_dict()
    good["rules"][0]["when"] = "days_since_policy_strat < 30"
    with pytest.raises(PolicyError, match="days_since_policy_strat"):
        RoutingPolicy.from_dict(good)


def test_applying_a_rule_to_claims_lacking_its_feature_raises_instead_of_returning_false():
    p = policy(EARLY, inputs=None)  # an unchecked policy: the check still happens where it is applied
    lacking = table().drop(columns=["days_since_policy_start"])
    with pytest.raises(PolicyError, match="days_since_policy_start"):
        p.route_table(lacking, None, None)
    with pytest.raises(PolicyError, match="days_since_policy_start"):
        p.route_one({"claimed_amount": 4_000.0, "incident_severity": "low"}, None, None)


@pytest.mark.parametrize(
    "when, route, problem",
    [
        ("claimed_amount >", "siu_referral", "cannot read"),
        ("claimed_amount > 1", "fast_track", "unknown route"),
    ],
)
def test_an_unreadable_rule_or_unknown_route_is_named(when, route, problem):
    with pytest.raises(PolicyError, match=problem):
        Rule("r1", when, route)


def test_training_refuses_a_rule_naming_no_feature_and_suggests_the_closest():
    cfg = RoutingConfig(rules=(RoutingRule(name="early", when="days_since_polcy_start < 30", route="siu_referral"),))
    with pytest.raises(ConfigError, match="early.*days_since_polcy_start.*did you mean days_since_policy_start"):
        usable_rules(cfg, table().columns)


def test_training_records_a_rule_the_source_cannot_evaluate_instead_of_dropping_it_silently():
    cfg = RoutingConfig()  # the default rule needs days_since_policy_start, which this source lacks
    lacking = table().drop(columns=["days_since_policy_start"])
    chosen = choose_policy(cfg, lacking, np.array([0.1, 0.2, 0.3]), None, np.array([0.0, 0.0, 1.0]))
    assert chosen.rules == ()
    assert "days_since_policy_start" in chosen.skipped_rules["early_claim_high_amount"]
    assert RoutingPolicy.from_dict(chosen.to_dict()).skipped_rules == chosen.skipped_rules


def test_the_policy_reads_its_rules_features_and_the_routing_fields_it_has():
    assert set(policy(EARLY).reads) == {"days_since_policy_start", "claimed_amount", "incident_severity"}
    assert set(policy(inputs=("claimed_amount",)).reads) == {"claimed_amount"}


def test_claimscore_train_names_a_misspelt_rule_in_one_line_before_fitting(cli, tmp_path, synthetic_claims):
    data = tmp_path / "claims.parquet"
    synthetic_claims.to_parquet(data)
    config = tmp_path / "training.yaml"
    config.write_text("routing:\n  rules:\n    - {name: early, when: 'claimed_amont > 3000', route: siu_referral}\n")
    result = cli("train", "--data", data, "--training-config", config)
    assert result.code == 2
    assert result.err_lines == [
        "error: training config: routing rule 'early' names unknown feature(s) claimed_amont "
        "(did you mean claimed_amount or claimant_amount_365d?)"
    ]

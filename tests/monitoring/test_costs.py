"""The cost model file: defaults overridden key by key, lines starting from ``default``, typos refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from features.errors import ConfigError
from monitoring.costs import DEFAULT_ROUTES, CostModel, LineCosts, RouteCost, load_cost_model


def _write(tmp_path, text: str):
    path = tmp_path / "costs.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_gives_the_defaults():
    model = load_cost_model(None)
    assert model == CostModel()
    assert model.default.routes["fast_track"] == RouteCost(handling=60, days=2)
    assert model.detection_rate == 0.8


def test_line_override_changes_only_what_it_names(tmp_path):
    path = _write(
        tmp_path,
        """
default:
  investigation: 1000
lines:
  home:
    fraud_saved_share: 0.5
    routes:
      siu_referral: {days: 60}
""",
    )
    model = load_cost_model(path)
    home = model.for_line("home")
    assert home.fraud_saved_share == 0.5
    # the route named is merged key by key: its handling stays the default's 250
    assert home.routes["siu_referral"] == RouteCost(handling=250, days=60)
    # the routes not named stay as they were
    for route in ("fast_track", "standard", "specialist"):
        assert home.routes[route] == DEFAULT_ROUTES[route]
    # a line starts from the file's default, not the built-in one (1,200)
    assert home.investigation == 1000
    assert home.slipped_fraud_cost == 0
    # the default itself is untouched by the line's override
    assert model.default.fraud_saved_share == 0.85
    assert model.default.routes["siu_referral"] == RouteCost(handling=250, days=45)
    assert model.default.investigation == 1000


def test_default_route_override_is_merged_route_by_route(tmp_path):
    path = _write(tmp_path, "default:\n  routes:\n    fast_track: {handling: 40}\n")
    model = load_cost_model(path)
    assert model.default.routes["fast_track"] == RouteCost(handling=40, days=2)
    assert model.default.routes["standard"] == DEFAULT_ROUTES["standard"]


def test_for_line_falls_back_to_default(tmp_path):
    path = _write(tmp_path, "default:\n  investigation: 900\nlines:\n  motor:\n    investigation: 700\n")
    model = load_cost_model(path)
    assert model.for_line("motor").investigation == 700
    assert model.for_line("travel") is model.default
    assert model.for_line("travel").investigation == 900


def test_top_level_detection_rate_is_read(tmp_path):
    model = load_cost_model(_write(tmp_path, "detection_rate: 0.6\n"))
    assert model.detection_rate == 0.6
    assert model.default == LineCosts()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("detecton_rate: 0.6\n", "detecton_rate"),
        ("default:\n  investigaton: 5\n", "investigaton"),
        ("lines:\n  motor:\n    fraud_saved: 0.5\n", "fraud_saved"),
        ("lines:\n  motor:\n    routes:\n      standard: {dayz: 3}\n", "dayz"),
        ("default:\n  routes:\n    fasttrack: {handling: 1, days: 1}\n", "fasttrack"),
    ],
)
def test_unknown_keys_are_refused_by_name(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key):
        load_cost_model(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("detection_rate: 0\n", "detection_rate"),
        ("default:\n  fraud_saved_share: 1.5\n", "fraud_saved_share"),
        ("lines:\n  home:\n    routes:\n      standard: {handling: -1}\n", "handling"),
    ],
)
def test_out_of_range_values_are_refused_by_name(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key):
        load_cost_model(_write(tmp_path, text))


def test_routes_missing_a_route_are_refused():
    with pytest.raises(ValidationError, match="missing standard, specialist, siu_referral"):
        LineCosts(routes={"fast_track": RouteCost(handling=60, days=2)})
    with pytest.raises(ValidationError, match="missing siu_referral"):
        CostModel.model_validate(
            {"default": {"routes": {r: {"handling": 1, "days": 1} for r in ("fast_track", "standard", "specialist")}}}
        )


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_cost_model(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_cost_model(_write(tmp_path, "default: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_cost_model(_write(tmp_path, "- 1\n- 2\n"))


def test_the_calendar_turns_working_days_into_the_days_a_claimant_waits():
    import numpy as np
    import pandas as pd

    from monitoring import backtest as bt
    from monitoring.costs import CostModel
    from serving.model.routing import RoutingPolicy

    # two claims, both fast-tracked (2 working days): reported Friday 2026-01-02 -> paid Tuesday 01-06
    # (4 days); reported Monday 01-05 -> paid Wednesday 01-07 (2 days); mean 3. With Monday 01-05 a
    # holiday: Friday -> Wednesday 01-07 (5 days), Monday (a holiday) -> from Tuesday: Thursday (3 days)
    claims = pd.DataFrame(
        {
            "claim_id": ["A", "B"],
            "report_date": pd.to_datetime(["2026-01-02 10:00", "2026-01-05 09:00"]),
            "line_of_business": ["motor", "motor"],
            "claimed_amount": [100.0, 100.0],
            "settled_amount": [np.nan, np.nan],
            "investigated": [False, False],
            "fraud_confirmed": [np.nan, np.nan],
        }
    )
    features = pd.DataFrame({"claimed_amount": [100.0, 100.0], "incident_severity": ["minor", "minor"]})
    policy = RoutingPolicy(0.9, 0.5, 0.5, 5_000, 50_000, ("high",))
    scores = {"champion": {"fraud": np.array([0.1, 0.1]), "fast_track": np.array([0.9, 0.9])}}
    for costs, expected in ((CostModel(), 3.0), (CostModel(holidays=("2026-01-05",)), 4.0)):
        book = bt.make_book(claims, features, scores, [policy], costs)
        row = bt.evaluate(book, bt.Scenario("p", policy, "champion"), costs)
        assert row["share_fast_track"] == 1.0 and row["calendar_days_mean"] == expected

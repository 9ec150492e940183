"""Fairness of routing by group: rates, ratios against the most favoured group, bootstrap intervals,
who is judged, and the promotion gate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monitoring.config import FairnessConfig
from monitoring.fairness import FairnessResult, fairness, group_columns, promotion_check

CFG = FairnessConfig()


def _routes(referred: list[int], claims: list[int]) -> np.ndarray:
    """Per group, ``referred`` of its ``claims`` claims referred to the SIU, the rest standard."""
    return np.concatenate(
        [np.where(np.arange(n) < r, "siu_referral", "standard").astype(object) for r, n in zip(referred, claims)]
    )


def _groups(attribute: str, labels: list[str], claims: list[int]) -> dict[str, pd.Series]:
    return {attribute: pd.Series(np.repeat(labels, claims))}


def _row(result: FairnessResult, group: str, metric: str) -> pd.Series:
    rows = result.rows
    return rows[(rows["group"] == group) & (rows["metric"] == metric)].iloc[0]


def test_a_group_referred_at_twice_the_rate_alerts_with_ratio_one_half():
    claims = [10_000, 10_000]
    result = fairness(
        _groups("claimant_gender", ["female", "male"], claims),
        _routes([500, 1_000], claims),
        np.full(20_000, np.nan),
        CFG,
    )
    assert [a.subject for a in result.alerts] == ["claimant_gender=male: referral_rate"]
    alert = result.alerts[0]
    assert alert.value == pytest.approx(0.5) and alert.threshold == 0.8
    assert alert.message.startswith(
        "fairness: claimant_gender=male referral_rate 0.100 is 0.50 of the most favoured group's (female, 0.050); "
        "threshold 0.8 (interval 0."
    )
    assert alert.message.endswith(", 10,000 claims)")
    male = _row(result, "male", "referral_rate")
    assert male["favoured_group"] == "female" and male["judged"]
    assert male["ratio_low"] < 0.5 < male["ratio_high"] < 0.8
    assert _row(result, "female", "referral_rate")["ratio"] == 1.0


def test_equal_rates_do_not_alert():
    claims = [5_000, 8_000, 3_000]
    result = fairness(
        _groups("region", ["north", "south", "east"], claims),
        _routes([250, 400, 150], claims),
        np.full(16_000, np.nan),
        CFG,
    )
    assert result.alerts == []
    referral = result.rows[result.rows["metric"] == "referral_rate"]
    assert referral["judged"].all() and list(referral["ratio"]) == pytest.approx([1.0, 1.0, 1.0])


def test_false_positive_and_hit_rates_by_hand():
    groups = {"region": pd.Series(["a"] * 4 + ["b"] * 4)}
    routes = np.array(["siu_referral"] * 2 + ["standard"] * 2 + ["siu_referral"] * 3 + ["fast_track"], dtype=object)
    y = np.array([1, 0, 0, np.nan, 0, 0, 1, 0])
    cfg = FairnessConfig(min_group_claims=1, min_group_events=1)
    result = fairness(groups, routes, y, cfg)
    # a: referred 2 of 4; of its 2 claims known not fraud, 1 referred; of 2 referred, 1 fraud
    # b: referred 3 of 4; of its 3 claims known not fraud, 2 referred; of 3 referred, 1 fraud
    assert _row(result, "b", "referral_rate")[["rate", "ratio"]].tolist() == pytest.approx([3 / 4, (2 / 4) / (3 / 4)])
    assert _row(result, "b", "false_positive_rate")[["claims", "rate", "ratio"]].tolist() == pytest.approx(
        [3, 2 / 3, (1 / 2) / (2 / 3)]
    )
    assert _row(result, "b", "hit_rate")[["claims", "rate", "ratio"]].tolist() == pytest.approx(
        [3, 1 / 3, (1 / 3) / (1 / 2)]
    )
    # a higher fast-track rate is favourable: a (none of 4) against b (1 of 4)
    assert _row(result, "a", "fast_track_rate")[["rate", "ratio", "favoured_group"]].tolist() == [0.0, 0.0, "b"]


def test_intervals_cover_the_true_rate_and_narrow_with_more_claims():
    rng = np.random.default_rng(7)
    sizes = [2_000] * 50 + [200_000]
    labels = [f"g{i:02d}" for i in range(len(sizes))]
    routes = np.where(rng.random(sum(sizes)) < 0.1, "siu_referral", "standard").astype(object)
    result = fairness(_groups("region", labels, sizes), routes, np.full(sum(sizes), np.nan), CFG)
    referral = result.rows[result.rows["metric"] == "referral_rate"].set_index("group")
    covered = (referral["rate_low"] <= 0.1) & (referral["rate_high"] >= 0.1)
    assert 0.8 <= covered[labels[:50]].mean() <= 0.98  # a 90% interval
    small = (referral["rate_high"] - referral["rate_low"])[labels[:50]].mean()
    large = referral.loc["g50", "rate_high"] - referral.loc["g50", "rate_low"]
    assert large < small / 5  # 100 times the claims: about a tenth of the width


def test_small_groups_are_shown_not_judged():
    claims = [10_000, 10_000, 50]
    result = fairness(
        _groups("claimant_gender", ["female", "male", "other"], claims),
        _routes([500, 500, 40], claims),  # "other": 80% referred, but 50 claims
        np.full(sum(claims), np.nan),
        CFG,
    )
    other = _row(result, "other", "referral_rate")
    assert other["rate"] == pytest.approx(0.8) and not other["judged"] and np.isnan(other["ratio"])
    assert result.alerts == []


def test_a_favoured_group_with_few_events_is_not_judged_against():
    claims = [1_000, 1_000]
    result = fairness(
        _groups("region", ["north", "south"], claims),
        _routes([5, 50], claims),  # north favoured on 5 referrals: fewer than min_group_events (10)
        np.full(2_000, np.nan),
        CFG,
    )
    south = _row(result, "south", "referral_rate")
    assert south["ratio"] == pytest.approx(0.1) and not south["judged"]
    assert result.alerts == []


def test_promotion_check_names_the_group_the_challenger_treats_worse():
    claims = [5_000, 5_000]
    groups = _groups("region", ["north", "south"], claims)
    y = np.full(10_000, np.nan)
    champion = fairness(groups, _routes([300, 300], claims), y, CFG).rows
    challenger = fairness(groups, _routes([300, 500], claims), y, CFG).rows
    assert promotion_check(challenger, champion, margin=0.05, min_ratio=0.8) == [
        "region=south: referral_rate ratio 0.60 against the champion's 1.00 (margin 0.05, threshold 0.8)"
    ]
    slightly = fairness(groups, _routes([300, 310], claims), y, CFG).rows  # ratio 0.97
    assert promotion_check(slightly, champion, margin=0.05) == []
    assert promotion_check(champion, challenger, margin=0.05) == []
    # worse than the champion, but still above the four-fifths threshold: no objection
    milder = fairness(groups, _routes([300, 340], claims), y, CFG).rows
    assert promotion_check(milder, champion, margin=0.05, min_ratio=0.8) == []
    assert promotion_check(milder, champion, margin=0.05, min_ratio=1.0) != []


def test_results_round_trip_through_plain_json():
    claims = [5_000, 5_000]
    groups = _groups("region", ["north", "south"], claims)
    result = fairness(groups, _routes([300, 500], claims), np.full(10_000, np.nan), CFG)
    text = json.dumps(result.to_dict(), allow_nan=False)
    back = FairnessResult.from_dict(json.loads(text))
    assert [a.subject for a in back.alerts] == ["region=south: referral_rate"]
    champion = fairness(groups, _routes([300, 300], claims), np.full(10_000, np.nan), CFG)
    assert promotion_check(back.rows, FairnessResult.from_dict(champion.to_dict()).rows, 0.05) == [
        "region=south: referral_rate ratio 0.60 against the champion's 1.00 (margin 0.05, threshold 1)"
    ]


def test_age_bands_include_their_lower_edge():
    claims = pd.DataFrame({"claimant_age": pd.array([24, 25, 39, 40, 59, 60, None, 110], dtype="Int64")})
    bands = group_columns(claims, CFG)["age_band"]
    assert list(bands) == ["under 25", "25-39", "25-39", "40-59", "40-59", "60+", "unknown", "60+"]


def test_group_columns_leave_out_absent_and_empty_attributes():
    claims = pd.DataFrame(
        {"claimant_gender": ["female", None, "male"], "region": [None, None, None], "claimant_age": [30, 41, 70]}
    )
    groups = group_columns(claims, CFG)
    assert set(groups) == {"claimant_gender", "age_band"}
    assert list(groups["claimant_gender"]) == ["female", "unknown", "male"]

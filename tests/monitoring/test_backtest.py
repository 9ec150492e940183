"""The routing backtest: every figure of one policy on a hand-made book of 10 claims (worked out by
hand below), the fraud estimate, and the sweep/optimiser on seeded synthetic books.

Hand-made book: policy SIU >= 0.5; fast track when fast-track score >= 0.6, fraud score < 0.2 and
claimed amount <= 5,000; specialist above 50,000 or severity ``high``. Report dates span exactly 14
days (2 weeks). Costs are the defaults (fast_track 60/2 days, standard 250/12, specialist 900/30,
siu_referral 250/45, investigation 1,200, fraud_saved_share 0.85) except line ``home``, whose SIU
route takes 50 days and whose investigation costs 1,500; detection_rate is 1.0, so an investigated
claim found not fraudulent has probability 0 of fraud.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from monitoring.backtest import (
    Constraints,
    Scenario,
    compare,
    estimate_fraud,
    evaluate,
    grid,
    make_book,
    optimise,
    sweep,
)
from monitoring.costs import DEFAULT_ROUTES, CostModel, LineCosts, RouteCost
from serving.model.routing import RoutingPolicy

POLICY = dict(
    siu_threshold=0.5,
    fast_track_threshold=0.6,
    fast_track_max_fraud=0.2,
    fast_track_amount_limit=5000,
    large_loss_limit=50000,
    specialist_severities=("high",),
)
NA = None


def _policy(**changes) -> RoutingPolicy:
    return RoutingPolicy(**{**POLICY, **changes})


HAND_COSTS = CostModel(
    detection_rate=1.0,
    lines={
        "home": LineCosts(
            routes={**DEFAULT_ROUTES, "siu_referral": RouteCost(handling=250, days=50)},
            investigation=1500,
        )
    },
)

# id, line, reported, claimed, settled, severity, fraud score, fast-track score, investigated, confirmed
# -> the route the policy gives (and why)
HAND = [
    # siu: 0.9 >= 0.5 (beats its "high" severity)
    ("c01", "motor", "2024-01-01", 2000, 1800, "high", 0.90, 0.10, 1, 1),
    # siu: 0.5 >= 0.5 exactly
    ("c02", "home", "2024-01-03", 3000, NA, "low", 0.50, 0.10, 1, 0),
    # fast track
    ("c03", "home", "2024-01-04", 1000, 900, "low", 0.10, 0.80, 0, NA),
    # fast track (confirmed fraud: leakage)
    ("c04", "motor", "2024-01-05", 4000, 4000, "low", 0.05, 0.70, 1, 1),
    # fast track: 0.6 >= 0.6, 0.0 < 0.2, 5000 <= 5000 (every bound met exactly)
    ("c05", "motor", "2024-01-08", 5000, 4500, "medium", 0.00, 0.60, 0, NA),
    # fast track
    ("c06", "motor", "2024-01-09", 100, 100, "low", 0.19, 0.99, 0, NA),
    # standard: 8000 > 5000 fast-track limit
    ("c07", "motor", "2024-01-10", 8000, 7000, "low", 0.10, 0.90, 0, NA),
    # standard: fraud 0.2 is not < 0.2
    ("c08", "motor", "2024-01-11", 2000, 2000, "low", 0.20, 0.90, 0, NA),
    # standard: fast-track score 0.3 < 0.6
    ("c09", "motor", "2024-01-12", 1500, 1500, "low", 0.15, 0.30, 1, 0),
    # specialist: 60000 > 50000
    ("c10", "motor", "2024-01-15", 60000, 55000, "low", 0.25, 0.20, 0, NA),
]


def _hand_book():
    cols = ["id", "line", "reported", "claimed", "settled", "sev", "fraud", "fast", "inv", "conf"]
    t = pd.DataFrame(HAND, columns=cols)
    claims = pd.DataFrame(
        {
            "claim_id": t["id"],
            "report_date": pd.to_datetime(t["reported"]),
            "line_of_business": t["line"],
            "claimed_amount": t["claimed"].astype(float),
            "settled_amount": t["settled"].astype(float),
            "investigated": t["inv"],
            "fraud_confirmed": t["conf"].astype("Float64"),
        }
    )
    features = pd.DataFrame({"claimed_amount": t["claimed"].astype(float), "incident_severity": t["sev"]})
    scores = {"champion": {"fraud": t["fraud"].to_numpy(), "fast_track": t["fast"].to_numpy()}}
    return make_book(claims, features, scores, [_policy()], HAND_COSTS)


def test_hand_made_book_figures_match_hand_arithmetic():
    book = _hand_book()
    assert book.weeks == pytest.approx(2.0)  # 2024-01-01 .. 2024-01-15 = 14 days
    # detection_rate 1: confirmed fraud -> 1, investigated and not fraud -> 0
    assert book.fraud_probability[0] == 1.0  # c01
    assert book.fraud_probability[1] == 0.0  # c02
    assert book.fraud_probability[3] == 1.0  # c04
    assert book.fraud_probability[8] == 0.0  # c09

    f = evaluate(book, Scenario("base", _policy(), "champion"), HAND_COSTS, capacity_per_week=0.5)

    # routes: siu c01 c02; fast c03 c04 c05 c06; standard c07 c08 c09; specialist c10
    assert f["share_siu_referral"] == pytest.approx(0.2)
    assert f["share_fast_track"] == pytest.approx(0.4)
    assert f["share_standard"] == pytest.approx(0.3)
    assert f["share_specialist"] == pytest.approx(0.1)
    assert f["siu_referrals"] == 2
    assert f["siu_per_week"] == pytest.approx(1.0)  # 2 referrals / 2 weeks
    assert f["siu_over_capacity"] is True  # 1.0 > 0.5
    # referred and investigated: c01 (fraud), c02 (not) -> 1/2
    assert f["hit_rate_observed"] == pytest.approx(0.5)
    assert f["fraud_caught_observed"] == 1  # c01
    assert f["fraud_caught_observed_amount"] == pytest.approx(2000)  # c01's claimed amount
    assert f["leakage_observed"] == 1  # c04 fast-tracked and confirmed
    assert f["leakage_observed_amount"] == pytest.approx(4000)
    assert f["leakage_rate_observed"] == pytest.approx(0.25)  # 1 of 4 fast-tracked

    # days: fast 2 x4, standard 12 x3, specialist 30, siu 45 (c01 motor) and 50 (c02 home)
    # sum 8 + 36 + 30 + 45 + 50 = 169 -> mean 16.9
    assert f["cycle_days_mean"] == pytest.approx(16.9)
    # p90 is the smallest value at or below which 90% of claims lie: sorted
    # [2,2,2,2,12,12,12,30,45,50] has 9 of 10 claims (90%) at or below 45 but only 8 below it -> 45
    # (not numpy's interpolated 45.5, nor the maximum 50)
    assert f["cycle_days_p90"] == pytest.approx(45)

    # handling: fast 60*4 = 240, standard 250*3 = 750, siu 250*2 = 500, specialist 900 -> 2390
    assert f["cost_handling"] == pytest.approx(2390)
    # investigations: c01 motor 1200 + c02 home 1500 = 2700
    assert f["cost_investigations"] == pytest.approx(2700)
    # paid (settled, else claimed): 1800 + 3000 (c02 unsettled) + 900 + 4000 + 4500 + 100 + 7000
    # + 2000 + 1500 + 55000 = 79800; saved: c01 p=1 * 1800 * 0.85 = 1530; c02 p=0 -> 0
    assert f["fraud_saved_amount"] == pytest.approx(1530)
    assert f["cost_payments"] == pytest.approx(79800 - 1530)  # 78270
    assert f["cost_slipped_fraud"] == 0  # slipped_fraud_cost is 0 by default
    # 78270 + 2390 + 2700 = 83360
    assert f["cost_total"] == pytest.approx(83360)


def test_compare_reports_cost_change_against_the_first_scenario():
    book = _hand_book()
    scenarios = [
        Scenario("base", _policy(), "champion"),
        Scenario("no-siu", _policy(siu_threshold=0.95), "champion"),
    ]
    frame = compare(book, scenarios, HAND_COSTS, capacity_per_week=None)
    # no-siu: c01 (severity high) -> specialist, c02 (fraud 0.5 >= 0.2, not fast) -> standard.
    # handling: fast 240 + standard 250*4 = 1000 + specialist 900*2 = 1800 -> 3040;
    # no investigations, nothing saved: 79800 + 3040 = 82840; change 82840 - 83360 = -520
    assert list(frame["policy"]) == ["base", "no-siu"]
    assert frame["cost_total"].tolist() == pytest.approx([83360, 82840])
    assert frame["cost_change"].tolist() == pytest.approx([0, -520])
    assert frame["cost_change_share"].iloc[1] == pytest.approx(-520 / 83360)


# --- the fraud estimate ----------------------------------------------------------------------------

# three score levels of four claims each; the decile edges fall on and between the levels, so each
# level is its own bin
SCORES = np.repeat([0.1, 0.5, 0.9], 4)


def test_estimate_fraud_confirmed_is_one_and_cleared_is_zero_with_perfect_detection():
    nan = np.nan
    confirmed = np.array([1, 0, nan, nan, 1, 0, 1, nan, 0, 0, nan, nan])
    p = estimate_fraud(confirmed, SCORES, detection_rate=1.0)
    assert p[[0, 4, 6]].tolist() == [1.0, 1.0, 1.0]
    assert p[[1, 5, 8, 9]].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_estimate_fraud_uses_the_confirmed_rate_at_the_claims_score_over_detection_rate():
    nan = np.nan
    confirmed = np.array(
        [0, 0, nan, nan]  # level 0.1: 0 of 2 confirmed -> rate 0
        + [1, 0, nan, nan]  # level 0.5: 1 of 2 -> rate 0.5
        + [nan, nan, nan, nan]  # level 0.9: nobody investigated -> the highest fitted rate (0.5, clipped)
    )
    p = estimate_fraud(confirmed, SCORES, detection_rate=0.8)
    assert p[2:4].tolist() == pytest.approx([0.0, 0.0])
    # 0.5 / 0.8 = 0.625
    assert p[6:8].tolist() == pytest.approx([0.625, 0.625])
    # above the investigated scores the fit is flat (clipped): 0.5 / 0.8 = 0.625
    assert p[8:12].tolist() == pytest.approx([0.625] * 4)
    assert p[4] == 1.0
    # investigated, not found: r(1-d)/(1-rd) = 0.625*0.2 / (1 - 0.5) = 0.25
    assert p[5] == pytest.approx(0.25)
    # level 0.1 investigated and cleared: r = 0 -> 0
    assert p[0:2].tolist() == pytest.approx([0.0, 0.0])


def test_estimate_fraud_never_falls_as_the_score_rises():
    rng = np.random.default_rng(5)
    score = rng.random(5_000)
    confirmed = np.where(rng.random(5_000) < 0.3, (rng.random(5_000) < score).astype(float), np.nan)
    p = estimate_fraud(confirmed, score, detection_rate=0.8)
    uninvestigated = np.isnan(confirmed)
    order = np.argsort(score[uninvestigated])
    assert np.all(np.diff(p[uninvestigated][order]) >= -1e-12)


def test_estimate_fraud_is_capped_at_one():
    nan = np.nan
    confirmed = np.array([0, nan, nan, nan] + [1, 1, 0, nan] + [nan] * 4)
    p = estimate_fraud(confirmed, SCORES, detection_rate=0.5)
    # level 0.5: 2/3 / 0.5 = 1.33 -> capped at 1
    assert p[7] == pytest.approx(1.0)
    # level 0.9 (above every investigated score): the level-0.5 rate, capped -> 1.0
    assert p[8:12].tolist() == pytest.approx([1.0] * 4)
    # level 0.1: 0/1 -> 0
    assert p[1:4].tolist() == pytest.approx([0.0] * 3)


# --- synthetic books ------------------------------------------------------------------------------


def _synthetic_book(n: int, seed: int, costs: CostModel, policies=()):
    """``n`` claims over 52 weeks: fraud ~ Bernoulli(score); investigations follow the score, plus a
    hunch that finds 15% of frauds whatever their score; an investigation confirms a fraud with
    probability 0.8."""
    rng = np.random.default_rng(seed)
    fraud_score = rng.beta(1.0, 8.0, n)
    fast_score = rng.uniform(0, 1, n)
    truth = rng.uniform(size=n) < fraud_score
    investigated = (rng.uniform(size=n) < 0.02 + 0.8 * fraud_score) | (truth & (rng.uniform(size=n) < 0.15))
    confirmed = investigated & truth & (rng.uniform(size=n) < 0.8)
    claimed = np.round(rng.lognormal(8.0, 1.0, n), 2)
    settled = np.where(rng.uniform(size=n) < 0.7, claimed * 0.9, np.nan)
    start = pd.Timestamp("2023-01-02")
    offsets = rng.integers(0, 365, n)
    offsets[:2] = 0, 364  # span exactly 52 weeks
    dates = start + pd.to_timedelta(offsets, unit="D")
    claims = pd.DataFrame(
        {
            "claim_id": [f"s{i}" for i in range(n)],
            "report_date": dates,
            "line_of_business": rng.choice(["motor", "home"], n),
            "claimed_amount": claimed,
            "settled_amount": settled,
            "investigated": investigated.astype(int),
            "fraud_confirmed": np.where(investigated, confirmed.astype(float), np.nan),
            "true_fraud": truth.astype(int),
        }
    )
    features = pd.DataFrame(
        {"claimed_amount": claimed, "incident_severity": rng.choice(["low", "medium", "high"], n, p=[0.6, 0.3, 0.1])}
    )
    scores = {"champion": {"fraud": fraud_score, "fast_track": fast_score}}
    return make_book(claims, features, scores, policies, costs)


COSTS = CostModel()  # detection_rate 0.8


@pytest.fixture(scope="module")
def book20k():
    return _synthetic_book(20_000, seed=7, costs=COSTS)


@pytest.fixture(scope="module")
def swept20k(book20k):
    policies = grid(book20k, _policy(), "champion", steps=5)
    return policies, sweep(book20k, policies, "champion", COSTS, Constraints())


def test_grid_has_steps_cubed_policies_at_documented_thresholds(book20k):
    base = _policy()
    policies = grid(book20k, base, "champion", steps=4)
    assert len(policies) == 4**3
    fraud = book20k.scores["champion"]["fraud"]
    siu = sorted({p.siu_threshold for p in policies}, reverse=True)
    referred_share = [float((fraud >= t).mean()) for t in siu]
    # quantiles of a continuous score: the share referred is 1%, 4%, 7%, 10% to within one claim
    assert referred_share == pytest.approx([0.01, 0.04, 0.07, 0.10], abs=1 / len(fraud) + 1e-12)
    assert sorted({p.fast_track_threshold for p in policies}) == pytest.approx([0.3, 0.5, 0.7, 0.9])
    limits = sorted({p.fast_track_amount_limit for p in policies})
    assert len(limits) == 4
    assert limits[0] == pytest.approx(2500) and limits[-1] == pytest.approx(10000)  # half and twice 5000
    # geometric steps: each limit is the same multiple of the one before (4 ** (1/3))
    assert np.diff(np.log(limits)) == pytest.approx([np.log(4) / 3] * 3)
    # everything else is the base's
    assert {(p.large_loss_limit, p.specialist_severities, p.fast_track_max_fraud) for p in policies} == {
        (50000, ("high",), 0.2)
    }


@pytest.mark.parametrize("capacity", [5.0, 12.0, 25.0, 1000.0])
def test_optimise_picks_a_policy_within_siu_capacity(book20k, swept20k, capacity):
    policies, frame = swept20k
    constraints = Constraints(capacity_per_week=capacity)
    frame = frame.assign(feasible=[constraints.met(r) for r in frame.to_dict("records")])
    found = optimise(frame, policies)
    assert found is not None
    policy, row = found
    assert row["siu_per_week"] <= capacity
    # the policy returned really refers that few when replayed
    again = evaluate(book20k, Scenario("chosen", policy, "champion"), COSTS, capacity)
    assert again["siu_per_week"] <= capacity
    assert again["cost_total"] == pytest.approx(row["cost_total"])


def test_optimise_returns_none_when_no_policy_meets_capacity(book20k):
    policies = grid(book20k, _policy(), "champion", steps=3)
    # the fewest referrals in the grid are 1% of 20,000 claims = 200 over 52 weeks = 3.8/week
    frame = sweep(book20k, policies, "champion", COSTS, Constraints(capacity_per_week=1.0))
    assert not frame["feasible"].any()
    assert optimise(frame, policies) is None


def test_optimise_meets_every_constraint_and_is_cheapest_among_feasible(book20k, swept20k):
    policies, frame = swept20k
    capacity = float(frame["siu_per_week"].median())
    leakage_cap = float(frame["leakage_rate_observed"].median())
    cycle = float(frame["cycle_days_mean"].median())
    constraints = Constraints(capacity_per_week=capacity, leakage_cap=leakage_cap, cycle_days=cycle)
    swept = sweep(book20k, policies, "champion", COSTS, constraints)

    by_capacity = swept["siu_per_week"] <= capacity
    by_leakage = swept["leakage_rate_observed"] <= leakage_cap
    by_cycle = swept["cycle_days_mean"] <= cycle
    # each constraint rules out some policy, so the test would see one being ignored
    assert not by_capacity.all() and not by_leakage.all() and not by_cycle.all()
    ok = by_capacity & by_leakage & by_cycle
    assert ok.any()
    assert swept["feasible"].tolist() == ok.tolist()

    policy, row = optimise(swept, policies)
    assert row["siu_per_week"] <= capacity
    assert row["leakage_rate_observed"] <= leakage_cap
    assert row["cycle_days_mean"] <= cycle
    assert row["cost_total"] == pytest.approx(swept.loc[ok, "cost_total"].min())
    assert policy == policies[int(swept.loc[ok, "cost_total"].idxmin())]


def test_raising_fast_track_amount_limit_never_lowers_fast_track_share(book20k):
    limits = [0, 500, 1000, 2000, 5000, 10000, 50000, 1e9]
    shares = [
        evaluate(book20k, Scenario(f"l{x}", _policy(fast_track_amount_limit=x), "champion"), COSTS)["share_fast_track"]
        for x in limits
    ]
    assert all(a <= b for a, b in zip(shares, shares[1:], strict=False))
    assert shares[-1] > shares[0]


def test_raising_siu_threshold_never_raises_referrals(book20k):
    thresholds = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0]
    referrals = [
        evaluate(book20k, Scenario(f"t{t}", _policy(siu_threshold=t), "champion"), COSTS)["siu_referrals"]
        for t in thresholds
    ]
    assert all(a >= b for a, b in zip(referrals, referrals[1:], strict=False))
    assert referrals[0] == 20_000  # threshold 0 refers every claim
    assert referrals[-1] < referrals[0]


@pytest.fixture(scope="module")
def book50k():
    return _synthetic_book(50_000, seed=2024, costs=COSTS)


@pytest.mark.parametrize(
    "changes",
    [
        {},  # the baseline policy
        {"siu_threshold": 0.15},
        {"siu_threshold": 0.3},
        {"siu_threshold": 0.05},
        {"siu_threshold": 0.3, "fast_track_threshold": 0.3, "fast_track_max_fraud": 0.5},
    ],
)
def test_fraud_interval_brackets_the_truth(book50k, changes):
    f = evaluate(book50k, Scenario("p", _policy(**changes), "champion"), COSTS)
    assert f["fraud_caught_low"] <= f["fraud_caught_true"] <= f["fraud_caught_high"]
    assert f["leakage_low"] <= f["leakage_true"] <= f["leakage_high"]
    # the interval is an interval: the observed count is strictly below the truth here (detection 0.8)
    assert f["fraud_caught_observed"] < f["fraud_caught_true"]


def test_grid_keeps_no_siu_threshold_when_base_has_none(book20k):
    base = dataclasses.replace(_policy(), siu_threshold=None)
    policies = grid(book20k, base, "champion", steps=3)
    assert {p.siu_threshold for p in policies} == {None}

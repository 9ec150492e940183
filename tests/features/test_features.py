"""Point-in-time features: hand-checked tables per family, a brute-force reference, no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import catalog, schema
from features.build import available_features, build_features
from features.data.synthetic import generate_claims

T0 = pd.Timestamp("2024-01-01 09:00")


def claims(rows: list[dict]) -> pd.DataFrame:
    """A canonical frame from a few hand-written claims (day offsets from T0)."""
    out = []
    for i, r in enumerate(rows):
        r = dict(r)
        day = r.pop("day")
        row = {
            "claim_id": r.pop("id", f"C{i}"),
            "line_of_business": "motor",
            "report_date": T0 + pd.Timedelta(days=day),
            "incident_date": T0 + pd.Timedelta(days=day - 1),
        }
        for col in ("closed",):
            if col in r:
                r["investigation_closed_date"] = T0 + pd.Timedelta(days=r.pop(col))
        row.update(r)
        out.append(row)
    return schema.conform(pd.DataFrame(out))


def feature(frame: pd.DataFrame, name: str) -> list[float]:
    return build_features(frame, [name])[name].tolist()


def same(a, b) -> bool:
    return len(a) == len(b) and all((x == y) or (np.isnan(x) and np.isnan(y)) for x, y in zip(a, b))


# --- notice ------------------------------------------------------------------------------------


def test_a_tiny_sum_insured_gives_a_finite_ratio():
    f = claims(
        [
            {"day": 0, "claimed_amount": 1e9, "sum_insured": 5e-324},
            {"day": 0, "claimed_amount": 1e9, "sum_insured": 0.0},
        ]
    )
    with np.errstate(all="raise"):
        ratio = feature(f, "amount_to_sum_insured")
    assert ratio[0] == 1e9 and np.isnan(ratio[1])  # was infinite (and "overflow in divide"): no JSON number


def test_notice_features_by_hand():
    f = claims(
        [
            {
                "day": 0,
                "policy_start_date": T0 - pd.Timedelta(days=10),
                "claimed_amount": 4_900.0,
                "sum_insured": 9_800.0,
                "deductible": 490.0,
            },
            {"day": 0, "claimed_amount": 30_000.0, "deductible": 0.0},
            {"day": 0, "claimed_amount": 2_400.0},
        ]
    )
    out = build_features(
        f,
        [
            "days_since_policy_start",
            "reporting_delay_days",
            "amount_to_sum_insured",
            "amount_to_deductible",
            "gap_below_authority_limit",
            "report_hour",
            "report_weekday",
        ],
    )
    assert out["days_since_policy_start"].tolist()[0] == 9.0  # start 10 days before the report, incident 1 day
    assert out["reporting_delay_days"].tolist() == [1.0, 1.0, 1.0]
    assert out["amount_to_sum_insured"].tolist()[0] == 0.5 and np.isnan(out["amount_to_sum_insured"][1])
    assert out["amount_to_deductible"].tolist()[:2] == [10.0, 30_000.0]
    gap = out["gap_below_authority_limit"].tolist()
    assert gap[0] == pytest.approx(0.02) and np.isnan(gap[1]) and gap[2] == pytest.approx(0.04)
    assert out["report_hour"].tolist() == [9.0] * 3 and out["report_weekday"].tolist() == [0.0] * 3  # a Monday


# --- history -----------------------------------------------------------------------------------


def test_claimant_history_counts_only_strictly_earlier_claims():
    f = claims(
        [
            {"day": 0, "claimant_id": "A", "claimed_amount": 100.0},
            {"day": 10, "claimant_id": "A", "claimed_amount": 200.0},
            {"day": 10, "claimant_id": "A", "claimed_amount": 400.0},  # same moment: they do not see each other
            {"day": 100, "claimant_id": "A", "claimed_amount": 800.0},
            {"day": 500, "claimant_id": "A", "claimed_amount": 50.0},
            {"day": 500, "claimant_id": None, "claimed_amount": 50.0},  # unknown claimant: unknown history
            {"day": 20, "claimant_id": "B", "claimed_amount": 10.0},
        ]
    )
    assert same(feature(f, "claimant_claims_90d"), [0, 1, 1, 2, 0, np.nan, 0])  # [t - 90d, t): day 10 is in
    assert same(feature(f, "claimant_claims_365d"), [0, 1, 1, 3, 0, np.nan, 0])
    assert same(feature(f, "claimant_claims_3y"), [0, 1, 1, 3, 4, np.nan, 0])
    assert same(feature(f, "claimant_amount_365d"), [0, 100, 100, 700, 0, np.nan, 0])
    assert same(feature(f, "claimant_days_since_last_claim"), [np.nan, 10, 10, 90, 400, np.nan, np.nan])


def test_outcomes_count_only_once_decided_before_the_report():
    f = claims(
        [
            {"day": 0, "claimant_id": "A", "investigated": True, "fraud_confirmed": True, "closed": 30},
            {"day": 5, "claimant_id": "A", "investigated": True, "fraud_confirmed": False, "closed": 20},
            {"day": 25, "claimant_id": "A"},  # sees the day-20 decision only
            {"day": 30, "claimant_id": "A"},  # decided at exactly its report moment: not yet known
            {"day": 31, "claimant_id": "A"},
        ]
    )
    assert feature(f, "claimant_prior_investigations") == [0, 0, 1, 1, 2]
    assert feature(f, "claimant_prior_fraud") == [0, 0, 0, 0, 1]


def test_policy_and_provider_history_with_smoothed_rates():
    rows = [
        {
            "day": d,
            "policy_id": "P",
            "provider_id": "V",
            "investigated": d == 0,
            "fraud_confirmed": d == 0,
            **({"closed": 5} if d == 0 else {}),
        }
        for d in (0, 1, 2, 3)
    ]
    rows.append({"day": 400, "policy_id": "P", "provider_id": "V"})
    f = claims(rows)
    assert feature(f, "policy_prior_claims") == [0, 1, 2, 3, 4]
    assert feature(f, "provider_claims_365d") == [0, 1, 2, 3, 0]  # the year-old claims have left the window
    k, prior = catalog.RATE_STRENGTH, catalog.RATE_PRIOR["fraud"]
    rates = feature(f, "provider_fraud_rate_365d")
    assert rates[:4] == pytest.approx([prior] + [k * prior / (n + k) for n in (1, 2, 3)])
    assert rates[4] == pytest.approx(prior)  # the day-5 decision is more than 365 days old by day 400


# --- links -------------------------------------------------------------------------------------


def test_shared_phone_counts_other_claimants_in_the_window():
    f = claims(
        [
            {"day": 0, "claimant_id": "A", "phone": "p1"},
            {"day": 1, "claimant_id": "B", "phone": "p1"},
            {"day": 2, "claimant_id": "A", "phone": "p1"},
            {"day": 3, "claimant_id": "C", "phone": "p1"},
            {"day": 3, "claimant_id": "D", "phone": "p1"},  # same moment as C: neither sees the other
            {"day": 3, "claimant_id": "E", "phone": None},
            {"day": 380, "claimant_id": "F", "phone": "p1"},  # everyone else left the 365-day window
        ]
    )
    assert same(feature(f, "phone_claimants_365d"), [0, 1, 1, 2, 2, np.nan, 0])


def test_linked_group_joins_claimants_through_shared_details():
    f = claims(
        [
            {"day": 0, "claimant_id": "A", "phone": "p1", "investigated": True, "fraud_confirmed": True, "closed": 4},
            {"day": 1, "claimant_id": "B", "phone": "p1", "address": "h1"},
            {"day": 2, "claimant_id": "C", "address": "h1"},
            {"day": 3, "claimant_id": "D", "phone": "p9"},
            {"day": 5, "claimant_id": "D", "address": "h1"},  # D joins the group through its own claim
            {"day": 6, "claimant_id": "E", "payee_account": "acct", "payee_type": "provider"},
            {
                "day": 7,
                "claimant_id": "F",
                "payee_account": "acct",
                "payee_type": "provider",
            },  # a repairer's account links nobody
            {"day": 8, "claimant_id": None, "phone": "p1"},
        ]
    )
    assert same(feature(f, "group_size"), [1, 2, 3, 1, 4, 1, 1, np.nan])
    assert same(feature(f, "group_prior_fraud"), [0, 0, 0, 0, 1, 0, 0, np.nan])


# --- a brute-force reference on random data ---------------------------------------------------


def _random_claims(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day = np.sort(rng.integers(0, 900, n)).astype(float) + rng.choice([0, 0.5], n)  # many ties
    pick = lambda k, p_null: np.where(rng.random(n) < p_null, None, rng.integers(0, k, n).astype(str))
    investigated = rng.random(n) < 0.3
    closed = np.where(investigated & (rng.random(n) < 0.8), day + rng.integers(0, 60, n), np.nan)
    return schema.conform(
        pd.DataFrame(
            {
                "claim_id": [f"R{i}" for i in range(n)],
                "line_of_business": "motor",
                "report_date": T0 + pd.to_timedelta(day, unit="D"),
                "incident_date": T0 + pd.to_timedelta(day - 1, unit="D"),
                "claimant_id": pick(40, 0.05),
                "policy_id": pick(60, 0.0),
                "provider_id": pick(8, 0.3),
                "payee_account": pick(50, 0.1),
                "payee_type": rng.choice(["claimant", "provider"], n, p=[0.8, 0.2]),
                "phone": pick(45, 0.1),
                "address": pick(45, 0.1),
                "claimed_amount": rng.uniform(100, 5000, n).round(2),
                "investigated": investigated,
                "fraud_confirmed": investigated & (rng.random(n) < 0.4),
                "investigation_closed_date": T0 + pd.to_timedelta(closed, unit="D"),
            }
        )
    )


def _reference(f: pd.DataFrame) -> dict[str, list[float]]:
    """Each feature of each claim, computed the slow obvious way from the rows before it."""
    t = f["report_date"].to_numpy()
    closed = f["investigation_closed_date"].to_numpy()
    inv = f["investigated"].fillna(False).to_numpy(bool)
    fraud = f["fraud_confirmed"].fillna(False).to_numpy(bool)
    amount = f["claimed_amount"].to_numpy(float)
    day = np.timedelta64(1, "D")
    out: dict[str, list[float]] = {
        k: []
        for k in (
            "claimant_claims_90d",
            "claimant_claims_3y",
            "claimant_amount_365d",
            "claimant_days_since_last_claim",
            "claimant_prior_investigations",
            "claimant_prior_fraud",
            "policy_prior_claims",
            "provider_fraud_rate_365d",
            "payee_claims_365d",
            "phone_claimants_365d",
            "address_claimants_365d",
            "group_size",
            "group_prior_fraud",
        )
    }
    cols = {
        c: f[c].to_numpy(dtype=object)
        for c in ("claimant_id", "policy_id", "provider_id", "payee_account", "phone", "address", "payee_type")
    }
    isnull = lambda v: v is None or (isinstance(v, float) and np.isnan(v))

    def same_key(col, i):
        v = cols[col][i]
        if isnull(v):
            return None
        return np.array([not isnull(x) and x == v for x in cols[col]])

    for i in range(len(f)):
        before = t < t[i]
        decided = ~np.isnat(closed) & (closed < t[i])
        within = lambda days, before=before, i=i: before & (t >= t[i] - days * day)
        k = same_key("claimant_id", i)
        if k is None:
            for name in (
                "claimant_claims_90d",
                "claimant_claims_3y",
                "claimant_amount_365d",
                "claimant_days_since_last_claim",
                "claimant_prior_investigations",
                "claimant_prior_fraud",
            ):
                out[name].append(np.nan)
        else:
            out["claimant_claims_90d"].append((k & within(90)).sum())
            out["claimant_claims_3y"].append((k & within(1096)).sum())
            out["claimant_amount_365d"].append(amount[k & within(365)].sum())
            prev = t[k & before]
            out["claimant_days_since_last_claim"].append((t[i] - prev.max()) / day if len(prev) else np.nan)
            out["claimant_prior_investigations"].append((k & decided & inv).sum())
            out["claimant_prior_fraud"].append((k & decided & fraud).sum())
        out["policy_prior_claims"].append((same_key("policy_id", i) & before).sum())
        p = same_key("provider_id", i)
        if p is None:
            out["provider_fraud_rate_365d"].append(np.nan)
        else:
            n_claims = (p & within(365)).sum()
            events = (p & decided & fraud & (closed >= t[i] - 365 * day)).sum()
            k_, prior = catalog.RATE_STRENGTH, catalog.RATE_PRIOR["fraud"]
            out["provider_fraud_rate_365d"].append((events + k_ * prior) / (n_claims + k_))
        a = same_key("payee_account", i)
        out["payee_claims_365d"].append(np.nan if a is None else (a & within(365)).sum())
        for name, col in (("phone_claimants_365d", "phone"), ("address_claimants_365d", "address")):
            s = same_key(col, i)
            if s is None:
                out[name].append(np.nan)
                continue
            others = {c for c in cols["claimant_id"][s & within(365)] if not isnull(c)} - {cols["claimant_id"][i]}
            out[name].append(len(others))
        # linked group: breadth-first search over earlier claims plus this claim's own links
        me = cols["claimant_id"][i]
        if isnull(me):
            out["group_size"].append(np.nan)
            out["group_prior_fraud"].append(np.nan)
            continue
        visible = np.flatnonzero(before | (np.arange(len(f)) == i))

        def nodes(j):
            found = []
            if not isnull(cols["claimant_id"][j]):
                found.append(("c", cols["claimant_id"][j]))
                for col in ("phone", "address", "payee_account"):
                    v = cols[col][j]
                    if not isnull(v) and not (col == "payee_account" and cols["payee_type"][j] == "provider"):
                        found.append((col, v))
            return found

        group, frontier = {("c", me)}, True
        while frontier:
            frontier = False
            for j in visible:
                ns = nodes(j)
                if ns and any(x in group for x in ns) and not set(ns) <= group:
                    group |= set(ns)
                    frontier = True
        members = {v for kind, v in group if kind == "c"}
        out["group_size"].append(len(members))
        in_group = np.array([not isnull(c) and ("c", c) in group for c in cols["claimant_id"]])
        out["group_prior_fraud"].append((in_group & decided & fraud).sum())
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_features_match_a_brute_force_reference(seed):
    f = _random_claims(600, seed)
    reference = _reference(f)
    built = build_features(f, list(reference))
    for name, expected in reference.items():
        np.testing.assert_allclose(built[name].to_numpy(), np.array(expected, float), rtol=0, atol=1e-9, err_msg=name)


# --- no leakage --------------------------------------------------------------------------------


def test_features_ignore_claims_reported_later():
    full = generate_claims(6_000, seed=21)
    names = [f.name for f in available_features(full)]
    cut = full["report_date"].quantile(0.6)
    early = full["report_date"] < cut
    baseline = build_features(full, names)[early]

    changed = full.copy()
    late = ~early
    changed.loc[late, "claimed_amount"] *= 3
    changed.loc[late, "phone"] = changed.loc[early, "phone"].iloc[0]  # later claims all share an early phone
    changed.loc[late, "fraud_confirmed"] = True
    deleted = full[early | (np.arange(len(full)) % 2 == 0)]
    extra = full[late].assign(claim_id=lambda d: d["claim_id"] + "-dup", claimant_id=full["claimant_id"].iloc[0])
    added = pd.concat([full, extra], ignore_index=True)
    for variant in (changed, deleted, added):
        out = build_features(variant, names)
        kept = variant["report_date"] < cut
        pd.testing.assert_frame_equal(out[kept].reset_index(drop=True), baseline.reset_index(drop=True))


def test_outcomes_decided_after_a_report_never_reach_its_features():
    full = generate_claims(4_000, seed=3)
    names = [f.name for f in available_features(full) if f.family in ("history", "link")]
    base = build_features(full, names)
    # every decision moves far into the future: no claim may see any outcome any more
    moved = full.assign(investigation_closed_date=full["report_date"].max() + pd.Timedelta(days=1))
    out = build_features(moved, names)
    for name in ("claimant_prior_fraud", "claimant_prior_investigations", "group_prior_fraud"):
        assert out[name].fillna(0).eq(0).all(), name
    assert (base["claimant_prior_fraud"].fillna(0) > 0).any()


# --- catalog and sources ------------------------------------------------------------------------


def test_synthetic_claims_support_every_catalog_feature(synthetic_claims):
    # except what only the bodily-injury data carries: injury types per person, late-reported accidents
    bodily_injury_only = {*schema.INJURY_COUNTS.values(), "incident_month"}
    names = [f.name for f in available_features(synthetic_claims)]
    assert names == [f.name for f in catalog.FEATURES if f.name not in bodily_injury_only]
    out = build_features(synthetic_claims)
    assert list(out.columns) == names
    for name in names:
        assert out[name].notna().any(), name


def test_reason_words_format_values():
    assert catalog.BY_NAME["claimant_claims_365d"].explain(3.0) == "3 claims by this claimant in the last 12 months"
    assert catalog.BY_NAME["channel"].explain("web") == "Reported through: web"
    assert catalog.BY_NAME["claimant_age"].explain(float("nan")) == "Claimant's age: unknown"
    hour = catalog.BY_NAME["report_hour"]  # a fractional hour of the day reads as a clock time
    assert hour.explain(31 / 60) == "Reported at 00:31"
    assert hour.explain(23 + 59.7 / 60) == "Reported at 00:00"
    assert hour.explain(14.25) == "Reported at 14:15"


@pytest.mark.realdata
def test_real_sources_lack_what_they_do_not_have(shared_data):
    from features.config import Settings
    from features.data.sources import load_claims

    settings = Settings(shared_data=shared_data)
    vehicle = load_claims(None, "vehicle_fraud", settings)
    names = {f.name for f in available_features(vehicle.frame, vehicle.extras)}
    assert "x_days_policy_accident" in names and "reporting_delay_days" in names
    assert not names & {"claimant_claims_365d", "phone_claimants_365d", "group_size", "report_hour"}
    assert "PolicyNumber" not in names and not any("policy_number" in n for n in names)
    injury = load_claims(None, "aus_bodily_injury", settings)
    names = {f.name for f in available_features(injury.frame, injury.extras)}
    assert "report_weekday" not in names  # month-level dates: weekdays would be noise
    assert {"reporting_delay_days", "injury_count", "incident_severity"} <= names
    assert len(build_features(injury.frame)) == len(injury.frame)


def test_a_keys_sums_do_not_depend_on_other_keys():
    """Running sums restart per key: a live claim's small history and a huge table agree exactly."""
    from features import pit

    rng = np.random.default_rng(0)
    small = rng.uniform(0, 10, 50)
    times = np.arange(50, dtype=np.int64) * 100
    one = np.ones(50, np.int64)
    alone = pit.window_stats(one, times, small, one, times + 1, 1000)[1]
    big_key = np.r_[np.zeros(5000, np.int64), one]  # the huge key sorts first
    big_times = np.r_[np.arange(5000, dtype=np.int64), times]
    big_values = np.r_[rng.uniform(1e11, 1e12, 5000), small]
    mixed = pit.window_stats(big_key, big_times, big_values, one, times + 1, 1000)[1]
    assert np.array_equal(alone, mixed)


@pytest.mark.parametrize("as_arrays", [False, True])
def test_features_of_some_rows_equal_those_rows_of_the_whole_table(synthetic_claims, as_arrays):
    from features import columns

    frame = synthetic_claims.sort_values("report_date", kind="stable").reset_index(drop=True)
    names = available_features(frame)
    whole = build_features(frame, names)
    source = columns.from_frame(schema.conform(frame)) if as_arrays else frame
    for rows in (slice(4_000, None), slice(10, 11), slice(2_500, 2_600)):
        part = build_features(source, names, rows=rows)
        expected = whole.iloc[rows]
        for name in expected.columns:
            got = pd.Series(part[name], index=expected.index) if as_arrays else part[name]
            if expected[name].dtype == "float64":
                assert np.allclose(got.astype(float), expected[name], rtol=1e-12, atol=1e-12, equal_nan=True), name
            else:
                assert (got.fillna("<NA>").astype(str) == expected[name].fillna("<NA>").astype(str)).all(), name

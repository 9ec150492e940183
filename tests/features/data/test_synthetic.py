"""The synthetic generator: deterministic, realistic rates, the fraud patterns an SIU sees, honest noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import schema
from features.data.synthetic import AUTHORITY_LIMITS, generate_claims
from features.identity import Identity, is_hashed, kind_of


@pytest.fixture(scope="module")
def claims() -> pd.DataFrame:
    return generate_claims(60_000, seed=5)


def test_same_seed_gives_the_same_claims():
    pd.testing.assert_frame_equal(generate_claims(3_000, seed=42), generate_claims(3_000, seed=42))


def test_another_seed_gives_other_claims():
    a, b = generate_claims(3_000, seed=1), generate_claims(3_000, seed=2)
    assert not a["claimed_amount"].equals(b["claimed_amount"])


def test_claims_carry_the_canonical_columns_in_time_order(claims):
    expected = [c for c in schema.COLUMNS if c != "simple_settlement"]
    assert list(claims.columns) == expected
    assert claims["claim_id"].is_unique
    assert claims["report_date"].is_monotonic_increasing
    assert (claims["incident_date"] <= claims["report_date"]).all()
    assert (claims["policy_start_date"] <= claims["incident_date"]).all()
    assert (claims["incident_date"] <= claims["policy_end_date"]).all()
    span = claims["report_date"].max() - claims["report_date"].min()
    assert span > pd.Timedelta(days=3 * 365)


def test_fraud_and_label_rates_are_in_range(claims):
    assert 0.03 < claims["true_fraud"].mean() < 0.08
    assert 0.03 < claims["investigated"].mean() < 0.09
    confirmed = claims["fraud_confirmed"].astype("float64")
    assert 0.005 < confirmed.mean() < 0.02
    # confirmed only where investigated and really fraudulent; pending investigations have no label yet
    hit = claims["fraud_confirmed"].fillna(False).astype(bool)
    assert (claims["investigated"][hit]).all() and (claims["true_fraud"][hit]).all()
    assert claims["fraud_confirmed"][~claims["investigated"]].eq(False).all()
    # only part of the fraud is ever detected
    assert hit.sum() < 0.5 * claims["true_fraud"].sum()
    days = (claims["settlement_date"] - claims["report_date"]).dt.days
    simple = (days <= 30) & ~claims["adjuster_assigned"] & ~claims["legal_representation"] & ~claims["disputed"]
    assert 0.3 < simple[claims["settlement_date"].notna()].mean() < 0.65


def test_investigations_follow_red_flags_not_chance(claims):
    early = (claims["incident_date"] - claims["policy_start_date"]).dt.days < 60
    rate_flagged = claims["investigated"][early].mean()
    rate_other = claims["investigated"][~early].mean()
    assert rate_flagged > 2 * rate_other


def test_fraud_shows_the_patterns_investigators_know(claims):
    fraud = claims["true_fraud"]
    early = (claims["incident_date"] - claims["policy_start_date"]).dt.days < 45
    late = (claims["report_date"] - claims["incident_date"]).dt.days > 20
    increase = (claims["incident_date"] - claims["cover_increase_date"]).dt.days < 36
    amount = claims["claimed_amount"].to_numpy()
    under = np.zeros(len(claims), bool)
    for lim in AUTHORITY_LIMITS:
        under |= (amount < lim) & (amount >= lim * 0.94)
    many = claims["number_of_parties"].astype("float64") >= 4
    for name, flag in [
        ("early", early),
        ("late", late),
        ("cover increase", increase),
        ("under limit", under),
        ("many parties", many),
    ]:
        lift = flag[fraud].mean() / max(flag[~fraud].mean(), 1e-9)
        assert lift > 2, f"{name}: fraud rate of the flag only {lift:.1f}x the honest rate"
        assert flag[~fraud].any(), f"{name}: honest claims never show it (trivially separable)"


def test_rings_share_phones_accounts_and_providers(claims):
    # identifiers are raw, written in several formats: they link once normalised and hashed, as on import.
    # Repairers and clinics paid directly legitimately share one account across claimants: look at
    # payments to claimants for accounts
    identity = Identity("test")
    hashed = claims.assign(
        **{c: identity.hash_series(claims[c], kind_of(c)) for c in ("phone", "address", "payee_account")}
    )
    personal = hashed[hashed["payee_type"] == "claimant"]
    for col, frame in (("phone", hashed), ("address", hashed), ("payee_account", personal)):
        sharing = frame.groupby(col)["claimant_id"].nunique()
        in_shared = frame[col].isin(sharing[sharing >= 3].index)
        assert in_shared.any(), col
        assert frame["true_fraud"][in_shared].mean() > 3 * frame["true_fraud"][~in_shared].mean(), col
    by_provider = claims.dropna(subset=["provider_id"]).groupby("provider_id")["true_fraud"].agg(["mean", "size"])
    busy = by_provider[by_provider["size"] >= 30]
    assert busy["mean"].max() > 4 * claims["true_fraud"].mean()


def test_repeat_claimants_exist_but_most_claim_once(claims):
    per_claimant = claims["claimant_id"].value_counts()
    assert (per_claimant > 1).any()
    assert (per_claimant == 1).mean() > 0.5


def test_fraud_is_learnable_but_not_trivially_separable(claims):
    """A plain model on notice-time fields, trained on earlier claims, scores later ones in range."""
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    c = claims
    x = pd.DataFrame(
        {
            "days_in_force": (c["incident_date"] - c["policy_start_date"]).dt.days,
            "delay": (c["report_date"] - c["incident_date"]).dt.total_seconds() / 86400,
            "amount": c["claimed_amount"],
            "amount_ratio": c["claimed_amount"] / c["sum_insured"],
            "parties": c["number_of_parties"].astype("float64"),
            "injured": c["injury_count"].astype("float64"),
            "police": c["police_report"].astype("float64"),
            "witness": c["witness_present"].astype("float64"),
            "since_increase": (c["incident_date"] - c["cover_increase_date"]).dt.days,
            "hour": c["report_date"].dt.hour,
        }
    )
    for col in ("line_of_business", "incident_type", "incident_severity", "fault", "region"):
        x[col] = c[col].astype("category")
    y = c["true_fraud"].astype(int)
    cut = c["report_date"].quantile(0.7)
    train, test = c["report_date"] < cut, c["report_date"] >= cut
    model = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.05, verbose=-1, random_state=0)
    model.fit(x[train], y[train])
    auc = roc_auc_score(y[test], model.predict_proba(x[test])[:, 1])
    assert 0.75 < auc < 0.95, auc


def test_generator_refuses_nonsense():
    with pytest.raises(ValueError, match="claims"):
        generate_claims(0)


@pytest.mark.parametrize("seed", range(10))
def test_small_books_generate_for_any_seed(seed):
    claims = generate_claims(500, seed=seed)
    assert len(claims) == 500 and claims["provider_type"].notna().any()


def test_identifiers_are_raw_in_several_formats_and_link_once_normalised(claims):
    identity = Identity("test")
    for col in ("phone", "address", "payee_account"):
        raw = claims[col].dropna()
        assert not raw.map(is_hashed).any(), col
        hashed = identity.hash_series(raw, kind_of(col))
        spellings = raw.groupby(hashed).nunique()
        assert (spellings > 1).mean() > 0.05, f"{col}: one identifier is rarely written two ways"
        assert hashed.nunique() < raw.nunique(), col
    assert claims["phone"].str.startswith("+61").any() and claims["phone"].str.startswith("04").any()

"""The reference stored with a model: what it summarises, that it round-trips, that it stays small."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.errors import DataFileError
from monitoring.reference import (
    LEVELS,
    PCA_VARIANCE,
    TOP_CATEGORIES,
    Reference,
    build_reference,
    reconstruction_errors,
)

CHANNELS = ("web", "phone", "broker")
CHANNEL_MIX = (0.6, 0.3, 0.1)
ROUTES = ("fast_track", "standard", "specialist", "siu_referral")
ROUTE_MIX = (0.35, 0.5, 0.1, 0.05)


def synthetic_features(
    n: int,
    seed: int,
    *,
    amount_scale: float = 1.0,
    channel_mix: tuple[float, ...] = CHANNEL_MIX,
    break_correlation: bool = False,
) -> pd.DataFrame:
    """Claims' features: age and income strongly correlated, a heavy-tailed amount with 5% missing, a
    count, a coded vehicle group (integers, categorical by name), channel (text) and region
    (category). ``break_correlation`` shuffles income: same marginals, no link with age."""
    rng = np.random.default_rng(seed)
    age = rng.normal(45, 12, n)
    income = 800 * age + rng.normal(0, 4_000, n)
    if break_correlation:
        income = rng.permutation(income)
    amount = rng.lognormal(8, 1, n) * amount_scale
    amount[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "claimant_age": age,
            "income": income,
            "claimed_amount": amount,
            "prior_claims": rng.poisson(1.0, n).astype(float),
            "vehicle_group": rng.integers(1, 6, n),
            "channel": pd.Series(rng.choice(CHANNELS, n, p=channel_mix), dtype="str"),
            "region": pd.Categorical(rng.choice(list("ABCDEFGH"), n)),
        }
    )


def synthetic_scores(n: int, seed: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"fraud": np.clip(rng.beta(2, 8, n) + shift, 0, 1), "fast_track": rng.beta(5, 3, n)}


def synthetic_routes(n: int, seed: int, mix: tuple[float, ...] = ROUTE_MIX) -> np.ndarray:
    return np.random.default_rng(seed).choice(ROUTES, n, p=mix)


def make_reference(n: int = 20_000, seed: int = 1) -> tuple[Reference, pd.DataFrame]:
    frame = synthetic_features(n, seed)
    reference = build_reference(
        frame,
        ["vehicle_group"],
        synthetic_scores(n, seed + 100),
        synthetic_routes(n, seed + 200),
        {"fraud": {"roc_auc": 0.81, "average_precision": 0.22}},
        {"period": "2024-01-01..2024-06-30", "red_flag_score": 0.42},
    )
    return reference, frame


@pytest.fixture(scope="module")
def built() -> tuple[Reference, pd.DataFrame]:
    return make_reference()


def test_numbers_are_summarised_by_quantiles_moments_and_null_rate(built):
    reference, frame = built
    amount = reference.numeric["claimed_amount"]
    values = frame["claimed_amount"].dropna().to_numpy()
    assert amount["rows"] == len(frame)
    assert amount["null_rate"] == pytest.approx(frame["claimed_amount"].isna().mean())
    assert amount["mean"] == pytest.approx(values.mean()) and amount["std"] == pytest.approx(values.std())
    assert (amount["min"], amount["max"]) == pytest.approx((values.min(), values.max()))
    assert len(amount["quantiles"]) == len(LEVELS) == 101
    assert amount["quantiles"] == pytest.approx(np.quantile(values, LEVELS))
    top = np.sort(values)[-round(0.01 * len(values)) :]
    assert amount["tails"][1] == pytest.approx(top.mean())


def test_text_category_columns_and_named_ones_are_categorical(built):
    reference, frame = built
    assert set(reference.categorical) == {"vehicle_group", "channel", "region"}
    assert set(reference.numeric) == {"claimant_age", "income", "claimed_amount", "prior_claims"}
    channel = reference.categorical["channel"]
    shares = frame["channel"].value_counts(normalize=True)
    assert channel["frequencies"] == pytest.approx(shares.to_dict())
    assert channel["other"] == 0 and channel["distinct"] == 3 and channel["null_rate"] == 0
    assert set(reference.categorical["vehicle_group"]["frequencies"]) == {"1", "2", "3", "4", "5"}


def test_categories_beyond_the_most_frequent_are_pooled_as_other():
    rng = np.random.default_rng(0)
    codes = pd.Series(rng.integers(0, 80, 10_000).astype(str)).where(rng.random(10_000) > 0.1)
    reference = build_reference(pd.DataFrame({"code": codes}), [], {}, np.array([]), {})
    summary = reference.categorical["code"]
    shares = codes.value_counts(normalize=True)
    assert summary["distinct"] == 80 and len(summary["frequencies"]) == TOP_CATEGORIES
    assert summary["other"] == pytest.approx(shares.iloc[TOP_CATEGORIES:].sum())
    listed = list(summary["frequencies"].values())
    assert listed == pytest.approx(list(shares.iloc[:TOP_CATEGORIES]))  # the most frequent, in order
    assert all(shares[c] == pytest.approx(f) for c, f in summary["frequencies"].items())
    assert summary["null_rate"] == pytest.approx(codes.isna().mean())


def test_scores_routes_metrics_and_extra_are_kept(built):
    reference, _ = built
    assert set(reference.scores) == {"fraud", "fast_track"}
    assert len(reference.scores["fraud"]["quantiles"]) == 101
    assert sum(reference.routes.values()) == pytest.approx(1.0)
    assert reference.routes["siu_referral"] == pytest.approx(0.05, abs=0.01)
    assert reference.metrics["fraud"]["roc_auc"] == 0.81
    assert reference.extra["red_flag_score"] == 0.42
    assert reference.rows == 20_000


def test_multivariate_keeps_the_components_explaining_65_percent_of_the_variance(built):
    reference, frame = built
    model = reference.multivariate
    assert model["features"] == ["claimant_age", "income", "claimed_amount", "prior_claims"]
    k = len(model["components"])
    assert 1 <= k < len(model["features"]) and model["explained_variance"] >= PCA_VARIANCE
    assert model["chunk_size"] == 1_000 and model["chunks"] == 20
    errors = reconstruction_errors(model, frame)
    assert errors.mean() == pytest.approx(model["error_mean"])
    chunk_means = errors.reshape(20, 1_000).mean(axis=1)
    assert model["error_std"] == pytest.approx(chunk_means.std(ddof=1))


def test_multivariate_skips_constant_columns_and_is_deterministic():
    frame = synthetic_features(5_000, 3).assign(constant=7.0)
    first = build_reference(frame, [], {}, np.array([]), {})
    again = build_reference(frame, [], {}, np.array([]), {})
    assert "constant" not in first.multivariate["features"]
    assert first.multivariate["chunk_size"] == 500
    assert first == again


def test_multivariate_needs_two_varying_numbers():
    frame = pd.DataFrame({"amount": np.arange(100.0), "channel": ["web"] * 100})
    assert build_reference(frame, [], {}, np.array([]), {}).multivariate is None


def test_round_trips_through_a_dict_and_a_json_file(built, tmp_path):
    reference, _ = built
    assert Reference.from_dict(reference.to_dict()) == reference
    loaded = Reference.load(reference.save(tmp_path / "reference.json"))
    assert loaded == reference
    json.loads((tmp_path / "reference.json").read_text())  # plain, strict JSON


def test_missing_figures_are_null_in_json_and_nan_in_metrics(tmp_path):
    frame = pd.DataFrame({"empty": [np.nan] * 30, "x": np.arange(30.0)})
    reference = build_reference(frame, [], {}, np.array([]), {"fraud": {"roc_auc": float("nan")}})
    loaded = Reference.load(reference.save(tmp_path / "r.json"))
    assert loaded.numeric["empty"]["null_rate"] == 1 and loaded.numeric["empty"]["mean"] is None
    assert np.isnan(loaded.metrics["fraud"]["roc_auc"])


def test_json_stays_small_for_a_hundred_features():
    rng = np.random.default_rng(0)
    n = 20_000
    columns = {f"number_{j}": rng.normal(j, 1 + j, n) * (1 + (j % 3 == 0) * rng.normal(0, 1, n)) for j in range(80)}
    columns |= {f"category_{j}": rng.integers(0, 200, n).astype(str) for j in range(20)}
    reference = build_reference(pd.DataFrame(columns), [], synthetic_scores(n, 1), synthetic_routes(n, 2), {})
    size = len(json.dumps(reference.to_dict(), separators=(",", ":")))
    assert size < 300_000, f"{size} bytes"


def test_loading_names_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(DataFileError, match="does not exist"):
        Reference.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataFileError, match="not valid JSON"):
        Reference.load(tmp_path / "bad.json")
    with pytest.raises(DataFileError, match="format"):
        Reference.from_dict({"format": 99})

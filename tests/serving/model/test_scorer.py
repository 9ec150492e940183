"""serving.model.scorer: which columns the champion needs, and scoring claims that lack one or have
no outcomes yet (through ``claimscore score``, against a champion trained into a temp MLflow store)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from features import schema
from features.errors import ClaimScoreError
from serving.model.scorer import MissingInputs, Scorer

# --- the inputs a champion needs (a stand-in champion: only its feature lists matter) -------------

FEATURES = ["claimed_amount", "amount_to_deductible", "claimant_prior_fraud", "group_size", "x_vehicle_price"]


def stand_in(features: list[str] = FEATURES, routing_reads: tuple[str, ...] = ("incident_type",)) -> Scorer:
    bundle = SimpleNamespace(features=features, metadata={})
    return Scorer({"fraud": bundle}, SimpleNamespace(reads=routing_reads), {"fraud": "1"})  # type: ignore[arg-type]


def test_inputs_follow_the_catalog_and_leave_out_outcomes_of_earlier_claims():
    inputs = stand_in().inputs

    assert inputs["claimed_amount"] == ["claimed_amount", "amount_to_deductible"]
    assert inputs["deductible"] == ["amount_to_deductible"]
    assert inputs["phone|payee_account|address"] == ["group_size"]  # any one of them will do
    assert inputs["x_vehicle_price"] == ["x_vehicle_price"]
    assert inputs["incident_type"] == ["incident_type"]  # read by the routing policy
    assert not set(inputs) & set(schema.OUTCOMES)  # claimant_prior_fraud reads decided earlier claims


def test_a_request_lacking_a_field_the_model_uses_is_refused_naming_it():
    scorer = stand_in()
    claim = {c: 1 for c in scorer.inputs if "|" not in c} | {"address": "h-1"}

    assert scorer.missing_inputs(claim) == {}
    assert scorer.check_inputs(claim) == {}
    del claim["claimed_amount"], claim["address"]
    assert scorer.missing_inputs(claim) == {
        "claimed_amount": ["claimed_amount", "amount_to_deductible"],
        "phone|payee_account|address": ["group_size"],
    }
    with pytest.raises(MissingInputs) as exc:
        scorer.check_inputs(claim, allow=["phone"])
    assert exc.value.missing == {"claimed_amount": ["claimed_amount", "amount_to_deductible"]}
    assert "\n" not in str(exc.value) and "claimed_amount (for claimed_amount, amount_to_deductible)" in str(exc.value)


def test_allowed_missing_inputs_are_returned_to_record_and_typos_allow_nothing():
    scorer = stand_in()
    claim = {c: 1 for c in scorer.inputs if "|" not in c and c != "claimed_amount"}

    allowed = scorer.check_inputs(claim, allow=["claimed_amount", "payee_account"])

    assert set(allowed) == {"claimed_amount", "phone|payee_account|address"}
    with pytest.raises(ClaimScoreError, match="claimed_amont"):
        scorer.check_inputs(claim, allow=["claimed_amont", "phone"])


# --- claimscore score against a real champion -----------------------------------------------------


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """A champion trained on 5,000 synthetic claims into a temp MLflow store: its settings."""
    from features.config import Settings
    from features.data.synthetic import generate_claims
    from training import registry
    from training.config import TrainingConfig
    from training.pipeline import train

    home = tmp_path_factory.mktemp("state")
    store = Settings(home=home).resolved().ensure_dirs()
    data = home / "train.parquet"
    generate_claims(5_000, seed=5).to_parquet(data)
    registry.configure(store)
    train(str(data), "synthetic", store, TrainingConfig())
    registry.configure(store)
    registry.promote("average_precision", 0.0, "tests", "scorer tests")
    return store


@pytest.fixture(scope="module")
def new_claims() -> pd.DataFrame:
    from features.data.synthetic import generate_claims

    return generate_claims(1_000, seed=23, start="2025-01-01", years=0.5)


def errors(result) -> list[str]:
    return [line for line in result.err_lines if not line.startswith("warning:")]


@pytest.mark.slow
def test_score_refuses_a_table_without_a_column_the_champion_uses(cli, champion, new_claims, tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMSCORE_HOME", str(champion.home))
    data, out = tmp_path / "no_amount.parquet", tmp_path / "scored.csv"
    new_claims.drop(columns=["claimed_amount"]).to_parquet(data)

    refused = cli("score", "--data", data, "--out", out)

    assert refused.code == 2, refused.err
    assert len(errors(refused)) == 1 and "claimed_amount" in errors(refused)[0], refused.err
    assert "--allow-missing claimed_amount" in errors(refused)[0] and not out.exists()

    allowed = cli("score", "--data", data, "--out", out, "--allow-missing", "claimed_amount")

    assert allowed.code == 0, allowed.err
    assert "scored without claimed_amount (unknown: claimed_amount" in allowed.out
    assert len(pd.read_csv(out)) == len(new_claims)


@pytest.mark.slow
def test_score_reads_new_claims_without_outcome_columns(cli, champion, new_claims, tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMSCORE_HOME", str(champion.home))
    full, new = tmp_path / "full.parquet", tmp_path / "new.parquet"
    new_claims.to_parquet(full)
    new_claims.drop(columns=[c for c in new_claims.columns if c in schema.OUTCOMES]).to_parquet(new)

    with_outcomes = cli("score", "--data", full, "--out", tmp_path / "a.parquet")
    without = cli("score", "--data", new, "--out", tmp_path / "b.parquet")

    assert with_outcomes.code == 0 and without.code == 0, without.err
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    assert list(a["claim_id"]) == list(b["claim_id"]) and "scored without" not in without.out


@pytest.mark.slow
def test_the_champion_needs_claimed_amount_and_no_outcomes(champion):
    scorer = Scorer.from_registry(champion)
    assert "claimed_amount" in scorer.inputs
    assert not set(scorer.inputs) & set(schema.OUTCOMES)
    request = {c: 1 for c in scorer.inputs}
    del request["claimed_amount"]
    assert "claimed_amount" in scorer.missing_inputs(request)

"""Training with no flags on data of any shape (split relative to the data, a built-in source's own
config), the refit of the registered model, and a promotion gate that names what it compared.

Real MLflow store (SQLite) in a temp dir through the ``cli`` fixture; the tests that train are slow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.data.synthetic import generate_claims
from training.config import TrainingConfig
from training.refit import scaled_iterations
from training.split import time_split

MAPPING = """\
name: my_claims
description: Two months of motor claims exported from our claims system (a test table).
identity: true
fields:
  claim_id: {column: ClaimNo}
  report_date: {column: Reported, format: "%d/%m/%Y %H:%M"}
labels:
  simple_settlement: {column: Simple, map: {"Y": true, "N": false}}
"""


def _own_table(tmp_path, claims: int, seed: int, simple_share: float | None = None):
    """A user's export: two months of 2015 claims, renamed columns, dates as text, a Y/N label."""
    frame = generate_claims(claims, seed=seed, start="2015-03-01", years=2 / 12).drop(columns=["true_fraud"])
    rng = np.random.default_rng(seed)
    if simple_share is None:
        settled = (frame["settlement_date"] - frame["report_date"]).dt.days <= 30
        simple = settled & ~frame["legal_representation"].fillna(False).astype(bool)
    else:  # an export with few simple settlements and no fraud outcome at all
        simple = pd.Series(rng.random(len(frame)) < simple_share)
        frame = frame.drop(columns=["fraud_confirmed", "investigated", "investigation_closed_date"])
    frame = frame.rename(columns={"claim_id": "ClaimNo"})
    frame["Reported"] = frame.pop("report_date").dt.strftime("%d/%m/%Y %H:%M")
    frame["Simple"] = np.where(simple, "Y", "N")
    data, mapping = tmp_path / "export.csv", tmp_path / "my_claims.yaml"
    frame.to_csv(data, index=False)
    mapping.write_text(MAPPING)
    return data, mapping


def _run(task: str, alias: str = "challenger"):
    import mlflow

    from features.config import load_settings
    from training import registry

    registry.configure(load_settings(None))
    version = registry.version_for(task, alias)
    return version, mlflow.get_run(version.run_id).data


def test_default_split_fits_two_months_and_holds_enough_positives():
    dates = pd.Series(pd.date_range("2015-03-01", "2015-04-30 23:00", periods=600))
    y = np.zeros(600)
    y[[5, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 520, 540, 560, 580, 590, 595, 599]] = 1
    split = time_split(dates, TrainingConfig().split, {"label": y}, min_positives=4)
    assert split.gap_days == 6 and any("capped at 10%" in n for n in split.notes)
    for mask in (split.train, split.valid, split.test):
        assert y[mask].sum() >= 4
    assert dates[split.train].max() < dates[split.valid].min() <= dates[split.valid].max() < dates[split.test].min()
    assert (dates[split.valid].min() - dates[split.train].max()).days >= 6


def test_refit_iterations_grow_with_the_training_rows():
    assert scaled_iterations(100, 6_000, 11_000, 2_000) == 183
    assert scaled_iterations(100, 6_000, 600_000, 2_000) == 2_000
    assert scaled_iterations(1, 6_000, 100, 2_000) == 1


@pytest.mark.slow
def test_own_two_month_table_trains_with_no_flags(cli, tmp_path):
    data, mapping = _own_table(tmp_path, 700, seed=5)
    r = cli("train", "--source", f"mapping:{mapping}", "--data", data)
    assert r.code == 0, r.err
    assert "training config: defaults" in r.out and "capped at 10%" in r.out
    assert "claimscore-fast-track" in r.out or "fast_track" in r.out
    assert cli("promote").code == 0
    # new claims from the same system: no outcomes yet (no label, no settlement or investigation)
    outcomes = [
        "Simple",
        "settlement_date",
        "settled_amount",
        "legal_representation",
        "disputed",
        "adjuster_assigned",
        "investigated",
        "fraud_confirmed",
        "investigation_closed_date",
    ]
    new = tmp_path / "new.csv"
    pd.read_csv(data).drop(columns=outcomes, errors="ignore").tail(50).to_csv(new, index=False)
    scored = tmp_path / "scored.csv"
    r = cli("score", "--source", f"mapping:{mapping}", "--data", new, "--out", scored)
    assert r.code == 0, r.err
    table = pd.read_csv(scored)
    assert len(table) == 50 and table["fast_track_score"].between(0, 1).all()


@pytest.mark.slow
def test_a_table_that_cannot_support_a_model_gets_one_line_naming_what_to_change(cli, tmp_path):
    data, mapping = _own_table(tmp_path, 300, seed=6, simple_share=0.05)
    r = cli("train", "--source", f"mapping:{mapping}", "--data", data)
    assert r.code != 0 and len(r.err_lines) == 1, r.err
    line = r.err_lines[0]
    assert "simple_settlement: only" in line and "a model needs at least 90 (30 per period)" in line
    assert "lower min_positives in --training-config" in line


@pytest.mark.slow
def test_synthetic_refit_is_registered_with_honest_figures_and_no_refit_registers_the_train_model(cli, tmp_path):
    data = tmp_path / "claims.parquet"
    generate_claims(12_000, seed=21).to_parquet(data)
    r = cli("train", "--data", data)
    assert r.code == 0, r.err
    assert "training config: defaults" in r.out and "registered: refit on" in r.out
    version, run = _run("fraud")
    for task in ("fraud", "fast_track"):
        assert {f"{task}.test.roc_auc", f"{task}.test.average_precision"} <= set(run.metrics)
        assert run.params[f"{task}.refit"] == "true" and " to " in run.params[f"{task}.refit.period"]
    assert run.params["training_config"].startswith("defaults")

    from serving.model.registry import load_bundle

    bundle = load_bundle("fraud", "challenger")
    info = bundle.metadata["refit"]
    assert info["refit"] is True and info["rows"] > info["selection_rows"]
    assert (
        info["iterations"]
        == bundle.booster.current_iteration()
        == scaled_iterations(
            info["selection_iterations"], info["selection_rows"], info["rows"], TrainingConfig().lightgbm.max_rounds
        )
    )
    assert info["end"] == bundle.metadata["seen_until"]

    assert cli("promote").code == 0
    r = cli("train", "--data", data, "--no-refit")
    assert r.code == 0, r.err
    assert "registered: the model fitted on the train period" in r.out
    _, run = _run("fraud")
    assert run.params["fraud.refit"].startswith("false")
    plain = load_bundle("fraud", "challenger")
    assert plain.metadata["refit"] == {"refit": False}
    assert plain.booster.current_iteration() == info["selection_iterations"]

    r = cli("promote")
    shown = r.out + r.err
    assert "compared_on" in shown
    assert run.params["fraud.compare.period"] in shown and run.params["fraud.compare.claims"] in shown
    assert "claimscore-fraud: " in shown  # the note on which claims were compared, and why


@pytest.mark.slow
def test_refit_calibration_holds_on_a_later_period(tmp_path):
    from features.build import build_features
    from features.config import Settings
    from monitoring.metrics import binary_metrics
    from training.pipeline import train

    claims = generate_claims(30_000, seed=31)
    cutoff = claims["report_date"].quantile(0.8)
    early = tmp_path / "early.parquet"
    claims[claims["report_date"] < cutoff].to_parquet(early)
    settings = Settings(home=tmp_path / "state").resolved().ensure_dirs()
    result = train(str(early), "synthetic", settings, TrainingConfig())
    bundle = result.bundles["fraud"]
    table = build_features(claims, bundle.features)
    y = claims["fraud_confirmed"].astype("float64").to_numpy()
    later = (claims["report_date"] >= cutoff).to_numpy() & ~np.isnan(y)  # never seen by the refit
    p = bundle.predict(bundle.encoder.transform(table[later]))
    m = binary_metrics(y[later], p, 0.03)
    assert m["calibration_error"] < 0.01, m
    assert abs(m["mean_score"] - m["positive_rate"]) < 0.01, m


@pytest.mark.slow
def test_vehicle_fraud_trains_with_no_flags_on_its_own_split(cli, shared_data):
    r = cli("train", "--source", "vehicle_fraud", "--data", shared_data / "vehicle_claims_fraud_1994_1995.csv")
    assert r.code == 0, r.err
    assert "training config: source file training/configs/vehicle_fraud.yaml" in r.out
    _, run = _run("fraud")
    assert run.params["training_config"].startswith("source file")
    assert run.params["period.test"].startswith("1995-01-01")
    assert run.metrics["fraud.test.roc_auc"] > 0.7 and run.params["fraud.refit"] == "true"

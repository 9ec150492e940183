"""``claimscore train --source history``: training on the claim history store's matured labels.

The store is filled the way production fills it: ``claimscore history load`` of a claims file, then
live claims whose outcomes are still null (as the service appends them), then outcomes recorded
for a few of those (``HistoryStore.record_outcome``). Real SQLite store and MLflow store in a temp
``CLAIMSCORE_HOME`` through the ``cli`` fixture; the test that trains is slow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import catalog, schema
from features.build import available_features, build_features
from features.config import load_settings
from features.data.sources import load_claims
from features.data.synthetic import generate_claims
from features.identity import is_hashed, personal_fields
from features.store.history import HistoryStore
from training.config import load_training_config
from training.split import time_split

LIVE_DAYS = 120
"""Claims reported in the store's last LIVE_DAYS days arrived live: no outcomes yet (longer than the
60-day label-maturity gap, so some of them are matured and some are not)."""


def _store_from_file(cli, tmp_path, claims: int, seed: int) -> tuple[pd.DataFrame, HistoryStore]:
    """``claimscore history load`` of generated claims into the default store; the same claims loaded
    as the synthetic source (personal identifiers hashed once), in the store's order."""
    data = tmp_path / "claims.parquet"
    generate_claims(claims, seed=seed).to_parquet(data)
    r = cli("history", "load", "--data", data)
    assert r.code == 0, r.err
    settings = load_settings()
    once = load_claims(data, "synthetic", settings).frame
    once = once.sort_values(["report_date", "claim_id"], kind="stable").reset_index(drop=True)
    return once, HistoryStore(settings.history_url)


def test_history_source_passes_hashed_identifiers_through_and_supplies_what_the_store_holds(cli, tmp_path):
    once, store = _store_from_file(cli, tmp_path, 3_000, seed=4)
    settings = load_settings()
    loaded = load_claims(None, "history", settings)
    # identifiers hashed on the way in are read as they are, not hashed a second time
    for col in personal_fields():
        assert once[col].dropna().map(is_hashed).all()
        pd.testing.assert_series_equal(loaded.frame[col], once[col])
    links = [f for f in catalog.FEATURES if f.family in ("history", "link")]
    pd.testing.assert_frame_equal(build_features(loaded.frame, links), build_features(once, links))

    # a field no stored claim holds is not supplied, so the features needing it are not built
    blank = once.assign(vehicle_make=pd.Series(pd.NA, index=once.index, dtype="str"))
    store.load(blank)
    loaded = load_claims(None, "history", settings)
    assert "vehicle_make" not in loaded.supplies and "claimed_amount" in loaded.supplies
    assert "vehicle_make" in load_claims(tmp_path / "claims.parquet", "synthetic", settings).supplies
    built = {f.name for f in available_features(loaded.frame)}
    assert all("vehicle_make" not in f.needs for f in catalog.FEATURES if f.name in built)
    assert any("vehicle_make" in f.needs for f in available_features(once))
    store.close()


def test_history_source_refuses_a_file_and_an_empty_store_in_one_line(cli, tmp_path):
    r = cli("train", "--source", "history")
    assert r.code != 0 and len(r.err_lines) == 1, r.err
    assert "history store" in r.err and "claimscore history load" in r.err
    r = cli("train", "--source", "history", "--data", tmp_path / "claims.parquet")
    assert r.code != 0 and len(r.err_lines) == 1, r.err
    assert "reads a claim history store, not a file" in r.err and "SQLAlchemy URL" in r.err


@pytest.mark.slow
def test_train_on_history_leaves_claims_without_outcomes_out_and_learns_recorded_ones(cli, tmp_path):
    once, store = _store_from_file(cli, tmp_path, 12_000, seed=8)
    end = once["report_date"].max()
    live = once["report_date"] > end - pd.Timedelta(days=LIVE_DAYS)
    # live claims as the service appends them: every outcome null until it arrives
    truth = once.copy()
    for col in schema.OUTCOMES:
        truth.loc[live, col] = pd.NA
    store.append(truth[live])
    # outcomes arrive for some of them: confirmed fraud, in matured and in recent claims
    matured = truth["report_date"] <= end - pd.Timedelta(days=60)
    older = list(truth.loc[live & matured, "claim_id"].iloc[::80][:5])
    recent = list(truth.loc[live & ~matured, "claim_id"].iloc[::80][:5])
    recorded = older + recent
    assert len(older) == len(recent) == 5
    for claim_id in recorded:
        at = truth.index[truth["claim_id"] == claim_id][0]
        closed = truth.at[at, "report_date"] + pd.Timedelta(days=20)
        store.record_outcome(claim_id, investigated=True, fraud_confirmed=True, investigation_closed_date=closed)
        truth.loc[at, ["investigated", "fraud_confirmed", "investigation_closed_date"]] = [True, True, closed]
    store.close()

    config = tmp_path / "small.yaml"
    # 12,000 claims hold about 120 confirmed frauds; a short recipe (what is asserted is which rows train)
    config.write_text("min_positives: 20\nlightgbm:\n  max_rounds: 60\n  early_stopping_rounds: 20\n")
    r = cli("train", "--source", "history", "--training-config", config)
    assert r.code == 0, r.err
    y = truth["fraud_confirmed"].astype("float64").to_numpy()
    unlabelled = int(np.isnan(y).sum())
    # the live claims still without an outcome, and the loaded claims whose investigation is undecided
    assert unlabelled == live.sum() - len(recorded) + once.loc[~live, "fraud_confirmed"].isna().sum()
    assert f"fraud: {unlabelled:,} claims without a fraud_confirmed outcome left out" in r.out

    params, metrics = _challenger_run("fraud")
    assert params["source"] == "history" and params["fraud.unlabelled"] == str(unlabelled)
    assert params["rows"] == str(len(truth))  # unlabelled claims are still there: history for features
    # the test and refit rows are exactly the labelled claims of their periods
    labels = {"fraud_confirmed": y, "simple_settlement": truth["simple_settlement"].astype("float64").to_numpy()}
    cfg = load_training_config(config)
    split = time_split(truth["report_date"], cfg.split, labels, cfg.min_positives)
    labelled = ~np.isnan(y)
    test, refit = split.test & labelled, split.matured & labelled
    assert (split.test & ~labelled).sum() > 0 and (split.matured & ~labelled).sum() > 0
    assert metrics["fraud.test.claims"] == test.sum()
    assert metrics["fraud.test.positives"] == y[test].sum()
    assert metrics["fraud.refit.rows"] == refit.sum()
    assert params["fraud.refit.positives"] == str(int(y[refit].sum()))
    # the recorded outcomes are among them, as positives
    ids = truth["claim_id"].to_numpy()
    assert np.isin(recorded, ids[test & (y == 1)]).all()
    assert np.isin(older, ids[refit & (y == 1)]).all()


def _challenger_run(task: str) -> tuple[dict[str, str], dict[str, float]]:
    import mlflow

    from training import registry

    registry.configure(load_settings())
    version = registry.version_for(task, registry.CHALLENGER)
    data = mlflow.get_run(version.run_id).data
    return data.params, data.metrics

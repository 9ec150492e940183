"""The online path: a live claim's features equal its batch features, because they come from the
same code run on the stored history that can reach the claim."""

from __future__ import annotations

import logging
import uuid

import numpy as np
import pandas as pd
import pytest

from features import columns, schema
from features.build import available_features, build_features
from features.data.synthetic import generate_claims
from features.errors import HistoryError, UnknownClaimError
from features.store.history import HistoryStore, as_canonical
from features.store.index import HistoryIndex
from features.store.online import online_features

DECISION = ("investigated", "fraud_confirmed", "investigation_closed_date")


@pytest.fixture(scope="module")
def claims(prepared_claims) -> pd.DataFrame:
    return prepared_claims(4_000, seed=5)


@pytest.fixture(scope="module")
def feats(claims) -> list:
    return available_features(claims)


@pytest.fixture(scope="module")
def batch(claims, feats) -> pd.DataFrame:
    return build_features(claims, feats)


@pytest.fixture
def store(tmp_path):
    s = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    yield s
    s.close()


def assert_same_features(online: pd.DataFrame, batch: pd.DataFrame) -> None:
    """Floats within 1e-9 (relative or absolute), NaN equal to NaN, categories equal."""
    assert list(online.columns) == list(batch.columns)
    assert online.index.equals(batch.index)
    for col in batch.columns:
        a, b = online[col], batch[col]
        if pd.api.types.is_float_dtype(b):
            same = np.isclose(a, b, rtol=1e-9, atol=1e-9) | (a.isna() & b.isna()).to_numpy()
        else:
            same = ((a == b).fillna(False) | (a.isna() & b.isna())).to_numpy()
        if not same.all():
            i = np.flatnonzero(~same)[0]
            raise AssertionError(
                f"{col}: {int((~same).sum())} claim(s) differ, e.g. row {online.index[i]}: "
                f"online {a.iloc[i]!r}, batch {b.iloc[i]!r}"
            )


def without_outcomes(frame: pd.DataFrame) -> pd.DataFrame:
    """The claims as known at first notice of loss: outcomes (and the synthetic truth) unknown."""
    out = frame.copy()
    for f in schema.FIELDS:
        if f.stage != "notice":
            out[f.name] = schema.null_series(f.pandas_dtype, out.index)
    return out


PATHS = ["frame", "arrays", "index"]
"""A DataFrame against the store; arrays against the store; arrays against the in-memory index
(the service's path)."""


def live_features(store: HistoryStore | HistoryIndex, part: pd.DataFrame, features: list, path: str) -> pd.DataFrame:
    """``online_features`` of ``part`` by ``path``, then ``part`` appended the same way (``store`` is
    a :class:`HistoryIndex` for the index path, refreshed first as the service does)."""
    if path == "frame":
        out = online_features(store, part, features)
        store.append(part)
        return out
    if path == "index":
        store.refresh()
    cols = columns.from_frame(as_canonical(part))
    answer = online_features(store, cols, features)
    store.append(cols)
    return pd.DataFrame(
        {k: pd.Series(v, index=part.index).astype("str") if v.dtype == object else v for k, v in answer.items()},
        index=part.index,
    )


def replay(store: HistoryStore, claims: pd.DataFrame, features: list, step: int, path: str = "frame") -> pd.DataFrame:
    """Score the claims in report-time order, ``step`` at a time, each batch against a store holding
    every earlier claim, then append the batch (with its outcome columns as recorded: the features
    only use outcomes decided before a claim's report)."""
    source = HistoryIndex(store) if path == "index" else store
    return pd.concat(
        [
            live_features(source, claims.iloc[start : start + step], features, path)
            for start in range(0, len(claims), step)
        ]
    )


# --- no training/serving skew ------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_live_claims_replayed_in_time_order_get_their_batch_features(claims, feats, batch, store, path):
    assert len(feats) > 45 and {"group_size", "payee_fraud_rate_365d"} <= {f.name for f in feats}
    online = replay(store, claims, feats, step=50, path=path)
    assert_same_features(online, batch)
    assert len(store) == len(claims)


@pytest.mark.parametrize("path", PATHS)
def test_one_live_claim_at_a_time_with_outcomes_recorded_as_they_arrive(claims, feats, batch, store, path):
    first = len(claims) - 120
    t_first = claims["report_date"].iloc[first]
    known = claims.iloc[:first].copy()
    pending = ~(known["investigation_closed_date"] < t_first)  # decided later: not known yet
    for col in DECISION:
        known.loc[pending, col] = None
    store.load(known)
    source = HistoryIndex(store) if path == "index" else store  # outcomes come through the store
    events = [(t, 0, i) for i, t in claims["report_date"].iloc[first:].items()]
    decided = claims["investigation_closed_date"] >= t_first
    events += [(t, 1, i) for i, t in claims.loc[decided, "investigation_closed_date"].items()]
    scored = {}
    for _, kind, i in sorted(events):  # at the same moment a claim arrives before a decision
        row = claims.loc[[i]]
        if kind == 0:
            scored[i] = live_features(source, without_outcomes(row), feats, path)
        else:
            store.record_outcome(row["claim_id"].iloc[0], **{c: _value(row[c].iloc[0]) for c in DECISION})
    online = pd.concat([scored[i] for i in sorted(scored)])
    assert_same_features(online, batch.loc[online.index])


def _value(v: object) -> object:
    return None if pd.isna(v) else v


# --- no leakage from the future ------------------------------------------------------------------


def test_changing_adding_or_deleting_later_claims_leaves_earlier_online_features_unchanged(claims, feats, store):
    store.load(claims)
    cut = claims["report_date"].iloc[2_000]
    early = claims[claims["report_date"] < cut]
    later = claims[claims["report_date"] >= cut]
    probe, later_probe = early.iloc[-300:], later.iloc[300:400]
    before, later_before = online_features(store, probe, feats), online_features(store, later_probe, feats)

    rng = np.random.default_rng(1)
    keys = ["claimant_id", "policy_id", "provider_id", "payee_account", "payee_type", "phone", "address"]

    def borrowing_early_identities(rows: pd.DataFrame) -> pd.DataFrame:
        rows = rows.copy()
        donors = early.iloc[rng.integers(len(early) - 300, len(early), len(rows))]
        for col in keys:
            rows[col] = donors[col].to_numpy()
        rows["investigated"], rows["fraud_confirmed"] = True, True
        rows["investigation_closed_date"] = rows["report_date"] + pd.Timedelta(days=1)
        rows["claimed_amount"] = rows["claimed_amount"] * 3
        return rows

    changed = borrowing_early_identities(later.iloc[:300])
    added = borrowing_early_identities(later.iloc[:200]).assign(claim_id=lambda d: "NEW-" + d["claim_id"])
    store.append(changed)
    store.append(added)
    assert store.delete(later["claim_id"].iloc[400:600]) == 200

    pd.testing.assert_frame_equal(online_features(store, probe, feats), before, check_exact=True)
    # the changes were real: claims after the cut do see them
    assert not online_features(store, later_probe, feats).equals(later_before)


# --- outcomes arriving later ---------------------------------------------------------------------


def test_a_recorded_fraud_outcome_counts_only_for_claims_reported_after_its_decision(claims, feats, store):
    history = claims.iloc[:1_500]
    store.load(history)
    candidates = history[
        (history["payee_type"] == "claimant")
        & history["provider_id"].notna()
        & history["payee_account"].notna()
        & history["phone"].notna()
        & history["claimant_id"].notna()
        & history["investigation_closed_date"].isna()
    ]
    a = candidates.iloc[-1]
    decided = a["report_date"] + pd.Timedelta(days=30)

    def live(claim_id: str, reported: pd.Timestamp, **changes: object) -> pd.DataFrame:
        row = without_outcomes(history.loc[[a.name]]).assign(
            claim_id=claim_id, report_date=reported, incident_date=reported - pd.Timedelta(days=1), **changes
        )
        return as_canonical(row)

    probes = {
        "before": live("LIVE-BEFORE", decided - pd.Timedelta(days=1)),
        "after": live("LIVE-AFTER", decided + pd.Timedelta(days=1)),
        # another claimant who shares only the phone (and provider) with a: same linked group
        "linked": live(
            "LIVE-LINKED",
            decided + pd.Timedelta(days=1),
            claimant_id="K-NEW",
            policy_id="P-NEW",
            payee_account="ACC-NEW",
            address="ADDR-NEW",
        ),
    }
    first = {k: online_features(store, row, feats).iloc[0] for k, row in probes.items()}
    store.record_outcome(a["claim_id"], investigated=True, fraud_confirmed=True, investigation_closed_date=decided)
    then = {k: online_features(store, row, feats).iloc[0] for k, row in probes.items()}

    pd.testing.assert_series_equal(then["before"], first["before"])
    after, was = then["after"], first["after"]
    assert after["claimant_prior_fraud"] == was["claimant_prior_fraud"] + 1
    assert after["claimant_prior_investigations"] == was["claimant_prior_investigations"] + 1
    assert after["group_prior_fraud"] == was["group_prior_fraud"] + 1
    for rate in ("provider_fraud_rate_365d", "payee_fraud_rate_365d", "provider_referral_rate_365d"):
        assert after[rate] > was[rate]
    linked, was = then["linked"], first["linked"]
    assert linked["group_prior_fraud"] == was["group_prior_fraud"] + 1
    assert linked["claimant_prior_fraud"] == was["claimant_prior_fraud"] == 0


# --- the store ----------------------------------------------------------------------------------


def test_store_round_trips_claims_and_replaces_a_reloaded_claim(claims, store):
    part = claims.iloc[:500]
    assert store.load(part, chunk=128) == 500
    back = store.read_all()
    pd.testing.assert_frame_equal(back, part[list(schema.COLUMNS)].reset_index(drop=True))
    changed = part.iloc[[10]].assign(claimed_amount=123.25, phone=None)
    store.append(changed)
    assert len(store) == 500
    row = store.read_all().set_index("claim_id").loc[changed["claim_id"].iloc[0]]
    assert row["claimed_amount"] == 123.25 and pd.isna(row["phone"])


def test_record_outcome_names_unknown_claims_and_fields(claims, store):
    store.load(claims.iloc[:10])
    with pytest.raises(UnknownClaimError, match="NO-SUCH-CLAIM"):
        store.record_outcome("NO-SUCH-CLAIM", fraud_confirmed=True)
    with pytest.raises(HistoryError, match="claimed_amount"):
        store.record_outcome(claims["claim_id"].iloc[0], claimed_amount=1.0)
    with pytest.raises(HistoryError, match="fraud_confirmed"):
        store.record_outcome(claims["claim_id"].iloc[0], fraud_confirmed="maybe")


def test_history_excludes_the_live_claims_own_rows_and_later_claims(claims, store):
    store.load(claims.iloc[:1_000])
    live = claims.iloc[[800]]
    history = store.history_for(live)
    t = live["report_date"].iloc[0]
    assert live["claim_id"].iloc[0] not in set(history["claim_id"])
    assert ((history["report_date"] < t) | (history["investigation_closed_date"] < t)).all()
    assert 0 < len(history) < 800


def test_group_expansion_beyond_max_rows_warns_naming_the_claim(claims, store, caplog):
    store.load(claims.iloc[:2_000])
    live = claims.iloc[[1_999]]
    with caplog.at_level(logging.WARNING, logger="features.store.history"):
        history = store.history_for(live, max_rows=3)
    assert live["claim_id"].iloc[0] in caplog.text and "max_rows=3" in caplog.text
    assert len(history) >= 3


def test_the_first_claims_scored_against_an_empty_store_get_features(claims, feats, store):
    # nothing stored and nothing decided yet (this once crashed in pit.window_stats)
    live = without_outcomes(claims.iloc[:3])
    online = online_features(store, live, feats)
    assert_same_features(online, build_features(live, feats))
    assert online["claimant_prior_fraud"].isin([0.0]).sum() + online["claimant_prior_fraud"].isna().sum() == 3


def test_live_claims_without_claimant_or_phone_get_their_batch_features(claims, feats, store):
    history = claims.iloc[:1_000]
    store.load(history)
    live = claims.iloc[1_000:1_010].copy()
    live.loc[live.index[:5], "claimant_id"] = None
    live.loc[live.index[3:8], "phone"] = None
    live.loc[live.index[9], ["claimant_id", "phone", "payee_account", "address", "provider_id", "policy_id"]] = None
    online = online_features(store, live, feats)
    assert_same_features(online, build_features(pd.concat([history, live]), feats).loc[live.index])
    assert online.loc[live.index[:5], ["claimant_claims_3y", "group_size"]].isna().all().all()
    assert online.loc[live.index[5:9], "group_size"].notna().all()


# --- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture
def postgres_store(postgres_url):
    try:
        store = HistoryStore(postgres_url, table=f"claim_history_{uuid.uuid4().hex[:12]}")
    except HistoryError as exc:
        pytest.skip(str(exc))
    yield store
    store.drop()
    store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("path", ["frame", "index"])
def test_live_claims_get_their_batch_features_on_postgresql(postgres_store, prepared_claims, path):
    claims = prepared_claims(500, seed=7)
    feats = available_features(claims)
    online = replay(postgres_store, claims, feats, step=25, path=path)
    assert_same_features(online, build_features(claims, feats))
    pd.testing.assert_frame_equal(postgres_store.read_all(), claims[list(schema.COLUMNS)].reset_index(drop=True))


# --- claimscore history load --------------------------------------------------------------------


@pytest.fixture
def history_cli(cli, tmp_path, monkeypatch):
    """``claimscore history ARGS`` through ``pipelines.cli.main``."""
    monkeypatch.chdir(tmp_path)
    return lambda *args: cli("history", *args)


def test_history_load_fills_the_configured_store(history_cli, tmp_path):
    data = tmp_path / "claims.parquet"
    generate_claims(1_500, seed=3).to_parquet(data)
    result = history_cli("load", "--data", data, "--source", "synthetic")
    assert result.code == 0, result.err
    assert "loaded 1,500 claims" in result.out and "history.db" in result.out
    assert len(HistoryStore(f"sqlite:///{tmp_path / 'state' / 'history.db'}")) == 1_500
    other = tmp_path / "other.db"
    again = history_cli("load", "--data", data, "--url", f"sqlite:///{other}")
    assert again.code == 0 and len(HistoryStore(f"sqlite:///{other}")) == 1_500


@pytest.mark.parametrize(
    "args, message",
    [
        (("--data", "missing.parquet"), "missing.parquet: no such file"),
        (("--data", "claims.parquet", "--source", "nonsense"), "unknown source 'nonsense'"),
        (("--data", "claims.parquet", "--url", "nosuchdb://x"), "cannot open this database"),
    ],
)
def test_history_load_errors_are_one_readable_line(history_cli, tmp_path, args, message):
    generate_claims(100, seed=0).to_parquet(tmp_path / "claims.parquet")
    result = history_cli("load", *args)
    assert result.code != 0
    assert len(result.err_lines) == 1 and message in result.err_lines[0] and result.err_lines[0].startswith("error: ")

"""Features on Dask: a real LocalCluster on 127.0.0.1 gives exactly what build_features gives in pandas."""

from __future__ import annotations

import ipaddress
import os
from types import SimpleNamespace

import numpy as np
import pandas as pd
import psutil
import pytest

from features import catalog
from features.build import available_features, build_features
from features.data.synthetic import generate_claims
from pipelines.distributed import GRAPH, ROW, build_features_dask, local_cluster, plan

dd = pytest.importorskip("dask.dataframe")

N_CLAIMS = 20_000
PARTITIONS = 6  # by row order: every claimant's, provider's, phone's claims are spread across them


@pytest.fixture(scope="module")
def client():
    with local_cluster(n_workers=2, threads_per_worker=1) as c:
        yield c


@pytest.fixture(scope="module")
def claims() -> pd.DataFrame:
    return generate_claims(N_CLAIMS, seed=5)


def pandas_features(frame: pd.DataFrame, names: list[str], extras=None) -> pd.DataFrame:
    out = build_features(frame, names, extras)
    out.index = pd.Index(frame["claim_id"], name="claim_id")
    return out.sort_index()


def dask_features(frame: pd.DataFrame, names: list[str], extras=None) -> pd.DataFrame:
    result = build_features_dask(dd.from_pandas(frame, npartitions=PARTITIONS), names, extras)
    assert list(result.columns) == names  # the lazy frame already has the right columns
    return result.compute().sort_index()


def assert_same_features(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same claims, columns and dtypes; floats within 1e-9 (sums differ only in summation order),
    NaN where NaN; categories equal."""
    assert got.index.is_unique and len(got) == len(expected)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9, atol=1e-9)


def test_cluster_listens_only_on_loopback(client):
    info = client.scheduler_info()
    addresses = [info["address"], *info["workers"]]
    assert len(info["workers"]) == 2
    assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
    # every socket the scheduler, nannies and workers listen on, HTTP endpoints included
    pids = {os.getpid(), *client.run(os.getpid).values()}
    listening = [
        c.laddr
        for pid in pids
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert len(listening) >= 2 + 2 * 2
    assert all(ipaddress.ip_address(a.ip).is_loopback for a in listening), listening


def test_each_key_family_is_shuffled_once():
    groups = plan(list(catalog.FEATURES))
    assert set(groups) == {ROW, GRAPH, "claimant_id", "policy_id", "provider_id", "payee_account", "phone", "address"}
    assert [f.name for f in groups[GRAPH]] == ["group_size", "group_prior_fraud"]
    assert {f.family for f in groups[ROW]} == {"notice"}


@pytest.mark.slow  # 20,000 claims through a real cluster: 3-7 s
def test_dask_features_equal_pandas_features(client, claims):
    names = [f.name for f in available_features(claims)]
    assert {f.family for f in available_features(claims)} == {"notice", "history", "link"}
    assert_same_features(dask_features(claims, names), pandas_features(claims, names))


@pytest.mark.slow  # 20,000 claims through a real cluster: 3-7 s
def test_dask_features_equal_pandas_features_with_missing_identifiers(client, claims):
    rng = np.random.default_rng(1)
    frame = claims.copy()
    for col in ("claimant_id", "phone", "provider_id", "payee_account", "payee_type"):
        frame.loc[rng.random(len(frame)) < 0.1, col] = None
    frame["x_garage"] = pd.Series(rng.choice(["a", "b", None], len(frame)), dtype="str")
    extras = {"x_garage": SimpleNamespace(type="category", description="Garage band")}
    names = [f.name for f in available_features(frame, extras)]
    assert "x_garage" in names and "group_size" in names

    got, expected = dask_features(frame, names, extras), pandas_features(frame, names, extras)
    assert_same_features(got, expected)
    unknown = frame.loc[frame["claimant_id"].isna(), "claim_id"]
    assert got.loc[unknown, "claimant_claims_365d"].isna().all()
    assert got.loc[unknown, "group_size"].isna().all()

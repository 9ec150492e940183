"""Fixtures of the pipelines' tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def scheduler() -> str:
    """The scheduler address of a running Dask cluster of the test module (two workers as
    threads: quicker to start than processes, the same graph and serialisation over TCP on 127.0.0.1)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        host="127.0.0.1",
        protocol="tcp://",
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address

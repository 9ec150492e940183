"""Fixtures for the history-store tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from features.data.synthetic import generate_claims
from features.store.history import as_canonical


@pytest.fixture(scope="session")
def prepared_claims() -> Callable[[int, int], pd.DataFrame]:
    """``prepared_claims(n, seed)``: synthetic claims in report-time order, plus what the generator never
    makes: claims reported at the same moment (every 37th claim ties with the one before; 1,850 does so
    across a replay batch boundary) and missing claimants, phones and accounts."""

    def make(n: int, seed: int) -> pd.DataFrame:
        f = as_canonical(generate_claims(n, seed=seed)).copy()
        ties = np.arange(37, n, 37)
        reported = f["report_date"].to_numpy().copy()
        f.loc[ties, "report_date"] = reported[ties - 1]
        rng = np.random.default_rng(seed)
        for col, share in (("claimant_id", 0.02), ("phone", 0.05), ("payee_account", 0.03)):
            f.loc[rng.random(n) < share, col] = None
        return f

    return make

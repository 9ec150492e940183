"""Fixtures for the claims-data tests: a valid claims table in the canonical schema, made with numpy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from features import schema


@pytest.fixture(scope="session")
def valid_claims() -> Callable[..., pd.DataFrame]:
    """``valid_claims(n, seed=7)``: ``n`` plausible claims with every schema column filled, generated from
    the seed (fast at 1M rows; raw: pass it through ``schema.coerce``)."""
    return _valid_claims


def _valid_claims(n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` plausible claims with every schema column filled (raw: pass it through schema.coerce)."""
    rng = np.random.default_rng(seed)
    day = np.timedelta64(1, "D")

    def pick(values: tuple[str, ...]) -> np.ndarray:
        return np.asarray(values, dtype=object)[rng.integers(0, len(values), n)]

    def ids(prefix: str, numbers: np.ndarray) -> pd.Series:
        return prefix + pd.Series(numbers).astype(str)

    def hashed(prefix: str) -> pd.Series:
        return ids(prefix, rng.integers(0, 16**12, n))

    policy_start = np.datetime64("2020-01-01") + rng.integers(0, 3 * 365, n) * day
    incident = policy_start + rng.integers(0, 365, n) * day
    report = incident + rng.integers(0, 30 * 24 * 60, n) * np.timedelta64(1, "m")
    investigated = rng.random(n) < 0.3
    fraud = investigated & (rng.random(n) < 0.2)
    settled = rng.random(n) < 0.8
    settlement = np.where(settled, report + rng.integers(1, 200, n) * day, np.datetime64("NaT"))
    claimed = np.round(rng.lognormal(8, 1, n), 2)
    frame = {
        "claim_id": ids("C-", np.arange(n)),
        "policy_id": ids("P-", rng.integers(0, n, n)),
        "claimant_id": ids("K-", rng.integers(0, n, n)),
        "line_of_business": pick(schema.LINES_OF_BUSINESS),
        "incident_date": incident,
        "report_date": report,
        "policy_start_date": policy_start,
        "policy_end_date": policy_start + 365 * day,
        "cover_increase_date": np.where(rng.random(n) < 0.1, policy_start + 30 * day, np.datetime64("NaT")),
        "sum_insured": np.round(rng.uniform(1e4, 5e5, n), 2),
        "deductible": rng.choice([0.0, 100.0, 250.0, 500.0], n),
        "annual_premium": np.round(rng.uniform(200, 3000, n), 2),
        "cover_type": pick(("liability", "collision", "comprehensive")),
        "claimed_amount": claimed,
        "incident_type": pick(schema.INCIDENT_TYPES),
        "incident_severity": pick(schema.SEVERITIES),
        "channel": pick(schema.CHANNELS),
        "region": pick(("north", "south", "east", "west")),
        "fault": pick(schema.FAULT),
        "number_of_parties": rng.integers(1, 5, n),
        "injury_count": rng.integers(0, 3, n),
        "police_report": rng.random(n) < 0.4,
        "witness_present": rng.random(n) < 0.3,
        "vehicle_make": pick(("ford", "toyota", "vw", "bmw")),
        "vehicle_category": pick(("sedan", "suv", "sport")),
        "vehicle_age_years": np.round(rng.uniform(0, 20, n), 1),
        "claimant_age": rng.integers(18, 90, n),
        "claimant_tenure_years": np.round(rng.uniform(0, 30, n), 1),
        "claimant_gender": pick(("female", "male", "other")),
        "claimant_marital_status": pick(("single", "married", "divorced", "widowed", "other")),
        "provider_id": ids("R-", rng.integers(0, 1000, n)),
        "provider_type": pick(schema.PROVIDER_TYPES),
        "payee_account": hashed("a"),
        "phone": hashed("p"),
        "address": hashed("h"),
        "investigated": investigated,
        "investigation_closed_date": np.where(investigated, report + 20 * day, np.datetime64("NaT")),
        "fraud_confirmed": fraud,
        "settled_amount": np.where(settled, np.round(claimed * rng.uniform(0, 1, n), 2), np.nan),
        "settlement_date": settlement,
        "legal_representation": rng.random(n) < 0.1,
        "adjuster_assigned": rng.random(n) < 0.5,
        "disputed": rng.random(n) < 0.1,
        "simple_settlement": settled & (rng.random(n) < 0.5),
        "true_fraud": fraud | (rng.random(n) < 0.01),
    }
    for f in schema.FIELDS:  # fields added to the schema later get generic plausible values
        if f.name not in frame:
            frame[f.name] = _generic(f, rng, n)
    return pd.DataFrame(frame)[list(schema.COLUMNS)]


def _generic(f: schema.Field, rng: np.random.Generator, n: int) -> np.ndarray | pd.Series:
    if f.allowed:
        return np.asarray(f.allowed, dtype=object)[rng.integers(0, len(f.allowed), n)]
    if f.dtype in ("id", "category"):
        return (f"{f.name[:1]}-" + pd.Series(rng.integers(0, 100, n)).astype(str)).to_numpy(dtype=object)
    if f.dtype in ("float", "int"):
        lo = f.min if f.min is not None else 0
        hi = min(f.max if f.max is not None else lo + 100, lo + 100)
        values = rng.uniform(lo, hi, n)
        return np.floor(values).astype("int64") if f.dtype == "int" else values
    if f.dtype == "bool":
        return rng.random(n) < 0.5
    return np.datetime64("2021-01-01") + rng.integers(0, 365, n) * np.timedelta64(1, "D")

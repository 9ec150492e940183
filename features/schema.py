"""The canonical claims schema, declared once.

Validation, features, training and serving all read this module: the column list, the types, the
allowed values and ranges, what is known at first notice of loss (``notice``) and what only arrives
later (``outcome``). Identifiers are opaque strings and never model features; personal identifiers
(phone, address, bank account) are hashed on import.

Sources may carry extra attributes the schema does not name (e.g. the vehicle data's banded
``AgeOfVehicle``); mappings declare them and they travel as columns prefixed ``x_``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from features.errors import SchemaError

DType = Literal["id", "category", "float", "int", "bool", "datetime"]
Entity = Literal["claim", "policy", "claimant", "provider", "payee"]
Stage = Literal["notice", "outcome", "truth"]

EXTRA_PREFIX = "x_"


@dataclass(frozen=True)
class Field:
    name: str
    dtype: DType
    entity: Entity
    stage: Stage
    description: str
    required: bool = False
    allowed: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    personal: bool = False
    """Derived from personal data: hashed on import, never shown in reports."""
    protected: bool = False
    """A protected attribute: never a model feature; kept for fairness monitoring."""
    max_null_rate: float | None = None
    """Largest share of nulls allowed when a source provides this column at all."""

    @property
    def pandas_dtype(self) -> str:
        return _PANDAS_DTYPES[self.dtype]


_PANDAS_DTYPES: dict[str, str] = {
    "id": "str",
    "category": "str",
    "float": "float64",
    "int": "Int64",
    "bool": "boolean",
    "datetime": "datetime64[ns]",
}

LINES_OF_BUSINESS = ("motor", "bodily_injury", "home", "travel")
INCIDENT_TYPES = (
    "collision",
    "theft",
    "fire",
    "water",
    "storm",
    "vandalism",
    "glass",
    "injury",
    "liability",
    "medical",
    "baggage",
    "cancellation",
    "other",
)
SEVERITIES = ("minor", "small", "medium", "high", "severe", "fatal")
NOT_RECORDED = "not_recorded"
"""An injured person whose injury type the source did not record: explicit, not null."""
INJURY_TYPES = (*SEVERITIES, NOT_RECORDED)
"""Injury types counted per claim (``injuries_<type>``), best to worst, then "not recorded"."""
INJURY_COUNTS: dict[str, str] = {t: f"injuries_{t}" for t in INJURY_TYPES}
"""Injury type -> the canonical field counting a claim's injured people of that type."""
CHANNELS = ("phone", "web", "app", "agent", "broker", "email")
FAULT = ("policyholder", "third_party", "shared", "none", "unknown")
PROVIDER_TYPES = ("repairer", "clinic", "contractor", "tow", "other")

_F = Field
FIELDS: tuple[Field, ...] = (
    # --- identifiers ------------------------------------------------------------------------
    _F("claim_id", "id", "claim", "notice", "Unique claim identifier.", required=True),
    _F("policy_id", "id", "policy", "notice", "Policy the claim is made under.", max_null_rate=0.0),
    _F("claimant_id", "id", "claimant", "notice", "The person or business claiming.", max_null_rate=0.05),
    # --- the claim at first notice of loss ---------------------------------------------------
    _F(
        "line_of_business",
        "category",
        "policy",
        "notice",
        "Line of business.",
        required=True,
        allowed=LINES_OF_BUSINESS,
    ),
    _F("incident_date", "datetime", "claim", "notice", "When the loss happened.", required=True),
    _F(
        "report_date",
        "datetime",
        "claim",
        "notice",
        "When the claim was reported (first notice of loss), with time of day where known.",
        required=True,
    ),
    _F("policy_start_date", "datetime", "policy", "notice", "Policy inception.", max_null_rate=0.01),
    _F(
        "policy_end_date",
        "datetime",
        "policy",
        "notice",
        "End of the policy term covering the incident.",
        max_null_rate=0.01,
    ),
    _F(
        "cover_increase_date",
        "datetime",
        "policy",
        "notice",
        "Last increase of cover before the incident (null if none).",
    ),
    _F("sum_insured", "float", "policy", "notice", "Sum insured.", min=0, max=1e9, max_null_rate=0.05),
    _F("deductible", "float", "policy", "notice", "Deductible (excess).", min=0, max=1e7, max_null_rate=0.05),
    _F("annual_premium", "float", "policy", "notice", "Annual premium.", min=0, max=1e7, max_null_rate=0.05),
    _F("cover_type", "category", "policy", "notice", "Cover, e.g. liability, collision, comprehensive."),
    _F("claimed_amount", "float", "claim", "notice", "Amount claimed at notice.", min=0, max=1e9, max_null_rate=0.05),
    _F("incident_type", "category", "claim", "notice", "What happened.", allowed=INCIDENT_TYPES, max_null_rate=0.05),
    _F(
        "incident_severity",
        "category",
        "claim",
        "notice",
        "Severity of damage or injury (the worst injury; not_recorded when no injured person's type was recorded).",
        allowed=INJURY_TYPES,
        max_null_rate=0.1,
    ),
    _F("channel", "category", "claim", "notice", "How the claim was reported.", allowed=CHANNELS, max_null_rate=0.05),
    _F("region", "category", "claim", "notice", "Region of the loss (insurer's own regions).", max_null_rate=0.05),
    _F("fault", "category", "claim", "notice", "Liability as declared at notice.", allowed=FAULT, max_null_rate=0.2),
    _F(
        "number_of_parties",
        "int",
        "claim",
        "notice",
        "People or vehicles involved, claimant included.",
        min=1,
        max=100,
        max_null_rate=0.1,
    ),
    _F("injury_count", "int", "claim", "notice", "People injured.", min=0, max=100, max_null_rate=0.1),
    *(
        _F(
            column,
            "int",
            "claim",
            "notice",
            f"Injured people whose injury type is {t.replace('_', ' ')}.",
            min=0,
            max=100,
            max_null_rate=0.1,
        )
        for t, column in INJURY_COUNTS.items()
    ),
    _F("police_report", "bool", "claim", "notice", "A police report was filed.", max_null_rate=0.2),
    _F("witness_present", "bool", "claim", "notice", "An independent witness is named.", max_null_rate=0.2),
    _F("vehicle_make", "category", "claim", "notice", "Vehicle make (motor)."),
    _F("vehicle_category", "category", "claim", "notice", "Vehicle category (motor)."),
    _F("vehicle_age_years", "float", "claim", "notice", "Vehicle age in years (motor).", min=0, max=100),
    _F(
        "claimant_age",
        "int",
        "claimant",
        "notice",
        "Claimant's age at the incident.",
        min=14,
        max=110,
        max_null_rate=0.1,
    ),
    _F(
        "claimant_tenure_years",
        "float",
        "claimant",
        "notice",
        "Years the claimant has been a customer.",
        min=0,
        max=100,
        max_null_rate=0.1,
    ),
    _F(
        "claimant_gender",
        "category",
        "claimant",
        "notice",
        "Claimant's gender.",
        allowed=("female", "male", "other"),
        protected=True,
    ),
    _F(
        "claimant_marital_status",
        "category",
        "claimant",
        "notice",
        "Claimant's marital status.",
        allowed=("single", "married", "divorced", "widowed", "other"),
        protected=True,
    ),
    _F("provider_id", "id", "provider", "notice", "Repairer, clinic or contractor named on the claim."),
    _F("provider_type", "category", "provider", "notice", "Kind of provider.", allowed=PROVIDER_TYPES),
    _F("payee_account", "id", "payee", "notice", "Bank account the claim is to be paid into (hashed).", personal=True),
    _F(
        "payee_type",
        "category",
        "payee",
        "notice",
        "Who is paid: the claimant, a provider, or another party.",
        allowed=("claimant", "provider", "other"),
    ),
    _F("phone", "id", "claimant", "notice", "Contact phone given on the claim (hashed).", personal=True),
    _F("address", "id", "claimant", "notice", "Address given on the claim (hashed).", personal=True),
    # --- outcomes: arrive later, never features of the same claim ------------------------------
    _F("investigated", "bool", "claim", "outcome", "Referred to and investigated by the SIU."),
    _F("investigation_closed_date", "datetime", "claim", "outcome", "When the investigation was decided."),
    _F("fraud_confirmed", "bool", "claim", "outcome", "Investigation confirmed fraud (the fraud label)."),
    _F("settled_amount", "float", "claim", "outcome", "Amount paid.", min=0, max=1e9),
    _F("settlement_date", "datetime", "claim", "outcome", "When the claim was settled or closed."),
    _F("legal_representation", "bool", "claim", "outcome", "Claimant had a lawyer."),
    _F("adjuster_assigned", "bool", "claim", "outcome", "A loss adjuster handled the claim."),
    _F("disputed", "bool", "claim", "outcome", "Liability or amount was disputed."),
    _F(
        "simple_settlement",
        "bool",
        "claim",
        "outcome",
        "Settled simply: fast, unadjusted, undisputed, without lawyers (the fast-track label; "
        "each source's mapping defines it).",
    ),
    # --- ground truth the synthetic generator knows and an insurer never does ----------------
    _F("true_fraud", "bool", "claim", "truth", "Synthetic only: the claim really was fraudulent."),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS)
REQUIRED: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
NOTICE: tuple[str, ...] = tuple(f.name for f in FIELDS if f.stage == "notice")
OUTCOMES: tuple[str, ...] = tuple(f.name for f in FIELDS if f.stage == "outcome")

LABELS: dict[str, str] = {"fraud": "fraud_confirmed", "fast_track": "simple_settlement"}
"""Model name -> label column."""

# Pairs (earlier, later) that must hold where both are present.
DATE_ORDER: tuple[tuple[str, str], ...] = (
    ("policy_start_date", "incident_date"),
    ("incident_date", "report_date"),
    ("policy_start_date", "policy_end_date"),
    ("report_date", "settlement_date"),
    ("report_date", "investigation_closed_date"),
)


def extra_columns(columns: Iterable[str]) -> list[str]:
    return [c for c in columns if c.startswith(EXTRA_PREFIX)]


def null_series(dtype: str, index: pd.Index) -> pd.Series:
    """An all-null column of ``dtype`` (built without a Python list: fast for millions of rows)."""
    values = pd.array([None], dtype=dtype).take(np.full(len(index), -1), allow_fill=True)
    return pd.Series(values, index=index)


def conform(df: pd.DataFrame, *, strict: bool = True) -> pd.DataFrame:
    """Return ``df`` with every canonical column, in schema order, with canonical dtypes.

    Missing optional columns are added as nulls; ``x_`` extra columns are kept after the canonical
    ones. With ``strict``, a missing required column, or a value that cannot be read as its type,
    raises :class:`SchemaError` naming the column. Use :func:`coerce` for the lenient form that
    reports unreadable values instead of raising.
    """
    out, problems = coerce(df)
    if strict and problems:
        col, count, examples = problems[0]
        raise SchemaError(f"column '{col}': {count} value(s) cannot be read as {BY_NAME[col].dtype}, e.g. {examples}")
    return out


TypeProblem = tuple[str, int, list[str]]


def coerce(df: pd.DataFrame) -> tuple[pd.DataFrame, list[TypeProblem]]:
    """Like :func:`conform`, but values that cannot be read as the column's type become null and are
    reported as ``(column, count, a few examples)`` rather than raising."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise SchemaError(f"missing required column(s): {', '.join(missing)}")
    cols: dict[str, pd.Series] = {}
    problems: list[TypeProblem] = []
    for f in FIELDS:
        if f.name not in df.columns:
            cols[f.name] = null_series(f.pandas_dtype, df.index)
            continue
        series, bad = _coerce_series(df[f.name], f)
        cols[f.name] = series
        if bad is not None and bad.any():
            examples = [str(v) for v in pd.unique(df[f.name][bad].astype(str))[:5]]
            problems.append((f.name, int(bad.sum()), examples))
    for c in extra_columns(df.columns):
        cols[c] = df[c]
    return pd.DataFrame(cols, index=df.index), problems


_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


def _coerce_series(s: pd.Series, f: Field) -> tuple[pd.Series, pd.Series | None]:
    """Convert one column; return it and a mask of non-null inputs that could not be read."""
    if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
        s = s.mask(s.astype("str").str.strip() == "")  # blank text is missing, not unreadable
    present = s.notna()
    if f.dtype in ("id", "category"):
        if pd.api.types.is_float_dtype(s) and present.any():
            # ids read from CSV as numbers: 12.0 -> "12"
            vals = s.to_numpy(dtype="float64", na_value=np.nan)
            whole = np.isfinite(vals) & (vals == np.floor(vals))
            if whole[present.to_numpy()].all():
                out = pd.Series(np.where(present, vals, 0).astype("int64"), index=s.index).astype("str")
                return out.where(present), None
        out = s.astype("str").where(present)
        return (out.str.strip() if len(out) else out).astype("str"), None
    if f.dtype in ("float", "int"):
        num = pd.to_numeric(s, errors="coerce") if not pd.api.types.is_bool_dtype(s) else s.astype("float64")
        bad = present & num.isna()
        if f.dtype == "int":
            num = num.astype("float64")
            frac = present & ~bad & (num != np.floor(num))
            bad = bad | frac
            num = num.where(~frac)
            return num.round().astype("Int64"), bad
        return num.astype("float64"), bad
    if f.dtype == "bool":
        if pd.api.types.is_bool_dtype(s):
            return s.astype("boolean"), None
        text = s.astype("str").str.strip().str.lower()
        out = null_series("boolean", s.index)
        out[text.isin(_TRUE) & present] = True
        out[text.isin(_FALSE) & present] = False
        bad = present & out.isna()
        return out, bad
    if f.dtype == "datetime":
        if pd.api.types.is_datetime64_any_dtype(s):
            if getattr(s.dt, "tz", None) is not None:
                s = s.dt.tz_convert("UTC").dt.tz_localize(None)
            return s.astype("datetime64[ns]"), None
        parsed = pd.to_datetime(s, errors="coerce", format="mixed")
        bad = present & parsed.isna()
        return parsed.astype("datetime64[ns]"), bad
    raise AssertionError(f"unknown dtype {f.dtype}")

"""The feature catalog: every model feature defined once.

Training, serving, reason codes, validation and monitoring read this list; no other module writes a
feature name down. Each entry says what the feature is about (entity), whether it is numeric or
categorical, which canonical columns it needs (a source that lacks one simply lacks the feature:
nothing is faked), and the plain words a reason code uses.

Source-specific attributes that a mapping declares as ``extras`` become features too (named by
their ``x_`` column, described by the mapping); :func:`extra_feature` makes their entries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from features import schema

Kind = Literal["numeric", "categorical"]
Family = Literal["notice", "history", "link", "extra"]

WINDOWS_DAYS = {"90d": 90, "365d": 365, "3y": 1096}
"""Trailing windows of the history features."""
LINK_WINDOW_DAYS = 365
AUTHORITY_LIMITS = (2_500.0, 5_000.0, 10_000.0, 25_000.0)
"""Adjusters' settlement authority limits (amounts just under them are a known fraud pattern)."""
LATE_REPORT_DAYS = 90
LATE_REPORT_SHARE = 0.25
"""``incident_month`` is a feature only when at least this share of claims is reported this many days
or more after the incident (bodily injury: 54%; motor: 2%)."""
RATE_PRIOR = {"fraud": 0.01, "referral": 0.05}
"""Prior rates that smooth provider and payee rates; ``RATE_STRENGTH`` pseudo-claims of weight."""
RATE_STRENGTH = 20.0


@dataclass(frozen=True)
class Feature:
    name: str
    entity: Literal["claim", "policy", "claimant", "provider", "payee", "link"]
    kind: Kind
    family: Family
    description: str
    reason: str | Callable[[float], str]
    """Reason-code words; ``{value}`` is the feature's value (formatted by the template), or a
    function of the value where a format spec cannot say it (a time of day)."""
    needs: tuple[str, ...]
    """Canonical columns that must be provided for the feature to exist."""
    monotone: int = 0
    """+1 where more of it should never lower the fraud score (a candidate monotone constraint)."""
    needs_any: tuple[str, ...] = ()
    """At least one of these canonical columns must be provided too."""

    def explain(self, value: object) -> str:
        """The reason-code sentence for ``value``."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f"{self.description}: unknown"
        try:
            return self.reason(value) if callable(self.reason) else self.reason.format(value=value)
        except (ValueError, TypeError):
            return f"{self.description}: {value}"


def _clock(hours: float) -> str:
    """A fractional hour of the day as HH:MM (0.5167 -> 00:31)."""
    h, m = divmod(int(round(float(hours) * 60)), 60)
    return f"{h % 24:02d}:{m:02d}"


def _year_month(months: float) -> str:
    """Months since January 1970 as YYYY-MM (315 -> 1996-04)."""
    year, month = divmod(int(months), 12)
    return f"{1970 + year:04d}-{month + 1:02d}"


def _injuries(injury_type: str, column: str) -> Feature:
    kind = "injury type not recorded" if injury_type == schema.NOT_RECORDED else f"{injury_type} injuries"
    return _num(
        column,
        "claim",
        "notice",
        f"Injured people with {kind}",
        f"{{value:.0f}} injured with {kind}",
        (column,),
    )


def _num(name, entity, family, description, reason, needs, monotone=0, needs_any=()) -> Feature:
    return Feature(name, entity, "numeric", family, description, reason, tuple(needs), monotone, tuple(needs_any))


def _cat(name, entity, description, needs=None) -> Feature:
    return Feature(
        name, entity, "categorical", "notice", description, description + ": {value}", tuple(needs or (name,))
    )


_RI = ("report_date", "incident_date")
_CL = ("claimant_id", "report_date")
_DECIDED = ("investigated", "fraud_confirmed", "investigation_closed_date")
LINK_IDENTIFIERS = ("phone", "payee_account", "address")
"""Identifiers that join claimants into linked groups (providers do not: they serve everyone)."""

FEATURES: tuple[Feature, ...] = (
    # --- the claim as known at first notice of loss -----------------------------------------------
    _num(
        "days_since_policy_start",
        "policy",
        "notice",
        "Days from policy start to the incident",
        "Incident {value:.0f} days after the policy started",
        ("incident_date", "policy_start_date"),
    ),
    _num(
        "days_to_policy_end",
        "policy",
        "notice",
        "Days from the incident to the end of the policy term",
        "Incident {value:.0f} days before the policy term ends",
        ("incident_date", "policy_end_date"),
    ),
    _num(
        "days_since_cover_increase",
        "policy",
        "notice",
        "Days from the last cover increase to the incident",
        "Incident {value:.0f} days after cover was increased",
        ("incident_date", "cover_increase_date"),
    ),
    _num(
        "reporting_delay_days",
        "claim",
        "notice",
        "Days from the incident to the report",
        "Reported {value:.0f} days after the incident",
        _RI,
    ),
    _num("claimed_amount", "claim", "notice", "Amount claimed", "Claimed {value:,.0f}", ("claimed_amount",)),
    _num(
        "amount_to_sum_insured",
        "claim",
        "notice",
        "Claimed amount as a share of the sum insured",
        "Claimed {value:.0%} of the sum insured",
        ("claimed_amount", "sum_insured"),
    ),
    _num(
        "amount_to_deductible",
        "claim",
        "notice",
        "Claimed amount as a multiple of the deductible",
        "Claimed {value:.1f} times the deductible",
        ("claimed_amount", "deductible"),
    ),
    _num(
        "gap_below_authority_limit",
        "claim",
        "notice",
        "How far the amount is below the next adjuster authority limit (share of the limit)",
        "Amount {value:.1%} below an authority limit",
        ("claimed_amount",),
    ),
    _num("sum_insured", "policy", "notice", "Sum insured", "Sum insured {value:,.0f}", ("sum_insured",)),
    _num("deductible", "policy", "notice", "Deductible", "Deductible {value:,.0f}", ("deductible",)),
    _num("annual_premium", "policy", "notice", "Annual premium", "Annual premium {value:,.0f}", ("annual_premium",)),
    _num(
        "report_hour",
        "claim",
        "notice",
        "Hour of day the claim was reported",
        lambda hours: f"Reported at {_clock(hours)}",
        ("report_date",),
    ),
    _num(
        "report_weekday",
        "claim",
        "notice",
        "Day of week the claim was reported (0 = Monday)",
        "Reported on weekday {value:.0f} (0 = Monday)",
        ("report_date",),
    ),
    _num(
        "incident_weekday",
        "claim",
        "notice",
        "Day of week of the incident (0 = Monday)",
        "Incident on weekday {value:.0f} (0 = Monday)",
        ("incident_date",),
    ),
    # The accident's year and month as one number (AccMth in the bodily-injury table): a calendar
    # month alone (1-12) carries little; when in time the accident happened, beside the reporting
    # delay, is what separates simple settlements there. It is a trend: new claims lie past the
    # training months (a tree model treats them as its latest months; drift monitors see it move), so
    # it is offered only where accidents are often reported late (LATE_REPORT_*, features/build.py):
    # there the accident's month says what the report date does not; where nearly every claim is
    # reported within weeks (motor) it is the report time again and only adds a trend.
    _num(
        "incident_month",
        "claim",
        "notice",
        "Year and month of the incident (months since January 1970)",
        lambda months: f"Incident in {_year_month(months)}",
        ("incident_date",),
    ),
    _num(
        "number_of_parties",
        "claim",
        "notice",
        "People or vehicles involved",
        "{value:.0f} parties involved",
        ("number_of_parties",),
    ),
    _num("injury_count", "claim", "notice", "People injured", "{value:.0f} people injured", ("injury_count",)),
    *(_injuries(t, column) for t, column in schema.INJURY_COUNTS.items()),
    _num(
        "police_report",
        "claim",
        "notice",
        "A police report was filed (1) or not (0)",
        "Police report filed: {value:.0f} (1 = yes)",
        ("police_report",),
    ),
    _num(
        "witness_present",
        "claim",
        "notice",
        "An independent witness is named (1) or not (0)",
        "Witness named: {value:.0f} (1 = yes)",
        ("witness_present",),
    ),
    _num(
        "vehicle_age_years", "claim", "notice", "Vehicle age", "Vehicle {value:.0f} years old", ("vehicle_age_years",)
    ),
    _num("claimant_age", "claimant", "notice", "Claimant's age", "Claimant aged {value:.0f}", ("claimant_age",)),
    _num(
        "claimant_tenure_years",
        "claimant",
        "notice",
        "Years as a customer",
        "Customer for {value:.1f} years",
        ("claimant_tenure_years",),
    ),
    _cat("line_of_business", "policy", "Line of business"),
    _cat("incident_type", "claim", "Incident type"),
    _cat("incident_severity", "claim", "Severity"),
    _cat("channel", "claim", "Reported through"),
    _cat("region", "claim", "Region"),
    _cat("fault", "claim", "Liability declared"),
    _cat("cover_type", "policy", "Cover"),
    _cat("provider_type", "provider", "Provider type"),
    _cat("payee_type", "payee", "Paid to"),
    _cat("vehicle_make", "claim", "Vehicle make"),
    _cat("vehicle_category", "claim", "Vehicle category"),
    # --- the claimant's, policy's, provider's and payee's history, strictly before the report ----
    _num(
        "claimant_claims_90d",
        "claimant",
        "history",
        "Claims by this claimant in the previous 90 days",
        "{value:.0f} claims by this claimant in the last 90 days",
        _CL,
        +1,
    ),
    _num(
        "claimant_claims_365d",
        "claimant",
        "history",
        "Claims by this claimant in the previous 12 months",
        "{value:.0f} claims by this claimant in the last 12 months",
        _CL,
        +1,
    ),
    _num(
        "claimant_claims_3y",
        "claimant",
        "history",
        "Claims by this claimant in the previous 3 years",
        "{value:.0f} claims by this claimant in the last 3 years",
        _CL,
        +1,
    ),
    _num(
        "claimant_amount_365d",
        "claimant",
        "history",
        "Amount claimed by this claimant in the previous 12 months",
        "{value:,.0f} claimed by this claimant in the last 12 months",
        _CL + ("claimed_amount",),
    ),
    _num(
        "claimant_days_since_last_claim",
        "claimant",
        "history",
        "Days since this claimant's previous claim",
        "{value:.0f} days since this claimant's previous claim",
        _CL,
    ),
    _num(
        "claimant_prior_investigations",
        "claimant",
        "history",
        "This claimant's earlier claims investigated (decided before this report)",
        "{value:.0f} earlier claims by this claimant were investigated",
        _CL + _DECIDED,
        +1,
    ),
    _num(
        "claimant_prior_fraud",
        "claimant",
        "history",
        "This claimant's earlier claims confirmed as fraud (decided before this report)",
        "{value:.0f} earlier claims by this claimant were confirmed fraud",
        _CL + _DECIDED,
        +1,
    ),
    _num(
        "policy_prior_claims",
        "policy",
        "history",
        "Earlier claims on this policy",
        "{value:.0f} earlier claims on this policy",
        ("policy_id", "report_date"),
        +1,
    ),
    _num(
        "provider_claims_365d",
        "provider",
        "history",
        "Claims naming this provider in the previous 12 months",
        "{value:.0f} claims named this provider in the last 12 months",
        ("provider_id", "report_date"),
    ),
    _num(
        "provider_referral_rate_365d",
        "provider",
        "history",
        "Share of this provider's claims investigated in the previous 12 months (smoothed)",
        "{value:.1%} of this provider's recent claims were investigated",
        ("provider_id", "report_date") + _DECIDED,
    ),
    _num(
        "provider_fraud_rate_365d",
        "provider",
        "history",
        "Share of this provider's claims confirmed as fraud in the previous 12 months (smoothed)",
        "{value:.1%} of this provider's recent claims were confirmed fraud",
        ("provider_id", "report_date") + _DECIDED,
        +1,
    ),
    _num(
        "payee_claims_365d",
        "payee",
        "history",
        "Claims paid to this account in the previous 12 months",
        "{value:.0f} claims were to be paid into this account in the last 12 months",
        ("payee_account", "report_date"),
    ),
    _num(
        "payee_fraud_rate_365d",
        "payee",
        "history",
        "Share of claims to this account confirmed as fraud in the previous 12 months (smoothed)",
        "{value:.1%} of recent claims to this account were confirmed fraud",
        ("payee_account", "report_date") + _DECIDED,
        +1,
    ),
    # --- links between claimants through shared identifiers -------------------------------------
    _num(
        "phone_claimants_365d",
        "link",
        "link",
        "Other claimants who gave this phone in the previous 12 months",
        "{value:.0f} other claimants gave this phone number in the last 12 months",
        _CL + ("phone",),
        +1,
    ),
    _num(
        "account_claimants_365d",
        "link",
        "link",
        "Other claimants who gave this bank account in the previous 12 months",
        "{value:.0f} other claimants gave this bank account in the last 12 months",
        _CL + ("payee_account",),
        +1,
    ),
    _num(
        "address_claimants_365d",
        "link",
        "link",
        "Other claimants who gave this address in the previous 12 months",
        "{value:.0f} other claimants gave this address in the last 12 months",
        _CL + ("address",),
        +1,
    ),
    _num(
        "provider_claimants_365d",
        "link",
        "link",
        "Other claimants of this provider in the previous 12 months",
        "{value:.0f} other claimants used this provider in the last 12 months",
        _CL + ("provider_id",),
    ),
    _num(
        "group_size",
        "link",
        "link",
        "Claimants in this claimant's linked group (joined through shared phones, accounts, addresses)",
        "Linked to a group of {value:.0f} claimants through shared contact or bank details",
        _CL,
        needs_any=LINK_IDENTIFIERS,
    ),
    _num(
        "group_prior_fraud",
        "link",
        "link",
        "Confirmed fraud in the linked group, decided before this report",
        "{value:.0f} confirmed frauds in this claimant's linked group",
        _CL + _DECIDED,
        +1,
        needs_any=LINK_IDENTIFIERS,
    ),
)

BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
if len(BY_NAME) != len(FEATURES):  # pragma: no cover - guards the single source of truth
    raise RuntimeError("feature names in the catalog must be unique")


def extra_feature(column: str, type_: str, description: str) -> Feature:
    """Catalog entry for a source's ``x_`` extra (ordinal and float extras are numeric)."""
    kind: Kind = "categorical" if type_ == "category" else "numeric"
    reason = description + (": {value}" if kind == "categorical" else ": {value:g}")
    return Feature(column, "claim", kind, "extra", description, reason, (column,))

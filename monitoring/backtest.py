"""What a routing policy would have done to a book of past claims: route shares, SIU load against
capacity, fraud caught, fast-track leakage, cycle time and total claim cost, side by side for
several policies, and the thresholds that cost least under the insurer's constraints.

**What is known and what is estimated.** Most claims are never investigated, so confirmed fraud is
a lower bound of fraud. Each figure about fraud comes three ways:

- ``observed``: confirmed fraud only (a lower bound);
- ``estimated``: each claim's probability of fraud. An investigated claim confirmed as fraud is
  fraud; otherwise the probability is the confirmed rate among investigated claims with a similar
  fraud score (an isotonic fit of confirmed fraud on the score), over the cost model's
  ``detection_rate`` (investigations confirm only part of the fraud they look at), and for an
  investigated claim found not fraudulent, what that leaves (``r(1-d) / (1-rd)``). Claims nobody
  investigated are assumed as often fraudulent as investigated claims with the same score;
  investigations also follow hunches the score does not see, so this tends to overstate their fraud;
- an interval from the observed figure to the estimate plus two standard deviations (the claims'
  probabilities as independent Bernoulli draws).

On synthetic claims, where ``true_fraud`` is known, the truth is reported beside them.

Money: a claim is paid its settled amount (its claimed amount where not settled); a fraud the SIU
catches saves ``fraud_saved_share`` of its amount; handling and investigation costs come from the
cost model (:mod:`monitoring.costs`), as do the working days per route that give cycle times.
Everything here is vectorised: a million claims and a hundred policies in seconds.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from monitoring.costs import CostModel
from serving.model.routing import ROUTES, RoutingPolicy, rule_mask

Z = 2.0
"""Standard deviations above the estimate for the interval's upper end."""


@dataclass
class Book:
    """The claims a backtest replays, with everything a policy's figures need."""

    features: pd.DataFrame
    """Routing inputs (the policy's ``reads``) per claim."""
    scores: dict[str, dict[str, np.ndarray]]
    """Model name (e.g. ``champion``, ``v7``) -> task -> calibrated scores."""
    line: np.ndarray
    """Line of business per claim, as codes into :attr:`lines`."""
    lines: list[str]
    amount: np.ndarray
    """Claimed amount (NaN where unknown)."""
    paid: np.ndarray
    """Settled amount where settled, else claimed amount (what the claim costs if paid)."""
    confirmed: np.ndarray
    """1 confirmed fraud, 0 investigated and not fraud, NaN not investigated or pending."""
    fraud_probability: np.ndarray
    """Each claim's estimated probability of fraud (see the module docstring)."""
    weeks: float
    """Span of the claims' report dates in weeks (for referrals per week)."""
    reported: np.ndarray | None = None
    """Report dates (``datetime64[D]``), for calendar days to payment."""
    truth: np.ndarray | None = None
    """Synthetic data only: the claim really was fraudulent."""
    red_flag_score: float = 1.0
    fired: dict[str, np.ndarray] = field(default_factory=dict)
    """Routing rules' masks on these claims (computed once)."""
    flagged: dict[str, np.ndarray] = field(default_factory=dict)
    """Model -> red-flagged claims (a rule fired or a fraud score of at least ``red_flag_score``)."""

    def __len__(self) -> int:
        return len(self.line)


def make_book(
    claims: pd.DataFrame,
    features: pd.DataFrame,
    scores: Mapping[str, Mapping[str, np.ndarray]],
    policies: Iterable[RoutingPolicy],
    costs: CostModel,
    red_flag_score: float = 1.0,
) -> Book:
    """A book from canonical ``claims`` and their feature table (same rows), with every model's
    scores; the first model's fraud score bins the fraud estimate."""
    claims = claims.reset_index(drop=True)
    features = features.reset_index(drop=True)
    amount = _floats(claims, "claimed_amount")
    settled = _floats(claims, "settled_amount")
    investigated = _floats(claims, "investigated") == 1
    confirmed = np.where(investigated, _floats(claims, "fraud_confirmed"), np.nan)
    first = next(iter(scores.values()))
    score = first.get("fraud")
    probability = (
        estimate_fraud(confirmed, score, costs.detection_rate) if score is not None else np.nan_to_num(confirmed)
    )
    fired: dict[str, np.ndarray] = {}
    for policy in policies:
        for rule in policy.rules:
            if rule.name not in fired:
                fired[rule.name] = rule_mask(rule, features)
    reported = pd.to_datetime(claims["report_date"])
    span = (reported.max() - reported.min()) / pd.Timedelta(days=7) if len(claims) else 0.0
    truth = _floats(claims, "true_fraud") if "true_fraud" in claims and claims["true_fraud"].notna().any() else None
    codes, lines = pd.factorize(claims["line_of_business"].astype("str"), sort=True)
    ruled = np.zeros(len(claims), dtype=bool)
    for mask in fired.values():
        ruled |= mask
    flagged = {
        name: ruled | (np.asarray(s["fraud"]) >= red_flag_score) if s.get("fraud") is not None else ruled
        for name, s in scores.items()
    }
    return Book(
        features=features,
        scores={name: dict(s) for name, s in scores.items()},
        line=codes.astype(np.int64),
        lines=[str(v) for v in lines],
        amount=amount,
        paid=np.where(np.isnan(settled), np.nan_to_num(amount), settled),
        confirmed=confirmed,
        fraud_probability=probability,
        weeks=max(float(span), 1.0),
        reported=reported.to_numpy().astype("datetime64[D]"),
        truth=truth,
        red_flag_score=red_flag_score,
        fired=fired,
        flagged=flagged,
    )


def estimate_fraud(confirmed: np.ndarray, score: np.ndarray, detection_rate: float) -> np.ndarray:
    """Each claim's probability of fraud (the module docstring says how). The confirmed rate among
    investigated claims is an isotonic (non-decreasing) function of the score, fitted on them: a
    referred claim at the top of the scores gets the rate of claims like it, not of a wide bin."""
    from sklearn.isotonic import IsotonicRegression

    score = np.asarray(score, dtype=np.float64)
    known = ~np.isnan(confirmed) & ~np.isnan(score)
    if known.sum() >= 2 and len(np.unique(confirmed[known])) > 1:
        fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(score[known], confirmed[known])
        rate = fit.predict(np.nan_to_num(score, nan=float(np.nanmedian(score))))
    else:
        rate = np.full(len(score), float(confirmed[known].mean()) if known.any() else 0.0)
    r = np.minimum(rate / detection_rate, 1.0)  # P(fraud | investigated, score)
    missed = r * (1 - detection_rate) / np.maximum(1 - r * detection_rate, 1e-12)
    return np.where(confirmed == 1, 1.0, np.where(confirmed == 0, missed, r))


@dataclass(frozen=True)
class Scenario:
    name: str
    policy: RoutingPolicy
    model: str
    """Which model's scores (a key of :attr:`Book.scores`)."""


def evaluate(book: Book, scenario: Scenario, costs: CostModel, capacity_per_week: float | None = None) -> dict:
    """Every figure of one policy on the book (plain floats; see the module docstring)."""
    s = book.scores[scenario.model]
    routes, _ = scenario.policy.route_table(
        book.features, s.get("fraud"), s.get("fast_track"), fired=book.fired, with_names=False
    )
    return figures(book, routes, book.flagged[scenario.model], costs, capacity_per_week)


def figures(
    book: Book, routes: np.ndarray, flagged: np.ndarray, costs: CostModel, capacity_per_week: float | None
) -> dict:
    n = len(book)
    route = np.zeros(n, dtype=np.int64)
    for i, r in enumerate(ROUTES[1:], start=1):
        route[routes == r] = i
    cell = book.line * len(ROUTES) + route  # (line, route) -> its costs, looked up in tables
    tables = _cost_tables(book, costs)
    handling, days = tables["handling"][cell], tables["days"][cell]
    investigation, saved_share, slipped = (tables[k][book.line] for k in ("investigation", "saved", "slipped"))
    referred, fast = routes == "siu_referral", routes == "fast_track"
    p, c = book.fraud_probability, book.confirmed == 1
    out: dict = {"claims": n}
    for r in ROUTES:
        out[f"share_{r}"] = float((routes == r).mean()) if n else float("nan")
    out["siu_referrals"] = int(referred.sum())
    out["siu_per_week"] = referred.sum() / book.weeks
    out["siu_capacity_per_week"] = capacity_per_week
    out["siu_over_capacity"] = bool(capacity_per_week is not None and out["siu_per_week"] > capacity_per_week + 1e-9)
    investigated = ~np.isnan(book.confirmed)
    out["hit_rate_observed"] = _rate(c[referred & investigated].sum(), (referred & investigated).sum())
    out["hit_rate_estimated"] = _rate(p[referred].sum(), referred.sum())
    out |= _counted("fraud_caught", referred, c, p, book)
    out |= _counted("leakage", fast, c, p, book)
    out["leakage_rate_estimated"] = _rate(p[fast].sum(), fast.sum())
    # training's leakage cap is on this rate: confirmed fraud among fast-tracked claims
    out["leakage_rate_observed"] = _rate((c & fast).sum(), fast.sum())
    out["cycle_days_mean"] = float(days.mean()) if n else float("nan")
    out["cycle_days_p90"] = _p90(tables["days"], np.bincount(cell, minlength=len(tables["days"])))
    out["calendar_days_mean"] = _calendar_days(book, days, costs)
    fraud_lost = float((p * book.paid)[~referred].sum())
    saved = float((p * book.paid * saved_share)[referred].sum())
    out["cost_payments"] = float(book.paid.sum()) - saved
    out["cost_handling"] = float(handling.sum())
    out["cost_investigations"] = float(investigation[referred].sum())
    out["cost_slipped_fraud"] = float((p * slipped)[~referred].sum())
    out["fraud_lost_amount"] = fraud_lost
    out["fraud_saved_amount"] = saved
    out["cost_total"] = (
        out["cost_payments"] + out["cost_handling"] + out["cost_investigations"] + out["cost_slipped_fraud"]
    )
    out["red_flags"] = int(flagged.sum())
    out["red_flags_to_person"] = _rate((flagged & ~fast).sum(), flagged.sum())
    return out


def compare(
    book: Book, scenarios: Sequence[Scenario], costs: CostModel, capacity_per_week: float | None
) -> pd.DataFrame:
    """One row per scenario (the first is the baseline), with each cost's change against it."""
    rows = [{"policy": s.name, "model": s.model, **evaluate(book, s, costs, capacity_per_week)} for s in scenarios]
    frame = pd.DataFrame(rows)
    base = frame["cost_total"].iloc[0]
    frame["cost_change"] = frame["cost_total"] - base
    frame["cost_change_share"] = frame["cost_change"] / base if base else np.nan
    return frame


# --- sweeping and optimising ---------------------------------------------------------------------


SWEPT = ("siu_threshold", "fast_track_threshold", "fast_track_amount_limit")


def grid(book: Book, base: RoutingPolicy, model: str, steps: int = 5) -> list[RoutingPolicy]:
    """Policies around ``base``: SIU thresholds at fraud-score quantiles (1% to 10% of claims referred
    by score), fast-track thresholds from 0.3 to 0.9, amount limits from half to twice the base's:
    ``steps`` values each, every combination (``steps ** 3`` policies)."""
    s = book.scores[model]
    fraud = s.get("fraud")
    siu = (
        np.quantile(fraud, 1 - np.linspace(0.01, 0.10, steps))
        if fraud is not None and base.siu_threshold is not None
        else [None]
    )
    fast = np.linspace(0.3, 0.9, steps) if base.fast_track_threshold is not None else [None]
    limits = base.fast_track_amount_limit * np.geomspace(0.5, 2.0, steps)
    out = []
    for a, b, c in itertools.product(siu, fast, limits):
        out.append(
            dataclasses.replace(
                base,
                siu_threshold=None if a is None else float(a),
                fast_track_threshold=None if b is None else float(b),
                fast_track_amount_limit=float(c),
                expected_kpis={},
            )
        )
    return out


@dataclass(frozen=True)
class Constraints:
    capacity_per_week: float | None = None
    leakage_cap: float | None = None
    """Largest confirmed-fraud rate among fast-tracked claims (training's measure, which its cap is
    set on; the estimated rate leans high, see the module docstring)."""
    cycle_days: float | None = None
    """Largest average working days from report to payment."""

    def met(self, row: Mapping) -> bool:
        return not self.broken(row)

    def broken(self, row: Mapping) -> list[str]:
        out = []
        if self.capacity_per_week is not None and row["siu_per_week"] > self.capacity_per_week + 1e-9:
            out.append(f"SIU {row['siu_per_week']:.1f}/week > capacity {self.capacity_per_week:.1f}")
        rate = row["leakage_rate_observed"]
        if self.leakage_cap is not None and rate == rate and rate > self.leakage_cap + 1e-12:
            out.append(f"leakage {rate:.2%} > cap {self.leakage_cap:.2%}")
        if self.cycle_days is not None and row["cycle_days_mean"] > self.cycle_days + 1e-9:
            out.append(f"cycle {row['cycle_days_mean']:.1f} days > {self.cycle_days:.1f}")
        return out


@dataclass
class BacktestResult:
    """A backtest's outcome: the policies side by side, the sweep, the cheapest feasible policy."""

    table: pd.DataFrame
    swept: pd.DataFrame | None
    best: RoutingPolicy | None
    best_row: pd.Series | None
    constraints: Constraints
    book: Book


def sweep(
    book: Book, policies: Sequence[RoutingPolicy], model: str, costs: CostModel, constraints: Constraints
) -> pd.DataFrame:
    """Every policy's figures and its thresholds, and whether it meets the constraints."""
    rows = []
    for i, policy in enumerate(policies):
        row = evaluate(book, Scenario(f"sweep-{i}", policy, model), costs, constraints.capacity_per_week)
        rows.append({"policy": f"sweep-{i}", **{k: getattr(policy, k) for k in SWEPT}, **row})
    frame = pd.DataFrame(rows)
    frame["feasible"] = [constraints.met(r) for r in frame.to_dict("records")]
    return frame


def optimise(swept: pd.DataFrame, policies: Sequence[RoutingPolicy]) -> tuple[RoutingPolicy, pd.Series] | None:
    """The feasible policy of least total cost (None when none is feasible)."""
    feasible = swept[swept["feasible"]]
    if not len(feasible):
        return None
    best = feasible["cost_total"].idxmin()
    return policies[int(best)], swept.loc[best]


# --- helpers -------------------------------------------------------------------------------------


def _cost_tables(book: Book, costs: CostModel) -> dict[str, np.ndarray]:
    """Handling cost and working days per (line, route) cell (``line * len(ROUTES) + route``), and
    investigation cost, saved share and slipped-fraud cost per line."""
    per_line = [costs.for_line(line) for line in book.lines]
    return {
        "handling": np.array([c.routes[r].handling for c in per_line for r in ROUTES], dtype=np.float64),
        "days": np.array([c.routes[r].days for c in per_line for r in ROUTES], dtype=np.float64),
        "investigation": np.array([c.investigation for c in per_line], dtype=np.float64),
        "saved": np.array([c.fraud_saved_share for c in per_line], dtype=np.float64),
        "slipped": np.array([c.slipped_fraud_cost for c in per_line], dtype=np.float64),
    }


def _calendar_days(book: Book, days: np.ndarray, costs: CostModel) -> float:
    """Mean calendar days from report to payment: each claim's working days counted on the insurer's
    calendar from its report date (a report on a non-working day counts from the next working day)."""
    if book.reported is None or not len(days):
        return float("nan")
    ok = ~np.isnat(book.reported)
    paid = np.busday_offset(
        book.reported[ok], np.rint(days[ok]).astype(np.int64), roll="forward",
        weekmask=costs.weekmask, holidays=list(costs.holidays),
    )  # fmt: skip
    return float((paid - book.reported[ok]).astype(np.int64).mean()) if ok.any() else float("nan")


def _p90(values: np.ndarray, counts: np.ndarray) -> float:
    """The 90th percentile of ``values`` each taken ``counts`` times: the smallest value at or below
    which 90% of the claims lie (the inverted distribution function: cycle days take few values)."""
    if not counts.sum():
        return float("nan")
    order = np.argsort(values, kind="stable")
    share = np.cumsum(counts[order]) / counts.sum()
    return float(values[order][np.searchsorted(share, 0.9 - 1e-12)])


def _counted(name: str, mask: np.ndarray, confirmed: np.ndarray, p: np.ndarray, book: Book) -> dict:
    """Observed (confirmed), estimated, interval and (synthetic) true count and amount in ``mask``."""
    est = float(p[mask].sum())
    sd = float(np.sqrt((p * (1 - p))[mask].sum()))
    observed = int((confirmed & mask).sum())
    out = {
        f"{name}_observed": observed,
        f"{name}_estimated": est,
        f"{name}_low": float(observed),
        f"{name}_high": est + Z * sd,
        f"{name}_observed_amount": float(np.nansum(book.amount[confirmed & mask])),
        f"{name}_estimated_amount": float(np.nansum((p * book.amount)[mask])),
    }
    if book.truth is not None:
        out[f"{name}_true"] = int(np.nansum(book.truth[mask]))
    return out


def _rate(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


def _floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column].astype("Float64"), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)

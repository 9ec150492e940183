"""Poisoned training data never becomes champion: a challenger's training table and behaviour are
compared with the champion's, and what moved beyond its limit is named.

Training records a profile of its table (:func:`data_profile`: claims and label rates per month,
the share of claims that duplicate another's notice fields) beside the monitoring reference. A
challenger trained while a champion exists is compared with it (:func:`findings`):

- **labels rewritten**: a month both tables hold, mature when the champion trained (at least
  ``recent_months`` before its last month), whose label rate moved beyond chance (``sigmas``
  standard errors, at least ``min_rate_change`` and by a factor of ``rate_ratio``): the past was
  relabelled;
- **labels flipped lately**: the table's last ``recent_months`` months against the twelve before
  them, by the same test: the latest labels are out of line with the table's own history;
- **duplicates**: more than ``max_duplicate_share`` of claims repeat another claim's notice fields;
- **features shifted**: a feature of the challenger's test period against the champion's
  reference, Wasserstein distance over the champion's standard deviation (numbers) or
  Jensen-Shannon distance (categories) beyond ``feature_shift``;
- **behaviour**: a route's share of the same test claims under the challenger against the champion
  beyond ``route_share_change``.

``claimscore promote`` refuses a challenger with findings, naming each; ``--override "why"``
promotes it anyway and records why.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.spatial.distance import jensenshannon

from features import schema
from monitoring.reference import LEVELS, TAIL, Reference


class PoisoningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sigmas: float = Field(4.0, gt=0)
    """Standard errors a month's label rate may move before it counts as rewritten or flipped."""
    min_rate_change: float = Field(0.01, ge=0, le=1)
    """Smallest change of a label rate that counts, whatever the standard error."""
    rate_ratio: float = Field(1.5, gt=1)
    """Smallest ratio between two label rates that counts. Recent labels are immature (a claim that
    settles simply is labelled sooner than a disputed one: the last months' fast-track rate runs
    high, 57% against 49% on the synthetic data), so a move must be large as well as significant."""
    recent_months: int = Field(3, ge=1)
    max_duplicate_share: float = Field(0.01, ge=0, le=1)
    feature_shift: float = Field(0.25, gt=0)
    route_share_change: float = Field(0.1, gt=0, le=1)


def data_profile(frame: pd.DataFrame) -> dict:
    """Claims and label rates per report month, and the share of duplicated claims."""
    month = pd.to_datetime(frame["report_date"]).dt.strftime("%Y-%m").to_numpy()
    out: dict = {"rows": len(frame), "duplicate_share": duplicate_share(frame), "months": {}}
    labels = {
        task: frame[column].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
        for task, column in schema.LABELS.items()
        if column in frame
    }
    for m in sorted(set(month)):
        at = month == m
        row: dict = {"claims": int(at.sum())}
        for task, y in labels.items():
            known = at & ~np.isnan(y)
            row[task] = [int(known.sum()), float(y[known].sum())]
        out["months"][m] = row
    return out


def duplicate_share(frame: pd.DataFrame) -> float:
    """Share of claims whose notice fields (all but the claim id) repeat an earlier claim's."""
    columns = [c for c in schema.NOTICE if c != "claim_id" and c in frame and frame[c].notna().any()]
    if not columns or not len(frame):
        return 0.0
    return float(frame.duplicated(subset=columns, keep="first").mean())


def findings(
    new: Mapping,
    old: Mapping | None,
    new_reference: Reference,
    old_reference: Reference | None,
    route_shares: Mapping[str, Mapping[str, float]] | None,
    cfg: PoisoningConfig,
) -> list[str]:
    """What moved beyond its limit, one readable line each (see the module docstring)."""
    lines: list[str] = []
    if old is not None:
        mature = sorted(old["months"])[: -cfg.recent_months]  # labels still arriving then are not compared
        for month, row in new["months"].items():
            before = old["months"].get(month) if month in mature else None
            if before is None:
                continue
            for task in ("fraud", "fast_track"):
                if task in row and task in before:
                    moved = _moved(row[task], before[task], cfg)
                    if moved:
                        lines.append(f"{task} label rate of {month}: {moved} when the champion trained (relabelled?)")
    months = sorted(new["months"])
    recent, earlier = months[-cfg.recent_months :], months[-cfg.recent_months - 12 : -cfg.recent_months]
    for task in ("fraud", "fast_track"):
        late = _pooled(new, recent, task)
        before = _pooled(new, earlier, task)
        moved = _moved(late, before, cfg) if late and before else None
        if moved:
            lines.append(
                f"{task} label rate of the last {len(recent)} months ({recent[0]} to {recent[-1]}): {moved} in the "
                f"{len(earlier)} months before (labels flipped?)"
            )
    if new["duplicate_share"] > cfg.max_duplicate_share:
        lines.append(
            f"{new['duplicate_share']:.1%} of claims repeat another claim's notice fields "
            f"(limit {cfg.max_duplicate_share:.1%}: duplicated rows?)"
        )
    if old_reference is not None:
        lines += [
            f"{name} shifted {distance:.2f} ({method}) against the champion's reference (limit {cfg.feature_shift:g})"
            for name, method, distance in reference_shift(new_reference, old_reference)
            if distance > cfg.feature_shift
        ]
    for route, (challenger, champion) in (route_shares or {}).items():
        if abs(challenger - champion) > cfg.route_share_change:
            lines.append(
                f"{route} share of the test claims {challenger:.1%} against the champion's {champion:.1%} "
                f"(limit {cfg.route_share_change:.0%})"
            )
    return lines


def reference_shift(new: Reference, old: Reference) -> list[tuple[str, str, float]]:
    """Each feature both references summarise: its distance from ``old`` to ``new``."""
    out = []
    for name, a in new.numeric.items():
        b = old.numeric.get(name)
        if not b or not a.get("quantiles") or not b.get("quantiles"):
            continue
        d = np.abs(np.asarray(a["quantiles"]) - np.asarray(b["quantiles"]))
        distance = np.trapezoid(d[1:-1], LEVELS[1:-1]) + TAIL * float(np.abs(np.subtract(a["tails"], b["tails"])).sum())
        scale = b["std"] if b["std"] else 1e-3 * max(abs(b["mean"] or 0.0), 1.0)
        out.append((name, "Wasserstein/std", float(distance / scale)))
    for name, a in new.categorical.items():
        b = old.categorical.get(name)
        if not b:
            continue
        keys = sorted(set(a["frequencies"]) | set(b["frequencies"]))
        p = np.array([a["frequencies"].get(k, 0.0) for k in keys] + [a.get("other", 0.0)])
        q = np.array([b["frequencies"].get(k, 0.0) for k in keys] + [b.get("other", 0.0)])
        if p.sum() and q.sum():
            out.append((name, "Jensen-Shannon", float(jensenshannon(p / p.sum(), q / q.sum(), base=2))))
    return sorted(out, key=lambda t: -t[2])


def _pooled(profile: Mapping, months: list[str], task: str) -> list[float] | None:
    rows = [profile["months"][m][task] for m in months if task in profile["months"][m]]
    if not rows:
        return None
    n, positives = sum(r[0] for r in rows), sum(r[1] for r in rows)
    return [n, positives] if n else None


def _moved(a: list[float], b: list[float], cfg: PoisoningConfig) -> str | None:
    """``"x% against y%"`` when two label counts ``[labelled, positives]`` differ beyond chance."""
    (na, pa), (nb, pb) = a, b
    if not na or not nb:
        return None
    ra, rb = pa / na, pb / nb
    pooled = (pa + pb) / (na + nb)
    se = np.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / na + 1 / nb))
    ratio = max(ra, rb) / max(min(ra, rb), 1e-12)
    if abs(ra - rb) > max(cfg.sigmas * se, cfg.min_rate_change) and ratio >= cfg.rate_ratio:
        return f"{ra:.1%} of {int(na):,} against {rb:.1%} of {int(nb):,}"
    return None

"""The backtest report: the policies side by side, and the sweep's frontiers (fraud caught against
SIU load, fast-track share against leakage, cost against cycle time), one self-contained HTML file."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from monitoring.backtest import BacktestResult
from monitoring.report import PAGE, figure, svg, table

SHOWN = {
    "share_fast_track": "fast-track share",
    "share_standard": "standard share",
    "share_specialist": "specialist share",
    "share_siu_referral": "SIU referral share",
    "siu_per_week": "SIU referrals per week",
    "siu_capacity_per_week": "SIU capacity per week",
    "hit_rate_observed": "hit rate (confirmed, of investigated referrals)",
    "hit_rate_estimated": "hit rate (estimated)",
    "fraud_caught_observed": "fraud caught (confirmed: lower bound)",
    "fraud_caught_estimated": "fraud caught (estimated)",
    "fraud_caught_high": "fraud caught (upper end)",
    "fraud_caught_true": "fraud caught (truth, synthetic data)",
    "fraud_caught_estimated_amount": "fraud caught, amount (estimated)",
    "leakage_observed": "fast-track leakage (confirmed)",
    "leakage_estimated": "fast-track leakage (estimated)",
    "leakage_high": "fast-track leakage (upper end)",
    "leakage_true": "fast-track leakage (truth, synthetic data)",
    "leakage_estimated_amount": "fast-track leakage, amount (estimated)",
    "leakage_rate_observed": "fast-track leakage rate (confirmed)",
    "cycle_days_mean": "cycle time, mean working days",
    "cycle_days_p90": "cycle time, 90th percentile",
    "calendar_days_mean": "calendar days to payment, mean (the insurer's calendar)",
    "cost_payments": "payments (after fraud saved)",
    "cost_handling": "handling",
    "cost_investigations": "investigations",
    "cost_slipped_fraud": "slipped fraud (beyond its amount)",
    "cost_total": "total claim cost",
    "cost_change": "change against the first policy",
    "cost_change_share": "change against the first policy (share)",
    "red_flags_to_person": "red-flagged claims that reached a person",
}
"""Figures of the side-by-side table, in order, with their labels."""


def side_by_side(frame: pd.DataFrame) -> pd.DataFrame:
    """Figures as rows, policies as columns (what the terminal and the report show)."""
    rows = [k for k in SHOWN if k in frame.columns]
    out = frame.set_index("policy")[rows].T
    out.index = [SHOWN[k] for k in rows]
    return out


def write_report(result: BacktestResult, folder: Path) -> Path:
    parts = [
        "<h1>ClaimScore routing backtest</h1>",
        f"<p>{len(result.book):,} claims over {result.book.weeks:.0f} weeks. Fraud is counted three ways: "
        "confirmed (a lower bound: most claims are never investigated), estimated (each claim's probability "
        "of fraud from the confirmed rate of investigated claims with a similar score, over the detection "
        "rate: it leans high) and the interval between; on synthetic data the truth is shown beside them.</p>",
        table(side_by_side(result.table).reset_index(names="figure")),
    ]
    if result.swept is not None:
        s = result.swept
        parts.append(f"<h2>Sweep: {len(s)} policies, {int(s['feasible'].sum())} within the constraints</h2>")
        plots = {
            "frontier-fraud-caught": _frontier(
                s, "siu_per_week", "fraud_caught_estimated", "fraud caught against SIU load"
            ),
            "frontier-leakage": _frontier(
                s, "leakage_rate_observed", "share_fast_track", "fast-track share against leakage"
            ),
            "frontier-cost": _frontier(s, "cycle_days_mean", "cost_total", "cost against cycle time"),
        }
        for name, figure_html in plots.items():  # each also as a picture of its own (for documents)
            start, end = figure_html.find("<svg"), figure_html.rfind("</svg>") + len("</svg>")
            (Path(folder) / f"{name}.svg").write_text(figure_html[start:end], encoding="utf-8")
        parts.append("<div class='plots'>" + "".join(plots.values()) + "</div>")
        if result.best_row is not None:
            parts.append("<h3>The cheapest policy within the constraints (policy.json)</h3>")
            parts.append(table(pd.DataFrame([result.best_row])))
        else:
            parts.append("<p>No policy of the sweep meets every constraint.</p>")
    path = Path(folder) / "report.html"
    path.write_text(PAGE.format(title=html.escape("ClaimScore routing backtest"), body="\n".join(parts)))
    return path


def _frontier(swept: pd.DataFrame, x: str, y: str, title: str) -> str:
    fig, ax = figure(title)
    ok = swept["feasible"]
    ax.scatter(swept.loc[~ok, x], swept.loc[~ok, y], s=10, color="#bbb", label="breaks a constraint")
    ax.scatter(swept.loc[ok, x], swept.loc[ok, y], s=12, color="#5470c6", label="within the constraints")
    ax.set_xlabel(x.replace("_", " "), fontsize=7)
    ax.set_ylabel(y.replace("_", " "), fontsize=7)
    ax.legend(fontsize=6)
    return svg(fig)

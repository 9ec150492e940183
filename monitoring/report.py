"""The monitoring report a person reads: one self-contained HTML file (plots inline as SVG, no
scripts, nothing fetched), written beside ``summary.json``.

Sections follow the summary: the alerts first, then drift (the most drifted features ranked, their
reference and current distributions drawn), data quality, performance as labels arrive (estimated
and measured against the test period, calibration), fairness with intervals, and the KPIs over time.
"""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitoring import drift
from monitoring.monitor import REPORT_FILE, Summary
from monitoring.reference import Reference
from monitoring.window import Window

PLOTTED = 6
"""Drifted features drawn (the rest are in the table)."""
_e = html.escape


def write_report(summary: Summary, window: Window, reference: Reference, folder: Path) -> Path:
    d = summary.to_dict()
    parts = [
        _header(d, summary),
        _drift(d, window, reference),
        _quality(d),
        _performance(d),
        _fairness(d),
        _kpis(d),
    ]
    page = PAGE.format(
        title=_e(f"ClaimScore monitoring: {d['window'].get('period') or d['window']['kind']}"), body="\n".join(parts)
    )
    path = Path(folder) / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path


# --- sections ------------------------------------------------------------------------------------


def _header(d: dict, summary: Summary) -> str:
    w = d["window"]
    facts = [
        ("claims", f"{w['claims']:,}"),
        ("from", w.get("source", w["kind"])),
        ("decided", f"{w.get('first_decision')} to {w.get('last_decision')}"),
        ("judged as of", w.get("as_of")),
        ("models", w.get("models", "")),
        ("reference", f"test period {d['reference'].get('period', '?')}"),
        ("generated", d["generated_at"]),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(str(v))}</td></tr>" for k, v in facts)
    if summary.alerts:
        alerts = "".join(f'<li class="alert">{_e(a.message)}</li>' for a in summary.alerts)
        verdict = f'<p class="fail" id="verdict">{len(summary.alerts)} alert(s)</p><ul id="alerts">{alerts}</ul>'
    else:
        verdict = '<p class="pass" id="verdict">No alerts: nothing crossed its threshold.</p>'
    return f"<h1>ClaimScore monitoring</h1><table class='facts'>{rows}</table>{verdict}"


def _drift(d: dict, window: Window, reference: Reference) -> str:
    dr = d["drift"]
    feats = pd.DataFrame(dr["features"])
    out = ["<h2 id='drift'>Drift</h2>"]
    if len(feats):
        drifted = int(feats["drifted"].sum())
        out.append(
            f"<p>{drifted} of {len(feats)} features drifted ({dr['drifted_share']:.0%}); the data set drifts from "
            f"{d['thresholds']['drift']['dataset_share']:.0%}. Methods as Evidently chooses them: distances from "
            f"{d['thresholds']['drift']['large_sample']:,} rows, tests below.</p>"
        )
    mv = dr.get("multivariate") or {}
    if mv:
        out.append(
            f"<p>Multivariate (reconstruction error from the reference's principal components): "
            f"{_num(mv.get('error'))} against {_num(mv.get('reference_error'))} in the reference, alert above "
            f"{_num(mv.get('threshold'))}: <b>{'drifted' if mv.get('drifted') else 'no drift'}</b>.</p>"
        )
    out.append("<h3>Scores</h3>" + table(pd.DataFrame(dr["scores"]), _DRIFT_COLUMNS))
    out.append("<h3>Routes</h3>" + table(pd.DataFrame(dr["routes"])))
    top = d["thresholds"]["drift"]["top"]
    out.append(f"<h3>Features, most drifted first (top {top})</h3>" + table(feats.head(top), _DRIFT_COLUMNS))
    plotted = feats[feats["drifted"]].head(PLOTTED)["feature"].tolist() if len(feats) else []
    plotted += [f"{task}_score" for task in window.scores]
    figures = [_distribution_plot(name, window, reference) for name in plotted]
    out.append("<div class='plots'>" + "".join(f for f in figures if f) + "</div>")
    return "\n".join(out)


_DRIFT_COLUMNS = [c for c in drift.COLUMNS if c not in ("drift_score", "null_rate_change_alert", "unseen")]
"""The drift table's columns as the report shows them."""


def _quality(d: dict) -> str:
    q = d["quality"]
    items = "".join(f"<li>{_e(line)}</li>" for line in q["failed"]) or "<li>every check passed</li>"
    return (
        f"<h2 id='quality'>Data quality</h2><p>{q['checks']} great-expectations checks on the notice fields of "
        f"{q['rows']:,} claims; {len(q['failed'])} failed. Full report: <code>{_e(Path(q['report']).name)}</code> "
        f"(beside this file's run folder).</p><ul>{items}</ul>"
    )


def _performance(d: dict) -> str:
    out = ["<h2 id='performance'>Performance as labels arrive</h2>"]
    for task, r in d["performance"].items():
        rows = []
        for metric in ("roc_auc", "average_precision", "precision_at_capacity", "calibration_error"):
            rows.append(
                {
                    "metric": metric,
                    "estimated (all claims)": (r["estimated"] or {}).get(metric),
                    "measured (labelled)": (r["measured"] or {}).get(metric),
                    "test period (estimated)": (r.get("test_estimated") or {}).get(metric),
                    "test period (measured)": (r["test"] or {}).get(metric),
                }
            )
        out.append(
            f"<h3>{_e(task)}</h3><p>{r['labelled']:,} of {r['claims']:,} claims labelled "
            f"(maturity {r['maturity']:.0%}), {r['positives']:,} positive. Estimated figures assume the scores "
            "stay calibrated (CBPE); measured ones cover the labelled claims only"
            + (", which for fraud are mostly the investigated ones" if task == "fraud" else "")
            + ".</p>"
            + table(pd.DataFrame(rows))
        )
        series = pd.DataFrame(r.get("series") or [])
        figs = []
        if len(series):
            figs.append(
                _series_plot(series, ["estimated_roc_auc", "measured_roc_auc", "maturity"], f"{task}: over time")
            )
        if r.get("calibration"):
            figs.append(_calibration_plot(pd.DataFrame(r["calibration"]), task))
        out.append("<div class='plots'>" + "".join(figs) + "</div>")
    return "\n".join(out)


def _fairness(d: dict) -> str:
    f = d["fairness"]
    rows = pd.DataFrame(f.get("rows") or [])
    t = d["thresholds"]["fairness"]
    out = [
        "<h2 id='fairness'>Fairness</h2><p>Each group's rate against the most favoured group's (1 = equal; "
        f"alert below {t['min_ratio']}), with {t['confidence']:.0%} bootstrap intervals. Groups too small to "
        "judge are shown, not judged.</p>"
    ]
    if len(rows):
        out.append("<div class='plots'>" + _fairness_plot(rows, d["thresholds"]["fairness"]["min_ratio"]) + "</div>")
        out.append(table(rows))
    return "\n".join(out)


def _kpis(d: dict) -> str:
    k = d["kpis"]
    overall = pd.DataFrame([{"kpi": key, "value": v} for key, v in _flat(k["overall"]).items()])
    series = pd.DataFrame(k.get("series") or [])
    out = [
        "<h2 id='kpis'>The insurer's KPIs</h2><p>Red flag: a rule fired or a fraud score of at least "
        f"{_num(k['red_flag_score'])}.</p>"
    ]
    if len(series):
        rates = [c for c in series.columns if c.endswith("rate") or c.endswith("share")]
        out.append("<div class='plots'>" + _series_plot(series, rates[:5], "KPIs over time") + "</div>")
    out.append(table(overall))
    return "\n".join(out)


# --- plots ---------------------------------------------------------------------------------------


def svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return "<figure>" + text[text.find("<svg") :] + "</figure>"


def figure(title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 2.9))
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    return fig, ax


def _distribution_plot(name: str, window: Window, reference: Reference) -> str:
    """Reference against current: cumulative distributions for numbers, shares for categories."""
    if name.endswith("_score") and name.removesuffix("_score") in window.scores:
        current = pd.Series(window.scores[name.removesuffix("_score")])
        ref = reference.scores.get(name.removesuffix("_score"))
    elif name in window.features:
        current = window.features[name]
        ref = reference.numeric.get(name) or reference.categorical.get(name)
    else:
        return ""
    if not ref:
        return ""
    fig, ax = figure(name)
    if "quantiles" in ref:
        levels = np.linspace(0, 1, len(ref["quantiles"]))
        ax.plot(ref["quantiles"], levels, label="reference", color="#5470c6")
        values = pd.to_numeric(current, errors="coerce").dropna().to_numpy(dtype=np.float64)
        if len(values):
            ax.plot(np.quantile(values, levels), levels, label="current", color="#ee6666")
        ax.set_ylabel("share of claims below", fontsize=7)
    else:
        freq = dict(ref.get("frequencies") or {})
        cur = current.astype("str").where(current.notna(), None).value_counts(normalize=True, dropna=True)
        cats = list(dict.fromkeys(list(freq)[:12] + list(cur.index[:4])))
        x = np.arange(len(cats))
        ax.bar(x - 0.2, [freq.get(c, 0.0) for c in cats], 0.4, label="reference", color="#5470c6")
        ax.bar(x + 0.2, [float(cur.get(c, 0.0)) for c in cats], 0.4, label="current", color="#ee6666")
        ax.set_xticks(x, cats, rotation=45, ha="right")
        ax.set_ylabel("share of claims", fontsize=7)
    ax.legend(fontsize=7)
    return svg(fig)


def _series_plot(series: pd.DataFrame, columns: list[str], title: str) -> str:
    fig, ax = figure(title)
    x = pd.to_datetime(series["period"])
    for c in columns:
        if c in series and series[c].notna().any():
            ax.plot(x, pd.to_numeric(series[c], errors="coerce"), marker="o", markersize=3, label=c.replace("_", " "))
    ax.legend(fontsize=6)
    fig.autofmt_xdate()
    return svg(fig)


def _calibration_plot(bins: pd.DataFrame, task: str) -> str:
    fig, ax = figure(f"{task}: calibration on labelled claims")
    top = max(float(bins["mean_score"].max()), float(bins["observed_rate"].max()), 1e-3)
    ax.plot([0, top], [0, top], color="#999", linestyle="--", linewidth=1)
    ax.plot(bins["mean_score"], bins["observed_rate"], marker="o", color="#5470c6")
    ax.set_xlabel("mean score", fontsize=7)
    ax.set_ylabel("observed rate", fontsize=7)
    return svg(fig)


def _fairness_plot(rows: pd.DataFrame, min_ratio: float) -> str:
    shown = rows[rows["ratio"].notna()].copy()
    if not len(shown):
        return ""
    fig, ax = figure("ratio to the most favoured group")
    fig.set_size_inches(6.5, max(2.5, 0.18 * len(shown)))
    labels = [f"{r.attribute}={r.group}: {r.metric}" for r in shown.itertuples()]
    y = np.arange(len(shown))
    low = (shown["ratio"] - shown["ratio_low"].fillna(shown["ratio"])).clip(lower=0)
    high = (shown["ratio_high"].fillna(shown["ratio"]) - shown["ratio"]).clip(lower=0)
    colors = ["#ee6666" if r < min_ratio else "#5470c6" for r in shown["ratio"]]
    ax.errorbar(shown["ratio"], y, xerr=[low, high], fmt="none", ecolor="#888", elinewidth=1)
    ax.scatter(shown["ratio"], y, c=colors, s=12, zorder=3)
    ax.axvline(min_ratio, color="#ee6666", linestyle="--", linewidth=1)
    ax.set_yticks(y, labels, fontsize=6)
    ax.set_xlim(0, 1.05)
    return svg(fig)


# --- tables --------------------------------------------------------------------------------------


def table(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    if frame is None or not len(frame):
        return "<p>(none)</p>"
    if columns:
        frame = frame[[c for c in columns if c in frame.columns]]
    head = "".join(f"<th>{_e(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(_cell(v))}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return f"{v:,.4f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def _num(v: Any) -> str:
    return _cell(v)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 12px; }}
th, td {{ border: 1px solid #ddd; padding: 3px 7px; text-align: left; }}
th {{ background: #f4f4f4; }}
.fail {{ color: #b00020; font-weight: 600; }} .pass {{ color: #1b7f3b; font-weight: 600; }}
li.alert {{ color: #b00020; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; border: 1px solid #eee; padding: 4px; }}
figure svg {{ max-width: 100%; height: auto; }}
</style></head><body>
{body}
</body></html>
"""

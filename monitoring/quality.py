"""Live data quality: the claims schema's great-expectations suite run on a window's inputs.

The same suite that guards training tables (:mod:`features.data.validation`: required fields and
identifiers present, null rates, ranges, allowed categories, date order, unique claim ids) runs on
what the window's claims said at notice. Outcomes are left out: a live window's labels are still
arriving, so label checks would only say that.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features import schema
from features.data.validation import validate_claims
from monitoring.alerts import Alert


def quality(claims: pd.DataFrame, report_dir: Path, name: str = "monitor-quality") -> dict:
    """Run the suite on the notice fields of ``claims``; the failed checks (one readable line each,
    personal values hidden), how many ran, and the HTML report's path."""
    inputs = claims.copy()
    for column in schema.OUTCOMES + tuple(f.name for f in schema.FIELDS if f.stage == "truth"):
        inputs[column] = schema.null_series(schema.BY_NAME[column].pandas_dtype, inputs.index)
    result = validate_claims(inputs, report_dir=Path(report_dir), name=name)
    return {
        "rows": result.rows,
        "checks": len(result.checks),
        "failed": result.lines,
        "report": str(result.report_path),
    }


def quality_alerts(result: dict) -> list[Alert]:
    return [Alert("quality", line.split(":", 1)[0], None, None, f"quality: {line}") for line in result["failed"]]

"""Live data quality: the claims schema's great-expectations suite run on a window's inputs.

The same suite that guards training tables (:mod:`features.data.validation`: required fields and
identifiers present, null rates, ranges, allowed categories, date order, unique claim ids) runs on
what the window's claims said at notice. Outcomes are left out: a live window's labels are still
arriving, so label checks would only say that.

A window too large for one process is checked part by part where its parts are (:func:`part_checks`
on each, the whole window's :func:`~features.data.validation.provided_columns` given to all), and
the parts' checks merged into the window's (:func:`from_parts`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features import schema
from features.data.validation import Check, check_claims, merge_checks, report_checks, validate_claims
from monitoring.alerts import Alert

NAME = "monitor-quality"


def quality(claims: pd.DataFrame, report_dir: Path, name: str = NAME) -> dict:
    """Run the suite on the notice fields of ``claims``; the failed checks (one readable line each,
    personal values hidden), how many ran, and the HTML report's path."""
    result = validate_claims(notice_fields(claims), report_dir=Path(report_dir), name=name)
    return _summary(result)


def part_checks(claims: pd.DataFrame, provided: Iterable[str], first_row: int = 0) -> list[Check]:
    """The suite's checks of one part of a window (its notice fields; its first row's position in the
    window), for :func:`from_parts`."""
    kept = [c for c in provided if c not in _LEFT_OUT]
    return check_claims(notice_fields(claims), provided=kept, first_row=first_row)


@dataclass(frozen=True)
class Parts:
    """A window's :func:`part_checks`, part by part in row order, and what the whole window is."""

    checks: Sequence[Sequence[Check]]
    rows: int
    provided: Sequence[str]
    """The window's columns holding a value (:func:`~features.data.validation.provided_columns`)."""
    columns: Sequence[str]


def from_parts(parts: Parts, report_dir: Path) -> dict:
    """:func:`quality` of a window from its parts' checks."""
    kept = [c for c in parts.provided if c not in _LEFT_OUT]
    merged = merge_checks(parts.checks)
    return _summary(report_checks(merged, parts.rows, kept, parts.columns, report_dir=Path(report_dir), name=NAME))


def notice_fields(claims: pd.DataFrame) -> pd.DataFrame:
    """``claims`` with the outcomes emptied (they are still arriving)."""
    inputs = claims.copy()
    for column in _LEFT_OUT:
        inputs[column] = schema.null_series(schema.BY_NAME[column].pandas_dtype, inputs.index)
    return inputs


def quality_alerts(result: dict) -> list[Alert]:
    return [Alert("quality", line.split(":", 1)[0], None, None, f"quality: {line}") for line in result["failed"]]


def _summary(result) -> dict:
    return {
        "rows": result.rows,
        "checks": len(result.checks),
        "failed": result.lines,
        "report": str(result.report_path),
    }


_LEFT_OUT = schema.OUTCOMES + tuple(f.name for f in schema.FIELDS if f.stage == "truth")

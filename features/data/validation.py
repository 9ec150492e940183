"""Data checks for canonical claims frames, derived from the schema and run with great-expectations.

:func:`build_suite` turns :mod:`features.schema` into a GX expectation suite for one frame. A column
is *provided* when it is not entirely null; required columns are always checked. The checks:

- required columns exist and are never null;
- a provided optional column with a ``max_null_rate`` (or an override in ``null_rates``) has at most
  that share of nulls;
- numeric columns lie within the field's ``min``/``max``;
- categorical columns with an ``allowed`` tuple hold only those values;
- ``claim_id`` is unique;
- each ``(earlier, later)`` pair of ``schema.DATE_ORDER`` holds where both dates are present;
- each field the source supplies (its mapped fields, or the ``supplies`` list of an identity
  mapping) is there: a column, and not entirely empty where the schema caps its nulls;
- each label column (``schema.LABELS``) has both classes and a sane positive rate
  (:data:`LABEL_RATES`); ``fraud_confirmed`` is true only where ``investigated`` is true;
  ``settled_amount`` is 0 or empty where ``settlement_date`` is missing.

:func:`validate_claims` runs the suite, adds the type problems found by :func:`schema.coerce` as failed
checks, writes a self-contained HTML report and returns one readable line per failed check, e.g.
``claimed_amount: must be between 0 and 1000000000: 3 of 5000 rows, e.g. -5.0, -12.5``. Values of
personal fields are never shown.

great_expectations is imported inside the functions: importing it is slow.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features import schema
from features.errors import SchemaError, ValidationFailed

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

LABEL_RATES: dict[str, tuple[float, float]] = {
    "fraud_confirmed": (0.0005, 0.5),
    "simple_settlement": (0.01, 0.99),
}
"""Label column -> (lowest, highest) sane positive rate. Labels not listed need only both classes."""

EXAMPLES = 3
_PARTIAL = 20  # GX collects this many unexpected values; we show EXAMPLES distinct ones
_READABLE_AS = {"float": "a number", "int": "a whole number", "bool": "true/false", "datetime": "a date"}


@dataclass(frozen=True)
class Check:
    """The outcome of one check. ``examples`` is empty for personal fields (values hidden)."""

    column: str
    rule: str
    success: bool
    unexpected_count: int = 0
    element_count: int = 0
    examples: list[str] = field(default_factory=list)
    observed: str = ""
    """For aggregate checks (label rates): the observed value; for checks that could not run: why."""
    kind: str = ""
    """How the check reads its result: ``exists``, ``rows``, ``nulls``, ``values``, ``dates``, ``rate``
    (:func:`build_suite`'s meta); empty for the checks made outside the suite."""
    mostly: float | None = None
    """The share of rows that must pass (a null cap), where not all must."""
    unexpected: tuple[str, ...] = ()
    """The first unexpected values as shown (up to GX's partial list, in row order, repeats kept;
    empty for personal fields): what :func:`merge_checks` takes ``examples`` from."""

    @property
    def line(self) -> str:
        """One readable line: ``column: rule: N of M rows, e.g. v1, v2``."""
        if self.observed:
            return f"{self.column}: {self.observed}"
        text = f"{self.column}: {self.rule}: {self.unexpected_count} of {self.element_count} rows"
        if _is_personal(self.column) and self.unexpected_count:
            return text + ", values hidden"
        return text + (f", e.g. {', '.join(self.examples)}" if self.examples else "")


@dataclass(frozen=True)
class ValidationResult:
    name: str
    success: bool
    lines: list[str]
    """One readable line per failed check."""
    report_path: Path
    checks: list[Check]
    rows: int = 0

    def raise_for_failure(self) -> None:
        """Raise :class:`ValidationFailed` (with the lines and the report) if any check failed."""
        if not self.success:
            message = f"{len(self.lines)} check(s) failed on {self.rows:,} claims"
            raise ValidationFailed(message, self.lines, str(self.report_path))


def provided_columns(frame: pd.DataFrame) -> list[str]:
    """Schema columns present in ``frame`` and not entirely null."""
    return provided_of({c: frame[c].notna().any() for c in frame.columns if c in schema.BY_NAME})


def provided_of(has_values: Mapping[str, bool]) -> list[str]:
    """The schema columns (in the schema's order) that ``has_values`` says hold a value: what
    :func:`provided_columns` finds, from a table's per-column answers (e.g. computed on Dask)."""
    return [f.name for f in schema.FIELDS if has_values.get(f.name, False)]


def build_suite(
    frame: pd.DataFrame, null_rates: dict[str, float] | None = None, provided: Iterable[str] | None = None
) -> ExpectationSuite:
    """The GX suite for ``frame``: checks for the columns it provides (see the module docstring), or
    for ``provided`` ones (a part of a larger table: the whole table's :func:`provided_columns`).

    Each expectation's ``meta`` holds ``column``, ``rule``, ``kind`` (how to read its result) and
    ``order``, so results can be turned back into readable lines.
    """
    gx = _import_gx()
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    caps = _null_caps(null_rates)
    provided = set(provided_columns(frame) if provided is None else provided)
    specs: list[tuple[Any, str, str, str]] = []  # (expectation, column, rule, kind)

    def add(expectation: Any, column: str, rule: str, kind: str) -> None:
        specs.append((expectation, column, rule, kind))

    for f in schema.FIELDS:
        c = f.name
        if f.required:
            add(gxe.ExpectColumnToExist(column=c), c, "must exist", "exists")
            if c in frame.columns:
                add(gxe.ExpectColumnValuesToNotBeNull(column=c), c, "must not be null", "rows")
        if c not in provided:
            continue
        cap = caps.get(c, f.max_null_rate)
        if cap is not None and not f.required:
            rule = "must not be null" if cap == 0 else f"at most {_pct(cap)} null"
            add(gxe.ExpectColumnValuesToNotBeNull(column=c, mostly=1 - cap), c, rule, "nulls")
        if f.min is not None or f.max is not None:
            add(
                gxe.ExpectColumnValuesToBeBetween(column=c, min_value=f.min, max_value=f.max),
                c,
                _range_rule(f.min, f.max),
                "values",
            )
        if f.allowed:
            add(
                gxe.ExpectColumnValuesToBeInSet(column=c, value_set=list(f.allowed)),
                c,
                f"must be one of {', '.join(f.allowed)}",
                "values",
            )
        if c == "claim_id":
            add(gxe.ExpectColumnValuesToBeUnique(column=c), c, "must be unique", "values")

    for earlier, later in schema.DATE_ORDER:
        if earlier in provided and later in provided:
            add(
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A=later, column_B=earlier, or_equal=True, ignore_row_if="either_value_is_missing"
                ),
                later,
                f"must be on or after {earlier}",
                "dates",
            )

    for label in schema.LABELS.values():
        if label not in provided:
            continue
        lo, hi = LABEL_RATES.get(label, (0.0, 1.0))
        add(
            gxe.ExpectColumnMeanToBeBetween(
                column=label, min_value=lo, max_value=hi, strict_min=lo == 0, strict_max=hi == 1
            ),
            label,
            f"positive rate within {_pct(lo)}-{_pct(hi)}",
            "rate",
        )
    if {"fraud_confirmed", "investigated"} <= provided:
        # investigated >= fraud_confirmed on 0/1. (ExpectColumnPairValuesToBeInSet would read better but
        # loops over rows with iterrows, far too slow on large tables.)
        add(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="investigated",
                column_B="fraud_confirmed",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            ),
            "fraud_confirmed",
            "true only where investigated is true",
            "rows",
        )
    if {"settled_amount", "settlement_date"} <= provided:
        add(
            gxe.ExpectColumnValuesToBeBetween(
                column="settled_amount", max_value=0, row_condition=Column("settlement_date").is_null()
            ),
            "settled_amount",
            "must be 0 or empty where settlement_date is missing",
            "values",
        )

    for order, (expectation, column, rule, kind) in enumerate(specs):
        expectation.meta = {"column": column, "rule": rule, "kind": kind, "order": order}
    # Passed to the constructor: suite.add_expectation() needs a current data context.
    return gx.ExpectationSuite(name="claims", expectations=[spec[0] for spec in specs])


def validate_claims(
    frame: pd.DataFrame,
    type_problems: Iterable[schema.TypeProblem] = (),
    *,
    report_dir: Path,
    name: str,
    null_rates: dict[str, float] | None = None,
    supplies: Iterable[str] = (),
    absent: Iterable[str] = (),
) -> ValidationResult:
    """Check a canonical frame (the output of :func:`schema.coerce`) and write the HTML report.

    ``type_problems`` are the unreadable values :func:`schema.coerce` reported; each becomes a failed
    check. ``null_rates`` overrides the schema's ``max_null_rate`` per column (e.g. for a source
    known to lack some values). ``supplies`` are the fields the source must provide
    (``LoadedClaims.expected``); ``absent`` those the table had no column for (``LoadedClaims.absent``).
    """
    checks = [_type_check(col, count, examples, len(frame)) for col, count, examples in type_problems]
    checks += supply_checks(frame, supplies, absent, null_rates)
    checks += check_claims(frame, null_rates=null_rates)
    return report_checks(checks, len(frame), provided_columns(frame), frame.columns, report_dir=report_dir, name=name)


def check_claims(
    frame: pd.DataFrame,
    *,
    null_rates: dict[str, float] | None = None,
    provided: Iterable[str] | None = None,
    first_row: int = 0,
) -> list[Check]:
    """The suite's checks of ``frame`` (no report). A part of a larger table is checked with the
    whole table's ``provided`` columns and its ``first_row``'s position in the table (a row without
    a claim id is named by its row); the parts' checks are then :func:`merge_checks`'d."""
    return _run_suite(build_suite(frame, null_rates, provided), frame, first_row)


def merge_checks(parts: Sequence[Sequence[Check]]) -> list[Check]:
    """The checks of a table from those of its row-parts (in row order, each checked with the same
    suite, hence the same checks in the same order): as :func:`check_claims` finds them on the whole
    table when no check compares rows across parts (``claim_id`` unique: every part holds all of an
    id's rows). Counts add up; a null cap is judged on the summed counts; examples are the first
    distinct ones in row order (GX's first unexpected values of the whole table). Label rates,
    which need the values' count, are refused."""
    parts = [list(p) for p in parts if p]
    if not parts:
        return []
    if any([(c.column, c.rule) for c in p] != [(c.column, c.rule) for c in parts[0]] for p in parts):
        raise ValueError("merge_checks: the parts were checked with different suites")
    merged = []
    for same in zip(*parts):
        first = same[0]
        if first.kind == "rate":
            raise ValueError(f"merge_checks: {first.column}'s positive rate cannot be merged from parts")
        if first.observed or first.kind == "exists":  # a column's absence, or a check that could not run
            merged.append(next((c for c in same if not c.success), first))
            continue
        count, total = sum(c.unexpected_count for c in same), sum(c.element_count for c in same)
        if first.mostly is not None:
            success = total == 0 or (total - count) / total >= first.mostly
        else:
            success = count == 0
        shown = _distinct(e for c in same for e in c.unexpected) if not success else []
        merged.append(replace(first, success=success, unexpected_count=count, element_count=total, examples=shown))
    return merged


def report_checks(
    checks: list[Check], rows: int, provided: Sequence[str], columns: Iterable[str], *, report_dir: Path, name: str
) -> ValidationResult:
    """The result of ``checks`` run on ``rows`` claims providing the columns ``provided`` (of
    ``columns``), with its HTML report written to ``report_dir``."""
    report_path = _write_report(Path(report_dir), name, rows, list(provided), list(columns), checks)
    failed = [c for c in checks if not c.success]
    return ValidationResult(
        name=name,
        rows=rows,
        success=not failed,
        lines=[c.line for c in failed],
        report_path=report_path,
        checks=checks,
    )


_MISSING = "missing: the source supplies this field"


def supply_checks(
    frame: pd.DataFrame, supplies: Iterable[str], absent: Iterable[str] = (), null_rates: dict[str, float] | None = None
) -> list[Check]:
    """One check per optional field the source supplies: the table has a column for it, and where the
    schema caps the field's nulls, not only empty values (required fields have checks of their own)."""
    caps = _null_caps(null_rates)
    gone = set(absent)
    out = []
    for c in dict.fromkeys(supplies):
        f = schema.BY_NAME[c]
        if f.required:
            continue
        rule = "supplied by the source"
        if c in gone or c not in frame.columns:
            out.append(Check(c, rule, False, observed=f"{_MISSING}, but the table has no column for it"))
        elif caps.get(c, f.max_null_rate) is not None and not frame[c].notna().any():
            out.append(Check(c, rule, False, observed=f"{_MISSING}, but every value is empty"))
        else:
            out.append(Check(c, rule, True))
    return out


# --- running GX --------------------------------------------------------------------------------


def _import_gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # 1.24 sends nothing; keep it that way
    import great_expectations as gx

    return gx


def _run_suite(suite: ExpectationSuite, frame: pd.DataFrame, first_row: int = 0) -> list[Check]:
    gx = _import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # In-memory stores, no temporary docs site, no analytics, no progress bars.
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    context = gx.get_context(project_config=config, mode="ephemeral")
    source = context.data_sources.add_pandas("claims")
    # GX copies the whole batch for every row filter (column pairs with ignore_row_if, row_condition),
    # several times per expectation: give those checks a narrow batch of their own columns.
    parts = {
        "rows": [e for e in suite.expectations if _filters_rows(e)],
        "columns": [e for e in suite.expectations if not _filters_rows(e)],
    }
    results = []
    for part, expectations in parts.items():
        if not expectations:
            continue
        batch = source.add_dataframe_asset(part).add_batch_definition_whole_dataframe(part)
        part_suite = context.suites.add(gx.ExpectationSuite(name=part, expectations=expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=part, data=batch, suite=part_suite)
        )
        run = definition.run(
            batch_parameters={"dataframe": _gx_frame(frame, expectations)},
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": _PARTIAL},
        )
        results += run.results
    claim_ids = frame["claim_id"].to_numpy(dtype=object) if "claim_id" in frame.columns else None
    results.sort(key=lambda r: r.expectation_config.meta["order"])
    return [_to_check(r, claim_ids, first_row) for r in results]


def _filters_rows(expectation: Any) -> bool:
    kwargs = expectation.configuration.kwargs
    return "column_A" in kwargs or getattr(expectation, "row_condition", None) is not None


def _gx_frame(frame: pd.DataFrame, expectations: Sequence[Any]) -> pd.DataFrame:
    """The columns the expectations use, with dtypes GX handles: ints and booleans as float64 with NaN
    (so ranges, label means and pairs work), datetimes as datetime64[ns] with NaT, text as is."""
    used: set[str] = set()
    for e in expectations:
        used.update(v for k, v in e.configuration.kwargs.items() if k in ("column", "column_A", "column_B"))
        if getattr(e, "row_condition", None) is not None:
            used.add(e.row_condition.column.name)
    out: dict[str, Any] = {}
    for c in frame.columns:
        if c not in used:
            continue
        s, f = frame[c], schema.BY_NAME.get(c)
        kind = f.dtype if f else ""
        if kind in ("int", "float", "bool") or pd.api.types.is_bool_dtype(s):
            out[c] = s.to_numpy(dtype="float64", na_value=np.nan)
        elif kind == "datetime" or pd.api.types.is_datetime64_any_dtype(s):
            out[c] = s.to_numpy(dtype="datetime64[ns]")
        else:  # text stays pandas "str": copies to object would dominate the run on large tables
            out[c] = s.reset_index(drop=True)
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def _to_check(r: Any, claim_ids: np.ndarray | None, first_row: int = 0) -> Check:
    meta = r.expectation_config.meta
    column, rule, kind = meta["column"], meta["rule"], meta["kind"]
    res = r.result or {}
    if r.exception_info and r.exception_info.get("raised_exception"):
        return Check(
            column, rule, False, observed=f"{rule}: could not be checked ({r.exception_info.get('exception_message')})"
        )
    if kind == "exists":
        return Check(column, rule, bool(r.success), observed="" if r.success else f"{rule}: column missing", kind=kind)
    if kind == "rate":
        rate = res.get("observed_value")
        shown = "unknown" if rate is None else _pct(float(rate), observed=True)
        bounds = rule.removeprefix("positive rate within ")
        return Check(
            column,
            rule,
            bool(r.success),
            observed=f"positive rate {shown}" + ("" if r.success else f" outside {bounds}"),
            kind=kind,
        )
    count, total = int(res.get("unexpected_count") or 0), int(res.get("element_count") or 0)
    examples: list[str] = []
    if count and not _is_personal(column):
        if kind == "values":
            examples = [_fmt(v, column) for v in res.get("partial_unexpected_list", [])]
        elif kind == "dates":
            earlier = rule.removeprefix("must be on or after ")
            pairs = res.get("partial_unexpected_list", [])
            examples = [f"{_fmt(later, column)} < {_fmt(before, earlier)}" for later, before in pairs]
        elif kind == "rows":
            examples = [_row_ref(i, claim_ids, first_row) for i in res.get("partial_unexpected_index_list", [])]
    mostly = r.expectation_config.kwargs.get("mostly")
    mostly = None if mostly is None or mostly == 1 else float(mostly)
    shown = _distinct(examples) if not r.success else []
    return Check(
        column, rule, bool(r.success), count, total, shown, kind=kind, mostly=mostly, unexpected=tuple(examples)
    )


def _type_check(column: str, count: int, examples: Sequence[str], rows: int) -> Check:
    dtype = schema.BY_NAME[column].dtype if column in schema.BY_NAME else ""
    rule = f"must be readable as {_READABLE_AS.get(dtype, dtype or 'its type')}"
    shown = [] if _is_personal(column) else _distinct([_clip(str(v)) for v in examples])
    return Check(column, rule, False, int(count), rows, shown)


# --- formatting --------------------------------------------------------------------------------


def _null_caps(null_rates: dict[str, float] | None) -> dict[str, float]:
    caps = dict(null_rates or {})
    for c, rate in caps.items():
        if c not in schema.BY_NAME or schema.BY_NAME[c].required:
            raise SchemaError(f"null_rates: '{c}' is not an optional column of the claims schema")
        if not 0 <= rate <= 1:
            raise SchemaError(f"null_rates: '{c}' must be a share between 0 and 1, got {rate}")
    return caps


def _is_personal(column: str) -> bool:
    f = schema.BY_NAME.get(column)
    return bool(f and f.personal)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _pct(share: float, observed: bool = False) -> str:
    """0.0005 -> '0.05%', 0.5 -> '50%'; observed rates keep one decimal ('0.0%', '12.5%')."""
    value = share * 100
    if observed:
        return f"{value:.1f}%" if value == 0 or value >= 0.1 else f"{value:.3f}%"
    return f"{value:.4g}%"


def _range_rule(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"must be between {_num(lo)} and {_num(hi)}"
    if lo is not None:
        return f"must be at least {_num(lo)}"
    return f"must be at most {_num(hi)}" if hi is not None else "any value"


def _fmt(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return "null"
    f = schema.BY_NAME.get(column)
    dtype = f.dtype if f else ""
    if dtype == "datetime" or isinstance(value, (np.datetime64, pd.Timestamp, datetime)):
        ts = pd.Timestamp(value)
        if pd.isna(ts):
            return "null"
        return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%d %H:%M")
    if dtype == "int" and isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(float(value))
    return _clip(str(value))


def _clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _row_ref(position: int, claim_ids: np.ndarray | None, first_row: int = 0) -> str:
    claim = claim_ids[position] if claim_ids is not None else None
    return f"claim {_clip(str(claim))}" if isinstance(claim, str) and claim else f"row {first_row + position + 1}"


def _distinct(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))[:EXAMPLES]


# --- the HTML report ---------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}
.fail{color:#a00;font-weight:bold}.pass{color:#070}tr.fail td{background:#fdeaea}code{font-size:.95em}"""


def _write_report(
    report_dir: Path, name: str, rows: int, provided: list[str], columns: list[str], checks: list[Check]
) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "data"
    path = report_dir / f"validation-{safe}-{now.strftime('%Y%m%dT%H%M%S.%fZ')}.html"
    e = html.escape
    failed = [c for c in checks if not c.success]
    extras = schema.extra_columns(columns)
    verdict = (
        f'<p class="fail">FAILED: {len(failed)} of {len(checks)} checks</p>'
        if failed
        else f'<p class="pass">PASSED: all {len(checks)} checks</p>'
    )
    summary = [
        ("Data", e(name)),
        ("Rows", f"{rows:,}"),
        ("Columns provided", f"{len(provided)} of {len(schema.COLUMNS)}: " + e(", ".join(provided))),
        ("Extra columns", e(", ".join(extras)) or "none"),
        ("Checks passed", str(len(checks) - len(failed))),
        ("Checks failed", str(len(failed))),
        ("Checked at", now.strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]
    rows = []
    for c in checks:
        examples = "values hidden" if _is_personal(c.column) and c.unexpected_count else ", ".join(c.examples)
        unexpected = (
            e(c.observed)
            if c.observed
            else (f"{c.unexpected_count:,} of {c.element_count:,}" if c.element_count else "")
        )
        rows.append(
            f'<tr class="{"pass" if c.success else "fail"}"><td><code>{e(c.column)}</code></td>'
            f'<td>{e(c.rule)}</td><td class="{"pass" if c.success else "fail"}">'
            f"{'pass' if c.success else 'FAIL'}</td><td>{unexpected}</td><td>{e(examples)}</td></tr>"
        )
    body = "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>Data checks: {e(name)}</title><style>{_CSS}</style></head><body>",
            f"<h1>Data checks: {e(name)}</h1>",
            verdict,
            "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in summary) + "</table>",
            "<h2>Failed</h2><ul>" + "".join(f"<li>{e(c.line)}</li>" for c in failed) + "</ul>" if failed else "",
            "<h2>All checks</h2><table><tr><th>Column</th><th>Rule</th><th>Result</th>"
            "<th>Unexpected</th><th>Examples</th></tr>",
            *rows,
            "</table></body></html>",
        ]
    )
    path.write_text(body, encoding="utf-8")
    return path

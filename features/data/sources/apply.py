"""Apply a :class:`~features.data.sources.mapping.Mapping` to a table that has been read: pure and vectorised.

Every per-value step (text matching, value maps, hashing, date parsing) runs once per distinct value
and is broadcast back with the codes of :func:`pandas.factorize`, so a million rows with a few
thousand distinct values cost little more than the distinct values.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features import schema
from features.data.sources.mapping import ColumnSpec, ExtraEntry, Mapping
from features.errors import MappingError, SchemaError
from features.identity import Identity, kind_of
from features.schema import TypeProblem

MONTHS = {
    m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))
}
MONTHS |= {
    n: i + 1
    for i, n in enumerate(
        (
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        )
    )
}
MONTHS |= {str(i): i for i in range(1, 13)}
WEEKDAYS = {d: i for i, d in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}
WEEKDAYS |= {d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))}


@dataclass
class Mapped:
    frame: pd.DataFrame
    type_problems: list[TypeProblem] = field(default_factory=list)
    excluded: list[tuple[str, int]] = field(default_factory=list)
    adjusted: list[tuple[str, int]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)


def apply_mapping(raw: pd.DataFrame, m: Mapping, identity: Identity, origin: str = "table") -> Mapped:
    """Map ``raw`` (source columns) to the canonical frame described by ``m``; personal identifiers
    (and ``hash: true`` columns) are normalised and hashed by ``identity``."""
    out = Mapped(frame=pd.DataFrame())
    raw, positions = _exclude(raw, m, out)
    ctx = _Context(raw, positions, out, identity)
    cols = _identity_columns(raw, ctx) if m.identity else {}
    # fields whose week_date depends on another field come after it
    later = [n for n, s in m.fields.items() if s.week_date is not None and s.week_date.after is not None]
    for name in [n for n in m.fields if n not in later] + later:
        cols[name] = ctx.compute(name, m.fields[name], schema.BY_NAME[name].dtype, cols)
    for name, spec in m.labels.items():
        if spec.rule is None:
            cols[name] = ctx.compute(name, spec, schema.BY_NAME[name].dtype, cols)
    for name, spec in m.extras.items():
        cols[schema.EXTRA_PREFIX + name] = ctx.extra(schema.EXTRA_PREFIX + name, spec, cols)
    missing = [c for c in schema.REQUIRED if c not in cols]
    if missing:
        raise SchemaError(f"{origin}: missing required column(s): {', '.join(missing)}")
    frame, problems = schema.coerce(pd.DataFrame(cols, index=raw.index))
    for name, spec in m.labels.items():
        if spec.rule is not None:
            frame[name] = evaluate_rule(frame, name, spec.rule)
    out.frame = frame.reset_index(drop=True)
    out.type_problems = out.type_problems + problems
    return out


def _identity_columns(raw: pd.DataFrame, ctx: _Context) -> dict[str, pd.Series]:
    """Canonical columns as they are (dates parsed); ``x_`` columns passed through. Personal identifiers
    are hashed: values hashed already (a file written by an earlier import) pass through, raw values
    (a claim system's export, the synthetic generator's files) are normalised and hashed."""
    cols: dict[str, pd.Series] = {}
    for c in raw.columns:
        if c in schema.BY_NAME:
            cols[c] = ctx.finish(c, raw[c], schema.BY_NAME[c].dtype, hash_it=False)
        elif c.startswith(schema.EXTRA_PREFIX):
            s = raw[c]
            numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
            cols[c] = s.astype("float64") if numeric else text(s).astype("str")
        else:
            ctx.out.ignored_columns.append(c)
    return cols


def _exclude(raw: pd.DataFrame, m: Mapping, out: Mapped) -> tuple[pd.DataFrame, np.ndarray]:
    positions = np.arange(1, len(raw) + 1)
    keep = np.ones(len(raw), dtype=bool)
    for ex in m.exclude:
        hit = _eval_bool(raw, ex.where, f"exclude '{ex.where}'").fillna(False).to_numpy(dtype=bool)
        out.excluded.append((ex.reason, int((hit & keep).sum())))
        keep &= ~hit
    return raw[keep], positions[keep]


class _Context:
    def __init__(self, raw: pd.DataFrame, positions: np.ndarray, out: Mapped, identity: Identity):
        self.raw, self.positions, self.out, self.identity = raw, positions, out, identity

    def problem(self, name: str, bad: pd.Series, source: pd.Series) -> None:
        if bad.any():
            examples = [str(v) for v in pd.unique(source[bad].astype(str))[:5]]
            self.out.type_problems.append((name, int(bad.sum()), examples))

    def compute(self, name: str, spec: ColumnSpec, dtype: str, cols: dict[str, pd.Series]) -> pd.Series:
        s = self.source(name, spec, cols)
        if spec.null_if is not None:
            s = s.where(~text(s).isin({_text(v) for v in spec.null_if}))
        if spec.map is not None:
            s = value_map(s, spec.map)
        if spec.scale is not None:
            num = pd.to_numeric(s, errors="coerce")
            self.problem(name, s.notna() & num.isna(), s)
            s = num * spec.scale
        if dtype == "datetime" and spec.week_date is None:
            s = self.dates(name, s, spec.format)
        return self.finish(name, s, dtype, hash_it=spec.hash, prefix=spec.prefix)

    def finish(
        self,
        name: str,
        s: pd.Series,
        dtype: str,
        *,
        hash_it: bool,
        prefix: str | None = None,
    ) -> pd.Series:
        if dtype == "datetime":
            s = self.dates(name, s, None)
        canonical = schema.BY_NAME.get(name)
        personal = canonical is not None and canonical.personal
        if hash_it or personal:
            s = self.identity.hash_series(text(s), kind_of(name) if personal else "text")
        if prefix:
            s = prefix + text(s)
        return s

    def source(self, name: str, spec: ColumnSpec, cols: dict[str, pd.Series]) -> pd.Series:
        idx = self.raw.index
        kind = spec.kind
        if kind == "column":
            return self.raw[spec.column]
        if kind == "value":
            const = pd.array([spec.value], dtype=_common_dtype([spec.value]))
            return pd.Series(const.take(np.zeros(len(idx), dtype=np.int64)), index=idx)
        if kind == "row_number":
            return pd.Series(self.positions, index=idx)
        if kind == "worst_of":
            return self.worst_of(name, spec)
        if kind == "count_of":
            return self.count_of(spec)
        if kind == "week_date":
            return self.week_date(name, spec, cols)
        raise AssertionError(kind)

    def dates(self, name: str, s: pd.Series, fmt: str | None) -> pd.Series:
        if pd.api.types.is_datetime64_any_dtype(s):
            s = s.dt.tz_convert("UTC").dt.tz_localize(None) if s.dt.tz is not None else s
            return self._in_ns_range(name, s)
        if fmt is None:

            def parse(u: pd.Series) -> Any:
                first = pd.to_datetime(u, errors="coerce", format="ISO8601", utc=True)
                rest = first.isna()
                if rest.any():
                    first[rest] = pd.to_datetime(u[rest], errors="coerce", format="mixed", utc=True)
                return first
        else:

            def parse(u: pd.Series) -> Any:
                return pd.to_datetime(u, errors="coerce", format=fmt, utc=True)

        src = text(s)
        codes, uniques = pd.factorize(src, use_na_sentinel=True)
        parsed_u = pd.Series(parse(pd.Series(uniques, dtype=object)))
        if parsed_u.dt.tz is not None:
            parsed_u = parsed_u.dt.tz_convert("UTC").dt.tz_localize(None)
        parsed_u = parsed_u.where(parsed_u.between(pd.Timestamp.min, pd.Timestamp.max))
        values = parsed_u.to_numpy(dtype="datetime64[ns]")
        result = np.full(len(src), np.datetime64("NaT"), dtype="datetime64[ns]")
        result[codes >= 0] = values[codes[codes >= 0]]
        parsed = pd.Series(result, index=s.index)
        self.problem(name, src.notna() & parsed.isna(), src)
        return parsed

    def _in_ns_range(self, name: str, s: pd.Series) -> pd.Series:
        """Dates pandas cannot hold in nanoseconds (before 1677 or after 2262) become null, reported."""
        bad = s.notna() & ~s.between(pd.Timestamp.min, pd.Timestamp.max)
        self.problem(name, bad, s)
        return s.where(~bad).astype("datetime64[ns]")

    def worst_of(self, name: str, spec: ColumnSpec) -> pd.Series:
        order = [_text(v) for v in spec.order or []]
        rank_of = {v: i for i, v in enumerate(order)}
        ranks = np.full((len(self.raw), len(spec.worst_of or [])), -1, dtype=np.int64)
        for j, col in enumerate(spec.worst_of or []):
            s = self.raw[col]
            if spec.map is not None:
                s = value_map(s, spec.map)
            t = text(s)
            r = per_unique(t, lambda u: [rank_of.get(v, np.nan) for v in u]).astype("float64")
            self.problem(name, t.notna() & r.isna(), t)
            ranks[:, j] = r.fillna(-1).to_numpy(dtype=np.int64)
        best = ranks.max(axis=1)
        values = np.array(order + [None], dtype=object)[np.where(best >= 0, best, len(order))]
        return pd.Series(values, index=self.raw.index)

    def count_of(self, spec: ColumnSpec) -> pd.Series:
        """How many of the columns hold one of the values, per row; null where every column is null."""
        assert spec.count_of is not None
        wanted = {_text(v) for v in spec.count_of.values}
        hits = np.zeros(len(self.raw), dtype=np.float64)
        recorded = np.zeros(len(self.raw), dtype=bool)
        for col in spec.count_of.columns:
            t = text(self.raw[col])
            hits += t.isin(wanted).to_numpy(dtype=bool)
            recorded |= t.notna().to_numpy(dtype=bool)
        return pd.Series(np.where(recorded, hits, np.nan), index=self.raw.index)

    def week_date(self, name: str, spec: ColumnSpec, cols: dict[str, pd.Series]) -> pd.Series:
        wd = spec.week_date
        assert wd is not None
        raw = self.raw
        month = self._lookup(name, raw[wd.month], MONTHS)
        dow = self._lookup(name, raw[wd.day_of_week], WEEKDAYS)
        week = pd.to_numeric(raw[wd.week_of_month], errors="coerce").astype("float64")
        bad_week = raw[wd.week_of_month].notna() & ~week.isin([1, 2, 3, 4, 5])
        self.problem(name, bad_week, raw[wd.week_of_month])
        week = week.where(~bad_week)
        if wd.year is not None:
            year = pd.to_numeric(raw[wd.year], errors="coerce").astype("float64")
            year = year.where(year.between(1700, 2200))
            self.problem(name, raw[wd.year].notna() & year.isna(), raw[wd.year])
            after = None
        else:
            after = pd.to_datetime(cols[wd.after])
            year = after.dt.year.astype("float64") + (month < after.dt.month).astype("float64")
        ok = (month.notna() & dow.notna() & week.notna() & year.notna()).to_numpy()
        ym = ((year - 1970) * 12 + month - 1).to_numpy()[ok].astype("int64")
        first = ym.astype("datetime64[M]").astype("datetime64[D]")
        last = (ym + 1).astype("datetime64[M]").astype("datetime64[D]") - np.timedelta64(1, "D")
        start = first + ((week.to_numpy()[ok] - 1) * 7).astype("int64")
        start_dow = (start.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
        date = start + ((dow.to_numpy()[ok] - start_dow) % 7).astype("int64")
        past_end = date > last
        date = np.where(past_end, last, date)
        result = np.full(len(raw), np.datetime64("NaT"), dtype="datetime64[ns]")
        result[ok] = date.astype("datetime64[ns]")
        out = pd.Series(result, index=raw.index)
        self._adjusted(
            f"{name}: weekday past the end of the month (week 5); set to the month's last day", int(past_end.sum())
        )
        if after is not None:
            early = out < after
            out = out.where(~early, after)
            self._adjusted(
                f"{name}: parts give a date before {wd.after} in the same month; set equal to {wd.after}",
                int(early.sum()),
            )
        return out

    def _adjusted(self, what: str, n: int) -> None:
        if n:
            self.out.adjusted.append((what, n))

    def _lookup(self, name: str, s: pd.Series, table: dict[str, int]) -> pd.Series:
        t = text(s)
        out = per_unique(t, lambda u: [table.get(v.lower(), np.nan) for v in u]).astype("float64")
        self.problem(name, t.notna() & out.isna(), t)
        return out

    def extra(self, name: str, spec: ExtraEntry, cols: dict[str, pd.Series]) -> pd.Series:
        s = self.compute(name, spec, "category" if spec.type != "float" else "float", cols)
        if spec.type == "category":
            return text(s).astype("str")
        if spec.type == "float":
            num = pd.to_numeric(s, errors="coerce").astype("float64")
            self.problem(name, s.notna() & num.isna(), s)
            return num
        t = text(s)
        codes = {_text(v): float(i) for i, v in enumerate(spec.order or [])}
        code = per_unique(t, lambda u: [codes.get(v, np.nan) for v in u]).astype("float64")
        self.problem(name, t.notna() & code.isna(), t)
        return code


# --- value helpers --------------------------------------------------------------------------------


def _text(v: Any) -> Any:
    """The text form values are matched by: 1, 1.0 and "1" -> "1"; None/NaN -> None."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
        return None
    if isinstance(v, (bool, np.bool_)):
        return "True" if v else "False"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    return str(v).strip()


def per_unique(s: pd.Series, fn: Callable[[np.ndarray], Any]) -> pd.Series:
    """Apply ``fn`` to the distinct non-null values of ``s`` and broadcast back (nulls stay null).

    The result is typed by what ``fn`` returns: text -> str, booleans -> boolean, numbers -> float64,
    anything mixed -> object.
    """
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    values = list(fn(np.asarray(uniques, dtype=object))) if len(uniques) else []
    arr = pd.array(values, dtype=_common_dtype(values))
    return pd.Series(arr.take(codes, allow_fill=True), index=s.index)


def _common_dtype(values: list[Any]) -> str:
    kinds = {type(v) for v in values if _text(v) is not None}
    if not kinds:
        return "object"
    if kinds <= {str}:
        return "str"
    if kinds <= {bool, np.bool_}:
        return "boolean"
    if all(issubclass(k, (int, float, np.integer, np.floating)) and not issubclass(k, (bool, np.bool_)) for k in kinds):
        return "float64"
    return "object"


def text(s: pd.Series) -> pd.Series:
    """``s`` as matching text (see :func:`_text`), vectorised for the common dtypes."""
    if pd.api.types.is_string_dtype(s) and not pd.api.types.is_object_dtype(s):
        return s.str.strip()
    if pd.api.types.is_integer_dtype(s):
        return s.astype("str")
    if pd.api.types.is_float_dtype(s):
        vals = s.to_numpy(dtype="float64", na_value=np.nan)
        finite = np.isfinite(vals)
        if (vals[finite] == np.floor(vals[finite])).all():
            return s.astype("Int64").astype("str")
    return per_unique(s, lambda u: [_text(v) for v in u])


def value_map(s: pd.Series, table: dict[Any, Any]) -> pd.Series:
    """Translate listed values; unlisted non-null values are kept as they are."""
    lookup = {_text(k): v for k, v in table.items()}
    return per_unique(s, lambda u: [lookup[t] if (t := _text(v)) in lookup else v for v in u])


# --- rules ----------------------------------------------------------------------------------------


def rule_names(rule: str) -> set[str]:
    """Names a rule reads (column names; function names excluded)."""
    tree = ast.parse(rule.replace("`", ""), mode="eval")
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called}


def evaluate_rule(frame: pd.DataFrame, name: str, rule: str) -> pd.Series:
    """Evaluate a label rule on the canonical frame; null where any input is null."""
    env = frame.copy(deep=False)
    days = pd.Timedelta(days=1)
    env["settlement_days"] = (frame["settlement_date"] - frame["report_date"]) / days
    env["reporting_delay_days"] = (frame["report_date"] - frame["incident_date"]) / days
    where = f"labels.{name} rule '{rule}'"
    try:
        used = rule_names(rule)
    except SyntaxError as exc:
        raise MappingError(f"{where}: not a valid expression ({exc.msg})") from None
    unknown = sorted(used - set(env.columns))
    if unknown:
        raise MappingError(f"{where}: unknown name(s) {', '.join(unknown)}")
    result = _eval_bool(env, rule, where).astype("boolean")
    nulls = np.zeros(len(env), dtype=bool)
    for n in used:
        nulls |= env[n].isna().to_numpy()
    result[nulls] = pd.NA
    return result


def _eval_bool(df: pd.DataFrame, expr: str, where: str) -> pd.Series:
    try:
        result = df.eval(expr, engine="python")
    except Exception as exc:  # pandas raises many kinds; all mean "this expression is wrong here"
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MappingError(f"{where}: cannot be evaluated ({msg})") from None
    if not isinstance(result, pd.Series) or len(result) != len(df):
        raise MappingError(f"{where}: must give true/false for every row")
    if not pd.api.types.is_bool_dtype(result):
        raise MappingError(f"{where}: must give true/false, got {result.dtype} values")
    return result

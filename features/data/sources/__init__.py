"""Bring real tables into the canonical claims schema.

    from features.data.sources import load_claims
    loaded = load_claims("claims.csv", "mapping:my_claims.yaml")
    loaded.frame            # canonical columns in schema order, canonical dtypes, then x_ extras
    new = load_claims("new_claims.csv", "vehicle_fraud", purpose="score")  # no outcome columns needed

``source`` is a built-in name (:data:`BUILTIN_SOURCES`) or ``mapping:PATH.yaml``; the mapping
language is documented in :mod:`features.data.sources.mapping`. The built-in ``history`` source reads
the claim history store (``settings.history_url``, or ``data`` as another store's SQLAlchemy URL);
it supplies the fields the store holds values for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from features.config import Settings, load_settings
from features.data.sources import readers
from features.data.sources.apply import apply_mapping, rule_names
from features.data.sources.mapping import Mapping, parse_mapping, read_mapping
from features.errors import DataFileError, MappingError
from features.identity import Identity
from features.schema import BY_NAME, EXTRA_PREFIX, TypeProblem, extra_columns

__all__ = [
    "BUILTIN_SOURCES",
    "HISTORY_SOURCE",
    "ExtraSpec",
    "LoadedClaims",
    "Mapping",
    "Purpose",
    "load_claims",
    "load_mapping",
]

_HERE = Path(__file__).parent
BUILTIN_SOURCES: tuple[str, ...] = ("synthetic", "vehicle_fraud", "aus_bodily_injury", "history")
HISTORY_SOURCE = "history"
"""The claim history store as a source: no file, its claims are read from a database."""
MAPPING_PREFIX = "mapping:"

Purpose = Literal["train", "score"]
"""``train``: labelled claims, every column the mapping reads must be there. ``score``: new claims,
which have no outcomes yet: what the table lacks is left null (required fields excepted)."""


@dataclass(frozen=True)
class ExtraSpec:
    """What an ``x_`` column is: its type and what it means."""

    type: Literal["category", "float", "ordinal"]
    description: str
    order: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LoadedClaims:
    frame: pd.DataFrame
    """Every schema column in schema order with canonical dtypes, then ``x_`` extras."""
    type_problems: list[TypeProblem]
    """``(column, count, examples)``: values unreadable as their type, now null."""
    source: str
    mapping: Mapping
    excluded: list[tuple[str, int]]
    """``(reason, rows dropped)`` for each exclusion in the mapping, in order."""
    extras: dict[str, ExtraSpec]
    """``x_`` column -> type and description."""
    null_rates: dict[str, float]
    """Per-field ``max_null_rate`` overrides for this source."""
    adjusted: list[tuple[str, int]] = field(default_factory=list)
    """``(what was changed, rows)``: values set on purpose by documented rules (e.g. week_date)."""
    ignored_columns: list[str] = field(default_factory=list)
    """Identity mappings: columns that are neither canonical nor ``x_`` extras."""
    rows_read: int = 0
    """Rows in the source table, before exclusions."""
    purpose: Purpose = "train"
    supplies: tuple[str, ...] = ()
    """Canonical fields the source declares it supplies (:meth:`Mapping.supplied_fields`)."""
    absent: list[str] = field(default_factory=list)
    """Fields, labels and ``x_`` extras the table had no column for (null in ``frame``)."""

    @property
    def expected(self) -> list[str]:
        """The supplied fields this table must provide: all of them for training; for scoring, all
        but the outcomes (new claims have none yet)."""
        if self.purpose == "train":
            return list(self.supplies)
        return [c for c in self.supplies if BY_NAME[c].stage == "notice"]


def builtin_mapping_path(name: str) -> Path:
    return _HERE / f"{name}.yaml"


def load_mapping(source: str) -> Mapping:
    """The mapping for a built-in source name or ``mapping:PATH.yaml``."""
    if source.startswith(MAPPING_PREFIX):
        path = source[len(MAPPING_PREFIX) :]
        if not path:
            raise MappingError("source 'mapping:' needs a file, e.g. mapping:my_claims.yaml")
        return read_mapping(path)
    if source in BUILTIN_SOURCES:
        path = builtin_mapping_path(source)
        return parse_mapping(path.read_text(encoding="utf-8"), path.name)
    raise MappingError(
        f"unknown source '{source}': use one of {', '.join(BUILTIN_SOURCES)}, "
        f"or {MAPPING_PREFIX}PATH.yaml for your own mapping"
    )


def load_claims(
    data: str | Path | None, source: str, settings: Settings | None = None, *, purpose: Purpose = "train"
) -> LoadedClaims:
    """Read ``data`` with the mapping ``source`` and return the canonical frame and what was done.

    ``purpose="train"`` needs every column the mapping reads, labels included. ``purpose="score"``
    reads new claims: a field, label or extra whose source column(s) the table lacks is null (listed
    in ``LoadedClaims.absent``; required fields must still be there), so a label whose inputs are
    absent is null rather than an error.
    """
    settings = settings or load_settings()
    declared = mapping = load_mapping(source)
    if source == HISTORY_SOURCE:
        raw, origin = _read_history(data, settings)
        # what the store holds values for is what it supplies (a field no claim has stays unsupplied)
        provided = [c for c in raw.columns if raw[c].notna().any()]
        declared = mapping = mapping.model_copy(update={"supplies": provided})
    else:
        raw, origin = _read(data, source, mapping, settings)
    have = set(raw.columns)
    absent: list[str] = []
    if purpose == "score":
        mapping, absent = without_absent(declared, have)
    else:
        _check_labels(declared, have, origin)
    missing = [c for c in mapping.source_columns() if c not in have]
    if missing:
        raise MappingError(f"{origin}: lacks column(s) that mapping '{mapping.name}' needs: {', '.join(missing)}")
    if declared.identity:
        computed = {*declared.fields, *declared.labels}
        absent += [c for c in declared.supplied_fields() if c not in have and c not in computed]
    try:
        mapped = apply_mapping(raw, mapping, Identity.from_settings(settings), origin=origin)
    except MappingError as exc:
        raise MappingError(f"mapping '{mapping.name}' on {origin}: {exc}") from None
    return LoadedClaims(
        frame=mapped.frame,
        type_problems=_merge(mapped.type_problems),
        source=source,
        mapping=declared,
        excluded=mapped.excluded,
        extras=mapping_extras(mapping, mapped.frame),
        null_rates=dict(mapping.null_rates),
        adjusted=mapped.adjusted,
        ignored_columns=mapped.ignored_columns,
        rows_read=len(raw),
        purpose=purpose,
        supplies=tuple(declared.supplied_fields()),
        absent=absent,
    )


def _read(data: str | Path | None, source: str, mapping: Mapping, settings: Settings) -> tuple[pd.DataFrame, str]:
    """The source table of a file or SQL mapping, and how to name it in messages."""
    default = data is None and mapping.default_data is not None and not mapping.read.url
    if default:
        data = Path(settings.shared_data) / str(mapping.default_data)
    if data is None and not mapping.read.url:
        raise DataFileError(
            f"source '{source}' has no default data: give the claims file (or a SQLAlchemy URL for a SQL mapping)"
        )
    origin = readers.describe(data if data is not None else mapping.read.url)
    try:
        return readers.read_table(data, mapping.read, text_columns=_text_columns(mapping)), origin
    except DataFileError as exc:
        if not default:
            raise
        raise DataFileError(
            f"{exc} (the default file for source '{source}': give the file's path, "
            "or set shared_data in the configuration)"
        ) from None


def _read_history(data: str | Path | None, settings: Settings) -> tuple[pd.DataFrame, str]:
    """The claims of the history store at ``settings.history_url``, or at ``data`` when it is a
    SQLAlchemy URL (another store); anything else given as ``data`` is refused."""
    if data is not None and not readers.is_url(data):
        raise DataFileError(
            f"source '{HISTORY_SOURCE}' reads a claim history store, not a file ('{data}'): give no --data "
            "to read the configured history_url, or the SQLAlchemy URL of another store"
        )
    url = str(data) if data is not None else settings.resolved().history_url
    return readers.read_history(url), readers.describe(url)


def _check_labels(m: Mapping, have: set[str], origin: str) -> None:
    """Training needs the label columns: one line naming the label and the column(s) it lacks (when
    other columns are missing too, the caller's line lists them all)."""
    label_columns = {c for spec in m.labels.values() for c in spec.source_columns()}
    if any(c not in have and c not in label_columns for c in m.source_columns()):
        return
    problems = []
    for name, spec in m.labels.items():
        lacking = [c for c in spec.source_columns() if c not in have]
        if lacking:
            what = f"no {lacking[0]} column" if len(lacking) == 1 else f"no {', '.join(lacking)} columns"
            problems.append(f"{name}: the table has {what}, which the mapping's label needs")
    if problems:
        raise MappingError("; ".join(problems) + f" ({origin}, mapping '{m.name}'; scoring new claims needs no labels)")


def without_absent(m: Mapping, have: set[str]) -> tuple[Mapping, list[str]]:
    """``m`` without the fields, labels and extras whose source columns are not in ``have`` (required
    fields are kept: their absence stays an error), and the columns so left out."""

    def readable(spec) -> bool:
        return all(c in have for c in spec.source_columns())

    fields = {n: s for n, s in m.fields.items() if readable(s) or BY_NAME[n].required}
    fields = {  # a week_date placed after a field left out cannot be placed
        n: s for n, s in fields.items() if not (s.week_date and s.week_date.after and s.week_date.after not in fields)
    }
    extras = {n: s for n, s in m.extras.items() if readable(s)}
    gone_extras = {EXTRA_PREFIX + n for n in m.extras if n not in extras}
    labels = {n: s for n, s in m.labels.items() if readable(s) and not _reads(s.rule, gone_extras)}
    absent = [
        *(n for n in m.fields if n not in fields),
        *(n for n in m.labels if n not in labels),
        *(EXTRA_PREFIX + n for n in m.extras if n not in extras),
    ]
    return m.model_copy(update={"fields": fields, "labels": labels, "extras": extras}), absent


def _reads(rule: str | None, names: set[str]) -> bool:
    """Whether a label rule reads any of ``names`` (a rule that does not parse is reported later)."""
    if not rule or not names:
        return False
    try:
        return bool(rule_names(rule) & names)
    except SyntaxError:
        return False


def _text_columns(m: Mapping) -> tuple[str, ...]:
    """Source columns to read as text: identifiers keep leading zeros."""
    cols = set(m.id_columns)
    for name, spec in m.fields.items():
        if BY_NAME[name].dtype == "id" and spec.column:
            cols.add(spec.column)
    if m.identity:
        cols |= {f.name for f in BY_NAME.values() if f.dtype == "id"}
    return tuple(sorted(cols))


def mapping_extras(m: Mapping, frame: pd.DataFrame) -> dict[str, ExtraSpec]:
    out: dict[str, ExtraSpec] = {}
    for col in extra_columns(frame.columns):
        entry = m.extras.get(col[len(EXTRA_PREFIX) :])
        if entry is not None:
            order = tuple(str(v) for v in entry.order) if entry.type == "ordinal" and entry.order else None
            out[col] = ExtraSpec(entry.type, entry.description, order)
        else:
            kind = "float" if pd.api.types.is_float_dtype(frame[col]) else "category"
            out[col] = ExtraSpec(kind, "passed through from the table (not described by the mapping)")
    return out


def _merge(problems: list[TypeProblem]) -> list[TypeProblem]:
    """One entry per column: counts summed, up to five examples."""
    merged: dict[str, tuple[int, list[str]]] = {}
    for col, count, examples in problems:
        n, ex = merged.get(col, (0, []))
        merged[col] = (n + count, list(dict.fromkeys(ex + examples))[:5])
    return [(col, n, ex) for col, (n, ex) in merged.items()]

"""Bring real tables into the canonical claims schema.

    from features.data.sources import load_claims
    loaded = load_claims("claims.csv", "mapping:my_claims.yaml")
    loaded.frame            # canonical columns in schema order, canonical dtypes, then x_ extras

``source`` is a built-in name (:data:`BUILTIN_SOURCES`) or ``mapping:PATH.yaml``; the mapping
language is documented in :mod:`features.data.sources.mapping`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from features.config import Settings, load_settings
from features.data.sources import readers
from features.data.sources.apply import apply_mapping
from features.data.sources.mapping import Mapping, parse_mapping, read_mapping
from features.errors import DataFileError, MappingError
from features.schema import BY_NAME, EXTRA_PREFIX, TypeProblem, extra_columns

__all__ = ["BUILTIN_SOURCES", "ExtraSpec", "LoadedClaims", "Mapping", "load_claims", "load_mapping"]

_HERE = Path(__file__).parent
BUILTIN_SOURCES: tuple[str, ...] = ("synthetic", "vehicle_fraud", "aus_bodily_injury")
MAPPING_PREFIX = "mapping:"


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


def load_claims(data: str | Path | None, source: str, settings: Settings | None = None) -> LoadedClaims:
    """Read ``data`` with the mapping ``source`` and return the canonical frame and what was done."""
    settings = settings or load_settings()
    mapping = load_mapping(source)
    default = data is None and mapping.default_data is not None and not mapping.read.url
    if default:
        data = Path(settings.shared_data) / str(mapping.default_data)
    if data is None and not mapping.read.url:
        raise DataFileError(
            f"source '{source}' has no default data: give the claims file (or a SQLAlchemy URL for a SQL mapping)"
        )
    origin = readers.describe(data if data is not None else mapping.read.url)
    try:
        raw = readers.read_table(data, mapping.read, text_columns=_text_columns(mapping))
    except DataFileError as exc:
        if not default:
            raise
        raise DataFileError(
            f"{exc} (the default file for source '{source}': give the file's path, "
            "or set shared_data in the configuration)"
        ) from None
    missing = [c for c in mapping.source_columns() if c not in raw.columns]
    if missing:
        raise MappingError(f"{origin}: lacks column(s) that mapping '{mapping.name}' needs: {', '.join(missing)}")
    try:
        mapped = apply_mapping(raw, mapping, settings.hash_salt, origin=origin)
    except MappingError as exc:
        raise MappingError(f"mapping '{mapping.name}' on {origin}: {exc}") from None
    return LoadedClaims(
        frame=mapped.frame,
        type_problems=_merge(mapped.type_problems),
        source=source,
        mapping=mapping,
        excluded=mapped.excluded,
        extras=_extras(mapping, mapped.frame),
        null_rates=dict(mapping.null_rates),
        adjusted=mapped.adjusted,
        ignored_columns=mapped.ignored_columns,
        rows_read=len(raw),
    )


def _text_columns(m: Mapping) -> tuple[str, ...]:
    """Source columns to read as text: identifiers keep leading zeros."""
    cols = set(m.id_columns)
    for name, spec in m.fields.items():
        if BY_NAME[name].dtype == "id" and spec.column:
            cols.add(spec.column)
    if m.identity:
        cols |= {f.name for f in BY_NAME.values() if f.dtype == "id"}
    return tuple(sorted(cols))


def _extras(m: Mapping, frame: pd.DataFrame) -> dict[str, ExtraSpec]:
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

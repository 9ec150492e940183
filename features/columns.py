"""Canonical claims as columns of numpy arrays: what the live path uses instead of a DataFrame.

Every DataFrame operation has a fixed cost, which is nothing spread over a table of a million
claims and dominates a feature pass over one live claim and its history.
:func:`features.build.build_features` therefore reads its input through :class:`Reader`, which
accepts either a DataFrame or a ``Columns`` dict, and the service builds that dict straight from
validated requests and stored history rows.

Array types by schema type: ``datetime`` -> ``datetime64[ns]`` (NaT when missing), ``float`` /
``int`` / ``bool`` -> ``float64`` (NaN when missing), ``id`` / ``category`` -> ``object`` (``None``
when missing). Extras (``x_`` columns) are ``object`` arrays of numbers or text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from features import schema

Columns = dict[str, np.ndarray]
"""Column name -> one array per column, all of the same length."""

_DATETIME = "datetime64[ns]"


def array_dtype(name: str) -> str:
    """The numpy dtype of a canonical column (``object`` for extras)."""
    field = schema.BY_NAME.get(name)
    if field is None:
        return "object"
    if field.dtype == "datetime":
        return _DATETIME
    if field.dtype in ("float", "int", "bool"):
        return "float64"
    return "object"


def from_records(records: Sequence[Mapping[str, Any]], names: Iterable[str] = schema.COLUMNS) -> Columns:
    """Columns of plain records (dicts of Python values; a missing key or ``None`` is missing),
    e.g. validated requests. Datetimes with a time zone are converted to UTC (as
    :func:`features.schema.conform` does). Extras present in any record are kept."""
    names = list(names)
    extra = sorted({k for r in records for k in r if k.startswith(schema.EXTRA_PREFIX) and k not in names})
    out: Columns = {}
    for name in names + extra:
        values = [r.get(name) for r in records]
        out[name] = _typed(values, array_dtype(name))
    return out


def from_frame(frame: pd.DataFrame) -> Columns:
    """Columns of a canonical frame (its canonical columns and extras)."""
    reader = Reader(frame)
    return {name: reader.get(name) for name in [*schema.COLUMNS, *schema.extra_columns(frame.columns)]}


def from_rows(rows: Sequence[Sequence[Any]], names: Sequence[str]) -> Columns:
    """Columns of database rows (tuples in ``names`` order)."""
    data = list(zip(*rows)) if rows else [()] * len(names)
    return {name: _typed(list(values), array_dtype(name)) for name, values in zip(names, data)}


def _typed(values: list, dtype: str) -> np.ndarray:
    if dtype == _DATETIME:  # numpy reads ISO text, naive datetimes and None (NaT) in bulk
        if any(isinstance(v, datetime) and v.tzinfo is not None for v in values):
            values = [_naive_utc(v) for v in values]
        return np.array(values, dtype=_DATETIME)
    if dtype == "float64":  # numpy reads None as NaN, and bools, ints and decimals as numbers
        return np.array(values, dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _naive_utc(v: Any) -> Any:
    if isinstance(v, datetime) and v.tzinfo is not None:
        return v.astimezone(UTC).replace(tzinfo=None)
    return v


def concat(first: Columns, second: Columns) -> Columns:
    """Rows of ``first`` then ``second`` (columns of either; a column one lacks is missing there)."""
    n1, n2 = length(first), length(second)
    out: Columns = {}
    for name in dict.fromkeys([*first, *second]):
        a = first.get(name)
        b = second.get(name)
        dtype = (a if a is not None else b).dtype
        out[name] = np.concatenate(
            [a if a is not None else missing(n1, dtype), b if b is not None else missing(n2, dtype)]
        )
    return out


def missing(n: int, dtype: Any) -> np.ndarray:
    """``n`` missing values of ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.kind == "M":
        return np.full(n, np.datetime64("NaT"), dtype=dtype)
    if dtype.kind == "f":
        return np.full(n, np.nan)
    return np.full(n, None, dtype=object)


def length(cols: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(cols.values()))) if cols else 0


class Reader:
    """Uniform access to a DataFrame or a ``Columns`` dict, column by column in the array types above.

    For a DataFrame, identifiers stay pandas Series (factorising them is faster than on Python
    objects); everything else becomes a numpy array once and is cached.
    """

    def __init__(self, data: pd.DataFrame | Mapping[str, np.ndarray]):
        self.data = data
        self.is_frame = isinstance(data, pd.DataFrame)
        self.n = len(data) if self.is_frame else length(data)  # type: ignore[arg-type]
        self._cache: dict[str, np.ndarray] = {}

    def __contains__(self, name: str) -> bool:
        return name in (self.data.columns if self.is_frame else self.data)  # type: ignore[union-attr]

    def provided(self, name: str) -> bool:
        """Present and not entirely missing."""
        if name not in self:
            return False
        if self.is_frame:
            return bool(self.data[name].notna().any())  # type: ignore[index]
        return bool(pd.notna(self.data[name]).any())  # type: ignore[index]

    def get(self, name: str) -> np.ndarray:
        """The column as an array of its canonical array type (all missing if absent)."""
        if name not in self._cache:
            dtype = array_dtype(name)
            if name not in self:
                self._cache[name] = missing(self.n, dtype)
            elif not self.is_frame:
                self._cache[name] = np.asarray(self.data[name])  # type: ignore[index]
            else:
                s = self.data[name]  # type: ignore[index]
                if dtype == _DATETIME:
                    self._cache[name] = s.to_numpy(dtype=_DATETIME)
                elif dtype == "float64":
                    self._cache[name] = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                else:
                    self._cache[name] = s.to_numpy(dtype=object, na_value=None)
        return self._cache[name]

    def keys(self, name: str) -> Any:
        """An identifier column for factorising (a Series for a DataFrame, else an object array)."""
        if self.is_frame and name in self:
            return self.data[name]  # type: ignore[index]
        return self.get(name)

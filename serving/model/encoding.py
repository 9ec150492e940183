"""Feature tables to model matrices: the preprocessing that travels with a model.

A :class:`FeatureEncoder` is fitted on a training feature table. It fixes the column order and each
categorical feature's categories (code = position in the list). Transforming gives a float64 matrix
that LightGBM reads directly: categorical codes as small integers, missing and unseen categories as
NaN (LightGBM sends both the same way at a categorical split). Training, batch scoring and the live
service all go through it, so a table and a single claim give identical predictions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.catalog import Feature

MAX_CATEGORIES = 500
"""Categories kept per feature (most frequent first); rarer ones are treated as unseen."""


@dataclass(frozen=True)
class FeatureEncoder:
    features: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Categorical feature -> its categories; every other feature is numeric."""

    @classmethod
    def fit(cls, table: pd.DataFrame, features: Sequence[Feature]) -> FeatureEncoder:
        cats: dict[str, tuple[str, ...]] = {}
        for f in features:
            if f.kind == "categorical":
                counts = table[f.name].dropna().astype("str").value_counts(sort=False)
                top = counts.sort_index().sort_values(ascending=False, kind="stable").head(MAX_CATEGORIES)
                cats[f.name] = tuple(sorted(top.index))
        return cls(tuple(f.name for f in features), cats)

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, name in enumerate(self.features) if name in self.categories]

    def transform(self, table: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
        """The model matrix (rows of ``table``, columns in the encoder's order). ``table`` may be a
        dict of arrays, as :func:`features.build.build_features` answers for the live path."""
        missing = [name for name in self.features if name not in table]
        if missing:
            raise KeyError(f"feature table lacks {', '.join(missing)}")
        if not isinstance(table, pd.DataFrame):
            return self._transform_arrays(table)
        out = np.empty((len(table), len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            col = table[name]
            if name in self.categories:
                codes = pd.Categorical(col.astype("str").where(col.notna()), categories=self.categories[name]).codes
                out[:, j] = np.where(codes >= 0, codes, np.nan)
            else:
                out[:, j] = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    def _transform_arrays(self, table: Mapping[str, np.ndarray]) -> np.ndarray:
        n = len(table[self.features[0]]) if self.features else 0
        out = np.empty((n, len(self.features)), dtype=np.float64)
        lookup = self._lookup()
        for j, name in enumerate(self.features):
            if name in self.categories:
                codes = lookup[name]
                out[:, j] = [np.nan if v is None else codes.get(v, np.nan) for v in table[name]]
            else:
                out[:, j] = table[name]
        return out

    def _lookup(self) -> dict[str, dict[str, int]]:
        cached = self.__dict__.get("_lookup_cache")
        if cached is None:
            cached = {n: {c: i for i, c in enumerate(cats)} for n, cats in self.categories.items()}
            object.__setattr__(self, "_lookup_cache", cached)
        return cached

    def to_dict(self) -> dict:
        return {"features": list(self.features), "categories": {k: list(v) for k, v in self.categories.items()}}

    @classmethod
    def from_dict(cls, data: Mapping) -> FeatureEncoder:
        return cls(tuple(data["features"]), {k: tuple(v) for k, v in data.get("categories", {}).items()})

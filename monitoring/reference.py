"""The reference: a compact summary of the model's test period, stored with the model at training time
so monitoring never needs the training data again (plain JSON, a few hundred kB for ~100 features).

What it holds (every figure rounded to 8 significant digits; a missing figure is ``None``):

- ``numeric[name]`` and ``scores[task]``: ``rows``, ``null_rate``, ``mean``, ``std`` (of the values
  present), ``min``, ``max``, ``quantiles`` (101, at levels 0, 0.01, ..., 1) and ``tails`` (the means
  of the lowest and highest 1% of values). Quantiles give the Wasserstein distance and an approximate
  Kolmogorov-Smirnov test against a live sample; the tail means stand in for the extreme quantiles in
  the distance, where the minimum and maximum of a heavy-tailed amount are too noisy.
- ``categorical[name]``: ``rows``, ``null_rate``, ``distinct`` (number of categories), ``frequencies``
  (share of the values present, for the :data:`TOP_CATEGORIES` most frequent) and ``other`` (the share
  of the rest; 0 when every category is listed).
- ``routes``: share of claims per route. ``metrics``: the test period's metrics per task, as given.
- ``multivariate``: NannyML's reconstruction error (see :func:`fit_multivariate`), or ``None``.
- ``extra``: free-form facts the caller records (period, red-flag score, ...), kept as given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import DataFileError

FORMAT = 1
LEVELS = np.linspace(0.0, 1.0, 101)
"""Quantile levels stored per numeric feature and score."""
TAIL = 0.01
"""Share of values at each end summarised by its mean instead of its quantiles."""
TOP_CATEGORIES = 50
PCA_VARIANCE = 0.65
"""Share of the standardised variance the kept principal components explain (NannyML's default)."""
PCA_MAX_ROWS = 50_000
"""Rows sampled (seeded) to fit the principal components; the error is measured on every row."""
CHUNK_ROWS = 1_000
"""Rows per reference chunk (fewer for small references: a tenth of them)."""
MIN_MULTIVARIATE_ROWS = 20
_BLOCK_ROWS = 100_000
_DIGITS = 8


@dataclass(frozen=True)
class Reference:
    numeric: dict[str, dict] = field(default_factory=dict)
    categorical: dict[str, dict] = field(default_factory=dict)
    scores: dict[str, dict] = field(default_factory=dict)
    routes: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    multivariate: dict | None = None
    extra: dict = field(default_factory=dict)
    rows: int = 0

    @property
    def features(self) -> list[str]:
        """Every summarised feature, numeric ones first."""
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "rows": self.rows,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "scores": self.scores,
            "routes": self.routes,
            "metrics": _plain(self.metrics),
            "multivariate": self.multivariate,
            "extra": _plain(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Reference:
        if data.get("format") != FORMAT:
            raise DataFileError(f"reference format {data.get('format')!r} is not {FORMAT}: retrain the model")
        metrics = {
            task: {k: math.nan if v is None else v for k, v in m.items()}
            for task, m in (data.get("metrics") or {}).items()
        }
        return cls(
            numeric=dict(data.get("numeric") or {}),
            categorical=dict(data.get("categorical") or {}),
            scores=dict(data.get("scores") or {}),
            routes=dict(data.get("routes") or {}),
            metrics=metrics,
            multivariate=data.get("multivariate"),
            extra=dict(data.get("extra") or {}),
            rows=int(data.get("rows", 0)),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        path = Path(path)
        if not path.is_file():
            raise DataFileError(f"reference {path} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataFileError(f"reference {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def build_reference(
    features: pd.DataFrame,
    categorical: Iterable[str],
    scores: Mapping[str, np.ndarray],
    routes: np.ndarray,
    metrics: Mapping[str, Mapping[str, float]],
    extra: Mapping | None = None,
    *,
    seed: int = 0,
) -> Reference:
    """Summarise a test period. Columns named in ``categorical``, and object, string and category
    columns, are categorical; every other column is numeric (non-numbers and infinities count as
    missing)."""
    named = set(categorical)
    numeric: dict[str, dict] = {}
    cats: dict[str, dict] = {}
    for name in features.columns:
        col = features[name]
        if name in named or is_categorical(col):
            cats[str(name)] = summarise_categorical(col)
        else:
            numeric[str(name)] = summarise_numeric(as_floats(col))
    return Reference(
        numeric=numeric,
        categorical=cats,
        scores={task: summarise_numeric(np.asarray(p, dtype=np.float64)) for task, p in scores.items()},
        routes=_route_shares(routes),
        metrics={task: {k: float(v) for k, v in m.items()} for task, m in metrics.items()},
        multivariate=fit_multivariate(features, numeric, seed=seed),
        extra=dict(extra or {}),
        rows=len(features),
    )


# --- summaries (drift computes the live side with the same functions) --------------------------


def is_categorical(col: pd.Series) -> bool:
    dtype = col.dtype
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def as_floats(col: pd.Series | np.ndarray) -> np.ndarray:
    """A column as float64, NaN where missing, not a number or infinite."""
    x = pd.to_numeric(pd.Series(col), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if not x.flags.owndata:  # a view of the caller's frame (read-only under copy-on-write): copy
        x = x.copy()
    x[~np.isfinite(x)] = np.nan
    return x


def sorted_values(x: np.ndarray) -> np.ndarray:
    """The values present, ascending."""
    return np.sort(x[~np.isnan(x)])


def quantiles(values: np.ndarray) -> np.ndarray:
    """Quantiles of sorted values at :data:`LEVELS` (linear interpolation, as ``np.quantile``; a sort
    is several times faster than ``np.quantile``'s partitions for 101 levels)."""
    pos = LEVELS * (len(values) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def tail_means(values: np.ndarray) -> tuple[float, float]:
    """Means of the lowest and highest :data:`TAIL` share of sorted values (at least one value each)."""
    m = max(1, int(round(TAIL * len(values))))
    return float(values[:m].mean()), float(values[-m:].mean())


def summarise_numeric(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64).copy()
    x[~np.isfinite(x)] = np.nan
    values = sorted_values(x)
    rows = len(x)
    out: dict[str, Any] = {"rows": rows, "null_rate": _r(1 - len(values) / rows) if rows else None}
    if not len(values):
        return out | {"mean": None, "std": None, "min": None, "max": None, "quantiles": [], "tails": []}
    return out | {
        "mean": _r(values.mean()),
        "std": _r(values.std()),
        "min": _r(values[0]),
        "max": _r(values[-1]),
        "quantiles": _rs(quantiles(values)),
        "tails": _rs(tail_means(values)),
    }


def category_counts(col: pd.Series) -> pd.Series:
    """Rows per category (as text, the way the model's encoder reads them), most frequent first, ties
    by name."""
    counts = pd.Series(col).value_counts(dropna=True, sort=False)
    counts = counts[counts > 0]
    counts.index = pd.Index(counts.index).astype("str")
    counts = counts.groupby(level=0, sort=True).sum()
    return counts.sort_values(ascending=False, kind="stable").astype(np.int64)


def summarise_categorical(col: pd.Series) -> dict:
    counts = category_counts(col)
    rows, present = len(col), int(counts.sum())
    top = counts.head(TOP_CATEGORIES)
    return {
        "rows": rows,
        "null_rate": _r(1 - present / rows) if rows else None,
        "distinct": len(counts),
        "frequencies": {str(k): _r(v / present) for k, v in top.items()},
        "other": _r(1 - top.sum() / present) if present else 0.0,
    }


def _route_shares(routes: np.ndarray) -> dict[str, float]:
    routes = np.asarray(routes).astype(str)
    if not len(routes):
        return {}
    names, counts = np.unique(routes, return_counts=True)
    return {str(n): _r(c / len(routes)) for n, c in zip(names, counts)}


# --- multivariate: NannyML's reconstruction error ------------------------------------------------


def fit_multivariate(features: pd.DataFrame, numeric: Mapping[str, dict], *, seed: int = 0) -> dict | None:
    """Principal components of the standardised numeric features, and how well they reconstruct the
    reference, as NannyML's data reconstruction drift does it.

    Missing values are imputed with the reference median, then each column is standardised by the
    mean and standard deviation of the imputed column (columns constant after imputation are left
    out). The components explaining :data:`PCA_VARIANCE` of the variance are fitted by SVD on up to
    :data:`PCA_MAX_ROWS` rows sampled with ``seed``. A row's error is the Euclidean distance between
    it and its reconstruction from the components.

    The reference's error is measured on all its rows, cut in consecutive chunks of ``chunk_size``
    rows (NannyML's chunks: in time order they carry the period's own variation, not only sampling
    noise). ``error_mean`` is the mean error and ``error_std`` the standard deviation of the chunk
    means: the noise of the mean error of a window of ``chunk_size`` rows. ``None`` when fewer than two
    numeric columns vary or there are fewer than :data:`MIN_MULTIVARIATE_ROWS` rows.
    """
    n = len(features)
    if n < MIN_MULTIVARIATE_ROWS:
        return None
    names, medians, means, stds = [], [], [], []
    for name, summary in numeric.items():
        if summary.get("mean") is None:
            continue
        median = summary["quantiles"][len(LEVELS) // 2]
        x = as_floats(features[name])
        x[np.isnan(x)] = median
        std = _r(x.std())
        if not std > 0:
            continue
        names.append(name)
        medians.append(median)
        means.append(_r(x.mean()))
        stds.append(std)
    if len(names) < 2:
        return None
    model: dict[str, Any] = {"features": names, "medians": medians, "means": means, "stds": stds}

    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, PCA_MAX_ROWS), replace=False))
    z = _standardised(features.take(sample), model)
    # the columns are centred on the whole reference's means, so the sample is (nearly) centred too
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    explained = np.cumsum(s**2) / np.sum(s**2)
    k = int(np.searchsorted(explained, PCA_VARIANCE) + 1)
    vt = vt[:k]
    # one sign per component (largest loading positive, as scikit-learn's svd_flip): deterministic output
    signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
    model["components"] = [_rs(row) for row in vt * signs[:, None]]
    model["explained_variance"] = _r(explained[k - 1])
    model["fit_rows"] = len(sample)

    errors = reconstruction_errors(model, features)
    chunk = min(CHUNK_ROWS, n // 10)
    means_per_chunk = errors[: (n // chunk) * chunk].reshape(-1, chunk).mean(axis=1)
    model["chunk_size"] = chunk
    model["chunks"] = len(means_per_chunk)
    model["error_mean"] = _r(errors.mean())
    model["error_std"] = _r(means_per_chunk.std(ddof=1))
    return model


def reconstruction_errors(model: Mapping, frame: pd.DataFrame) -> np.ndarray:
    """Per row of ``frame``: the distance between its standardised numeric features and their
    reconstruction from the reference's components (columns ``frame`` lacks count as the median)."""
    v = np.asarray(model["components"], dtype=np.float64)
    out = np.empty(len(frame), dtype=np.float64)
    for start in range(0, len(frame), _BLOCK_ROWS):
        z = _standardised(frame.iloc[start : start + _BLOCK_ROWS], model)
        out[start : start + len(z)] = np.linalg.norm(z - (z @ v.T) @ v, axis=1)
    return out


def _standardised(frame: pd.DataFrame, model: Mapping) -> np.ndarray:
    z = np.empty((len(frame), len(model["features"])), dtype=np.float64)
    for j, name in enumerate(model["features"]):
        x = as_floats(frame[name]) if name in frame else np.full(len(frame), np.nan)
        x[np.isnan(x)] = model["medians"][j]
        z[:, j] = (x - model["means"][j]) / model["stds"][j]
    return z


# --- JSON ---------------------------------------------------------------------------------------


def _r(v: float) -> float:
    """A figure to 8 significant digits (compact JSON; far finer than any drift threshold)."""
    return float(f"{float(v):.{_DIGITS}g}")


def _rs(values: Iterable[float]) -> list[float]:
    return [float(s) for s in np.char.mod(f"%.{_DIGITS}g", np.asarray(values, dtype=np.float64))]


def _plain(v: Any) -> Any:
    """JSON-able: numpy scalars and arrays -> Python, NaN and infinities -> None."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v

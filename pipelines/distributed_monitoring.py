"""Monitoring a table on Dask: a window larger than one process's memory, with the figures
``claimscore monitor --data`` gives in one process.

Every row-wise step runs where the claims are, partition by partition, as in-process monitoring
runs it on the whole table (:func:`~monitoring.window.from_table`): the claims read and mapped
(:func:`~pipelines.distributed.read_claims_dask`), their point-in-time features over the whole
table (:func:`~pipelines.distributed.build_features_dask`: earlier claims are the window's history),
the champion's scores, routes and rules, each row's multivariate reconstruction error, and the
quality suite (:func:`monitoring.quality.part_checks`; the parts' checks are merged). The window's
rows, put back in the table's order, are written to a Parquet folder beside the report.

What needs the whole window (distributions, performance, fairness, KPIs) is the very code of an
in-process run (:func:`monitoring.monitor.monitor`), handed a :class:`~monitoring.window.Window`
whose claims and features are read from that folder one column at a time (:class:`ParquetColumns`):
the process holds a few columns of the window, never the window. Scores, routes and rules are held
whole (three values a claim). The folder is removed once the report is written.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.data.validation import provided_of
from features.errors import SchemaError
from monitoring.quality import Parts, part_checks
from monitoring.reference import Reference, reconstruction_errors
from monitoring.window import Window
from pipelines.distributed import (
    KEY,
    ROW_INDEX,
    SHUFFLE_METHOD,
    build_features_dask,
    canonical_dtypes,
    read_claims_dask,
)

if TYPE_CHECKING:
    from features.config import Settings
    from serving.model.scorer import Scorer

CLAIM, FEATURE, SCORE = "claim.", "feature.", "score."
"""Prefixes of the window folder's columns: a claim's fields, its features, its scores by task."""
ROUTE, RULES, ERROR = "route", "rules", "reconstruction_error"
WINDOW_FOLDER = "window.parquet"
"""The window's rows, in the run's folder while the run lasts."""
_NO_RULES: list[str] = []


def dask_table_window(
    data: str | Path,
    source: str,
    scorer: Scorer,
    reference: Reference,
    settings: Settings,
    folder: Path,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
) -> Window:
    """The claims of a Parquet table reported in ``[since, until)`` as :func:`~monitoring.window.from_table`
    makes them, made on the Dask cluster the caller's client is connected to; the window's rows are
    kept in ``folder/window.parquet`` (see the module docstring; :func:`remove_window` when done)."""
    import dask

    claims = read_claims_dask(data, settings, source, numbered=True)
    numbered = claims.frame
    extras = {**scorer.extras, **claims.extras}
    features = build_features_dask(numbered.clear_divisions(), scorer.features, extras)
    shipped = dask.delayed(scorer, name=f"claimscore-scorer-{uuid.uuid4().hex}", traverse=False)
    model = reference.multivariate
    meta = _window_part(features._meta, scorer, model)
    scored = features.map_partitions(_window_part, shipped, model, meta=meta)
    # back in the table's order: each scored row finds its position, then the claims' partitions
    positions = numbered[[KEY]].reset_index()
    scored = scored.merge(positions, left_index=True, right_on=KEY, how="left", shuffle_method=SHUFFLE_METHOD)
    scored = scored.drop(columns=[KEY]).set_index(
        ROW_INDEX, divisions=numbered.divisions, shuffle_method=SHUFFLE_METHOD
    )
    whole = numbered.rename(columns={c: CLAIM + c for c in numbered.columns}).join(scored, how="left")
    kept = whole.map_partitions(_reported_in, since, until, meta=whole._meta)

    out = Path(folder) / WINDOW_FOLDER
    shutil.rmtree(out, ignore_errors=True)
    write = kept.to_parquet(str(out), write_index=False, compute=False, name_function=_part_name)
    _, present, last_report, rows = dask.compute(
        write,
        kept[[CLAIM + c for c in numbered.columns]].notnull().any(),
        numbered["report_date"].max(),
        kept.map_partitions(len),
    )
    files = sorted(out.glob("part.*.parquet"))
    provided = provided_of({c.removeprefix(CLAIM): bool(v) for c, v in present.items()})
    starts = np.concatenate([[0], np.cumsum(rows)]).astype(int)  # each partition's first row in the window
    first_rows = [int(starts[int(f.name.split(".")[1])]) for f in files]
    checks = dask.compute(*[dask.delayed(_quality_of)(str(f), provided, a) for f, a in zip(files, first_rows)])
    window = _read_window(files, list(numbered.columns), scorer, model is not None)
    window.as_of = pd.Timestamp(until) if until is not None else pd.Timestamp(last_report)
    window.quality_parts = Parts(checks, int(sum(rows)), provided, list(numbered.columns))
    return window


def remove_window(folder: Path) -> None:
    """The window's rows are gone once the report is written (they hold its claims' identifiers)."""
    shutil.rmtree(Path(folder) / WINDOW_FOLDER, ignore_errors=True)


class ParquetColumns:
    """The columns of a frame kept in Parquet files (read in the files' order), each read when asked
    for: what :mod:`monitoring` reads of a window (``name in``, ``[name]``, ``[names]``, ``len``,
    ``columns``) without holding the frame. Claim fields come back with the schema's dtypes;
    ``keep``: columns read once are kept (claims' fields, which several sections read)."""

    def __init__(self, files: Sequence[Path], prefix: str, names: Sequence[str], rows: int, keep: bool = False):
        self.files, self.prefix, self.rows, self.keep = list(files), prefix, rows, keep
        self.columns = pd.Index(list(names))
        self._kept: dict[str, pd.Series] = {}

    def __len__(self) -> int:
        return self.rows

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    @property
    def index(self) -> pd.RangeIndex:
        return pd.RangeIndex(self.rows)

    def __getitem__(self, key: str | Sequence[str]) -> pd.Series | pd.DataFrame:
        if not isinstance(key, str):
            return pd.DataFrame({name: self[name] for name in key}, index=self.index)
        if key in self._kept:
            return self._kept[key]
        if key not in self.columns:
            raise KeyError(key)
        column = _read_column(self.files, self.prefix + key).rename(key)
        if self.prefix == CLAIM:
            column = canonical_dtypes(column.to_frame())[key]
        if self.keep:
            self._kept[key] = column
        return column


def _window_part(features: pd.DataFrame, scorer: Scorer, model: dict | None) -> pd.DataFrame:
    """One partition of features (indexed by ``claim_id``) with what monitoring reads of its claims:
    features, scores, route, rules (JSON text) and reconstruction error (NaN without a model)."""
    if features.index.has_duplicates or features.index.isna().any():
        twice = features.index[features.index.duplicated() | features.index.isna()].unique()[:3]
        raise SchemaError(
            f"claim_id is missing or not unique (e.g. {', '.join(map(str, twice))}): "
            "monitoring on Dask needs one row per claim"
        )
    out = features.rename(columns={c: FEATURE + c for c in features.columns})
    scored = scorer.score_features(features, reasons=False) if len(features) else None
    for task in scorer.bundles:
        out[SCORE + task] = scored.scores[task] if scored else np.empty(0)
    out[ROUTE] = pd.Series(scored.routes if scored else [], index=features.index, dtype="str")
    out[RULES] = pd.Series(
        [json.dumps(list(r)) for r in scored.rules] if scored else [], index=features.index, dtype="str"
    )
    out[ERROR] = reconstruction_errors(model, features) if model and len(features) else np.nan
    return out


def _reported_in(part: pd.DataFrame, since: pd.Timestamp | None, until: pd.Timestamp | None) -> pd.DataFrame:
    reported = pd.to_datetime(part[CLAIM + "report_date"])
    keep = np.ones(len(part), dtype=bool)
    if since is not None:
        keep &= (reported >= pd.Timestamp(since)).to_numpy()
    if until is not None:
        keep &= (reported < pd.Timestamp(until)).to_numpy()
    return part[keep]


def _part_name(i: int) -> str:
    return f"part.{i:06d}.parquet"  # names sort in the partitions' order


def _quality_of(file: str, provided: list[str], first_row: int):
    """The quality suite's checks of one written part's claims (run by a worker)."""
    import pyarrow.parquet as pq

    names = [n for n in pq.read_schema(file).names if n.startswith(CLAIM)]
    claims = pq.read_table(file, columns=names).to_pandas()
    claims.columns = [n.removeprefix(CLAIM) for n in names]
    return part_checks(canonical_dtypes(claims).reset_index(drop=True), provided, first_row)


def _read_column(files: Sequence[Path], name: str) -> pd.Series:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(f, columns=[name]) for f in files])
    return table.column(0).to_pandas().reset_index(drop=True)


def _read_window(files: Sequence[Path], claim_names: list[str], scorer: Scorer, errors: bool) -> Window:
    import pyarrow.parquet as pq

    names = pq.read_schema(files[0]).names
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    claims = ParquetColumns(files, CLAIM, claim_names, rows, keep=True)
    feature_names = [n.removeprefix(FEATURE) for n in names if n.startswith(FEATURE)]
    features = ParquetColumns(files, FEATURE, feature_names, rows)
    scores = {t: _read_column(files, SCORE + t).to_numpy(dtype=np.float64) for t in scorer.bundles}
    rules = [_NO_RULES if t == "[]" else json.loads(t) for t in _read_column(files, RULES)]
    return Window(
        claims=claims,
        features=features,
        scores=scores,
        routes=_read_column(files, ROUTE).to_numpy(dtype=object),
        rules=rules,
        decided_at=pd.to_datetime(claims["report_date"]),
        policy=scorer.policy,
        as_of=pd.NaT,
        kind="table",
        reconstruction_errors=_read_column(files, ERROR).to_numpy(dtype=np.float64) if errors else None,
    )

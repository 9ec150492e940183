"""Point-in-time features on Dask: the very same :func:`~features.build.build_features`, run per partition.

Use :func:`build_features_dask` when the claims do not fit in one machine's memory. For data that
fits, :func:`~features.build.build_features` on one pandas frame is faster: it needs no shuffles.

Every feature is a question about the claim itself, about earlier rows sharing one key, or about
the whole graph of linked claimants, so each is computed where those rows can meet:

- **row features** (notice and the source's extras) need only the row: ``map_partitions``;
- **keyed features** (history and per-identifier link counts) need every row of their key in one
  partition: the few columns a key family reads are shuffled by that key once (claimant, policy,
  provider, payee account, phone, address), rows with a null key are left out (their features are
  NaN), then ``build_features`` runs on each partition;
- **linked-group features** need the whole graph: identifiers, times and decisions of every claim
  (narrow even for tens of millions of rows) are gathered into one task that runs ``build_features``;
- every part is joined back on ``claim_id``.

Which family a feature belongs to and which columns it reads come from the catalog (its ``family``,
``needs`` and ``needs_any``); nothing here lists feature names.

:func:`local_cluster` starts a LocalCluster and a client, all listening on 127.0.0.1 only, for the
CLI and tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features import schema
from features.build import build_features, resolve
from features.catalog import Feature
from features.errors import DataFileError, SchemaError
from features.identity import Identity

if TYPE_CHECKING:  # dask is imported by the caller who hands us a dask frame
    import dask.dataframe as dd
    from distributed import Client

KEY = "claim_id"
ROW = "row"
GRAPH = "graph"
"""Pseudo-keys: features of the row alone, and features of the whole linked graph."""
SHUFFLE_METHOD = "tasks"
"""Dask's task-based shuffle. Its P2P shuffle is faster on large data but, with several shuffles and
merges in flight on a small cluster, failed now and then here ("P2PConsistencyError ... forgotten",
dask/distributed 2026.8); the task shuffle has not."""

_GRAPH_ALSO_READS = ("payee_type",)
"""Not in the group features' ``needs``, but read: accounts of providers paid directly link nobody."""


def shuffle_key(feature: Feature) -> str:
    """Where ``feature``'s rows must meet: ``ROW``, ``GRAPH``, or the identifier column it is keyed by."""
    if feature.family in ("notice", "extra"):
        return ROW
    if feature.needs_any:
        return GRAPH
    ids = [c for c in feature.needs if c in schema.BY_NAME and schema.BY_NAME[c].dtype == "id"]
    if feature.family == "link":  # counts distinct claimants per identifier: keyed by the identifier
        ids = [c for c in ids if c != "claimant_id"]
    if len(ids) != 1:
        raise ValueError(f"feature '{feature.name}': cannot tell which identifier it is keyed by ({ids})")
    return ids[0]


def plan(features: Sequence[Feature]) -> dict[str, list[Feature]]:
    """Features grouped by :func:`shuffle_key`, so each shuffle is done once (row features first)."""
    groups: dict[str, list[Feature]] = {ROW: []}
    for f in features:
        groups.setdefault(shuffle_key(f), []).append(f)
    return groups


def columns_read(key: str, features: Sequence[Feature], available: Sequence[str]) -> list[str]:
    """The narrow set of ``available`` columns that ``build_features`` reads for ``features``."""
    wanted: list[str] = [KEY]
    for f in features:
        wanted += [*f.needs, *f.needs_any]
    if key == GRAPH:
        wanted += list(_GRAPH_ALSO_READS)
    return [c for c in dict.fromkeys(wanted) if c in available]


def build_features_dask(
    claims: dd.DataFrame, features: Sequence[Feature | str], extras: Mapping[str, object] | None = None
) -> dd.DataFrame:
    """Features of every claim in a canonical dask frame, as :func:`~features.build.build_features`
    computes them, indexed by ``claim_id`` (hash-partitioned on it; divisions unknown), in the order
    asked for. Numeric features are float64, categorical ones strings.

    ``claim_id`` must be unique. Ask for the features a model was trained on (or those
    :func:`~features.build.available_features` finds on a sample).
    """
    if not hasattr(claims, "npartitions"):
        raise TypeError(
            f"claims must be a dask DataFrame, got {type(claims).__name__}; for a pandas frame use build_features"
        )
    wanted = resolve(features, extras)
    available = list(claims.columns)
    groups = plan(wanted)
    for key in [KEY, *(k for k in groups if k not in (ROW, GRAPH))]:
        if key not in available:
            raise SchemaError(
                f"column '{key}' is missing: it is needed to build "
                f"{', '.join(f.name for f in groups.get(key, [])) or 'any feature'}"
            )
    if len(groups) > 1 and "report_date" not in available:
        raise SchemaError("column 'report_date' is missing: history and link features need it")
    n = claims.npartitions

    def part(key: str, frame: dd.DataFrame) -> dd.DataFrame:
        names = [f.name for f in groups[key]]
        meta = _features_with_key(frame._meta, names, extras)
        return frame.map_partitions(_features_with_key, names, extras, meta=meta)

    out = part(ROW, claims[columns_read(ROW, groups[ROW], available)])
    for key, feats in groups.items():
        if key == ROW:
            continue
        narrow = claims[columns_read(key, feats, available)]
        if key == GRAPH:
            narrow = narrow.repartition(npartitions=1)
        else:
            narrow = narrow[~narrow[key].isna()].shuffle(key, npartitions=n, shuffle_method=SHUFFLE_METHOD)
        out = out.merge(part(key, narrow), on=KEY, how="left", npartitions=n, shuffle_method=SHUFFLE_METHOD)
    names = [f.name for f in wanted]
    return out.map_partitions(_indexed, names, meta=_indexed(out._meta, names), clear_divisions=True)


def _indexed(part: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    return part.set_index(KEY)[names]


def _features_with_key(part: pd.DataFrame, names: list[str], extras: Mapping[str, object] | None) -> pd.DataFrame:
    """``build_features`` of one partition, with its ``claim_id`` as the first column."""
    part = _canonical_dtypes(part)
    out = build_features(part, names, extras)
    out.insert(0, KEY, part[KEY].array)
    return out.reset_index(drop=True)


def _canonical_dtypes(part: pd.DataFrame) -> pd.DataFrame:
    """The schema's dtypes back. Dask turns text into ``string``, whose missing value is ``pd.NA``
    (canonical ``str`` has NaN); NA propagates through comparisons, so e.g. an account whose
    ``payee_type`` is unknown would drop out of the linked groups."""
    casts = {}
    for c, dtype in part.dtypes.items():
        field = schema.BY_NAME.get(c)
        if field is not None:
            target = pd.api.types.pandas_dtype(field.pandas_dtype)
            if dtype != target:
                casts[c] = target
        elif isinstance(dtype, pd.StringDtype) and dtype.na_value is pd.NA:
            casts[c] = "str"
    return part.astype(casts) if casts else part


@contextmanager
def local_cluster(
    n_workers: int = 2, threads_per_worker: int = 1, processes: bool = True, **worker_kwargs
) -> Iterator[Client]:
    """A ``distributed`` LocalCluster on 127.0.0.1 and a client to it; both closed on exit.

    Everything listens on 127.0.0.1: the scheduler, the workers (and their nannies), and the
    scheduler's HTTP endpoint, on a free port (``dashboard_address=None`` would still open it, on
    8787). Processes by default: the point-in-time sweeps are compiled and hold the GIL, so threads
    would take turns.
    """
    from distributed import Client, LocalCluster

    # tcp also for threads (processes=False would default to in-process comms, which reject a host);
    # silence_logs=ERROR: the P2P shuffle logs every routine start and end of a shuffle as a warning
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            host="127.0.0.1",
            protocol="tcp://",
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address=None,
            silence_logs=logging.ERROR,
            **worker_kwargs,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def features_to_parquet(data: str, out: str | Path, n_workers: int, identity: Identity) -> int:
    """Every feature a canonical Parquet file supports, on a loopback cluster of ``n_workers``
    processes, written as a Parquet folder ``out``; returns the number of claims. Personal
    identifiers are hashed by ``identity`` per partition, as ``load_claims`` does."""
    import dask.dataframe as dd

    from features.build import available_features

    if not Path(data).exists():
        raise DataFileError(f"{data}: no such file")
    with local_cluster(n_workers=n_workers):
        claims = dd.read_parquet(data).map_partitions(identity.hash_frame)
        sample = schema.conform(claims.head(50_000, npartitions=-1))  # which features the data supports
        table = build_features_dask(claims, available_features(sample))
        table.to_parquet(str(out), write_index=True, overwrite=True)
        return int(table.shape[0].compute())

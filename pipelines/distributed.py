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

Scoring on Dask is ``claimscore score``'s three steps, each run per partition:
:func:`read_claims_dask` maps every partition of a Parquet file or folder to the canonical schema by
the source's mapping, as :func:`~features.data.sources.load_claims` maps a whole table (identifiers
hashed by the settings' :class:`~features.identity.Identity`, inside the task that read them); the
champion's features come from :func:`build_features_dask`; :func:`score_dask` scores each partition
of features with :meth:`~serving.model.scorer.Scorer.score_features` (scores, routes, rules, exact
reasons: every value of a row depends on that row alone, so the partitioning changes nothing).
The scorer the caller loaded travels as one task of the graph: it is deserialised once per worker
(3 MB, 25 ms; 3 times for 10 partitions on 2 workers), and every partition is scored with the very
models the caller checked. :func:`write_scored` writes a Parquet folder.

Monitoring a table on Dask is :mod:`pipelines.distributed_monitoring`.

Memory: a worker holds a partition of ``PARTITION_ROWS`` claims, its share of each shuffle, and,
for the one task that builds the linked-group features, the identifiers and times of every claim.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pandas as pd

from features import schema
from features.build import build_features, resolve
from features.catalog import Feature
from features.errors import ClaimScoreError, DataFileError, MappingError, SchemaError
from features.identity import Identity
from features.sql import first_line

if TYPE_CHECKING:  # dask is imported by the caller who hands us a dask frame
    import dask.dataframe as dd
    from distributed import Client

    from features.config import Settings
    from features.data.sources import ExtraSpec
    from features.data.sources.mapping import Mapping as SourceMapping
    from serving.model.scorer import Scorer

T = TypeVar("T")
KEY = "claim_id"
ROW_INDEX = "position"
"""The index of claims read ``numbered``: each row's position in the data read."""
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
    part = canonical_dtypes(part)
    out = build_features(part, names, extras)
    out.insert(0, KEY, part[KEY].array)
    return out.reset_index(drop=True)


def canonical_dtypes(part: pd.DataFrame) -> pd.DataFrame:
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


def features_to_parquet(data: str, out: str | Path, n_workers: int, settings: Settings) -> int:
    """Every feature a canonical Parquet file or folder supports, on a loopback cluster of
    ``n_workers`` processes, written as a Parquet folder ``out``; returns the number of claims. The
    claims are read, mapped and hashed by :func:`read_claims_dask` (the path scoring reads them by)."""
    from features.build import available_features

    claims = read_claims_dask(data, settings)
    with local_cluster(n_workers=n_workers):
        sample = claims.frame.head(50_000, npartitions=-1)  # which features the data supports
        table = build_features_dask(claims.frame, available_features(sample, claims.extras), claims.extras)
        table.to_parquet(str(out), write_index=True, overwrite=True)
        return int(table.shape[0].compute())


# --- scoring ---------------------------------------------------------------------------------------

DASK_SOURCES = ("synthetic",)
"""Sources read on Dask: canonical claims (``claimscore generate``'s files, or a folder of them)."""
PARTITION_ROWS = 100_000
"""Claims per partition (a file's last one may have fewer): with the shuffles' shares, what bounds
a worker's memory (about 0.5 KB per claim read, plus its features, contributions and reasons)."""
READ_BATCH_ROWS = 16_384
"""Rows decoded at a time while a partition's rows are read from their row groups."""
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
SCHEDULER_TIMEOUT_S = 10
_DATASET_FILE = re.compile(r"(part\.\d+\.parquet|_metadata|_common_metadata)")
"""What a Parquet folder written by Dask holds; a folder holding anything else is not overwritten."""


@dataclass(frozen=True)
class DaskClaims:
    frame: dd.DataFrame
    """Canonical claims (schema columns and dtypes, then ``x_`` extras), one mapped partition per read one."""
    extras: dict[str, ExtraSpec]
    """``x_`` column -> type and description, as :func:`~features.data.sources.load_claims` says."""


def read_claims_dask(
    data: str | Path, settings: Settings, source: str = "synthetic", *, numbered: bool = False
) -> DaskClaims:
    """New claims of a Parquet file or folder as :func:`~features.data.sources.load_claims` reads
    them to score (``purpose="score"``), one partition per :func:`parquet_pieces` piece (in the
    files' order). ``numbered``: each claim's index is its row's position in the data (``ROW_INDEX``;
    the partitions' divisions known), else each partition's own.

    Each task reads its piece and maps it by :func:`~features.data.sources.apply.apply_mapping` with
    the source's mapping, so personal identifiers are normalised and hashed by the settings' identity
    on the same path as in one process, and a claim's raw identifiers never leave the task that read
    them (never a result a worker keeps, sends or spills)."""
    import dask
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    # the two steps load_claims takes around apply_mapping, shared rather than copied
    from features.data.sources import load_mapping, mapping_extras, without_absent

    if source not in DASK_SOURCES:
        raise MappingError(f"source '{source}' is not read on Dask: use {', '.join(DASK_SOURCES)} (canonical Parquet)")
    pieces = parquet_pieces(data)
    available = pq.read_schema(pieces[0][0]).names
    declared = load_mapping(source)
    mapping, _ = without_absent(declared, set(available))
    missing = [c for c in mapping.source_columns() if c not in available]
    if missing:
        raise MappingError(f"{data}: lacks column(s) that mapping '{mapping.name}' needs: {', '.join(missing)}")
    identity = Identity.from_settings(settings)
    starts = [0]
    for _, first, end in pieces:
        starts.append(starts[-1] + end - first)
    numbers = [start if numbered else None for start in starts[:-1]]
    meta = _read_mapped((pieces[0][0], 0, 0), 0 if numbered else None, available, mapping, identity, str(data))
    with dask.config.set({"dataframe.convert-string": False}):  # canonical text stays pandas' str (NaN)
        frame = dd.from_map(
            _read_mapped,
            pieces,
            numbers,
            args=[available, mapping, identity, str(data)],
            meta=meta,
            divisions=(*starts[:-1], starts[-1] - 1) if numbered else None,
            label="read-claims",
            enforce_metadata=False,
        )
    return DaskClaims(frame, mapping_extras(mapping, meta))


def parquet_pieces(data: str | Path) -> list[tuple[str, int, int]]:
    """``(file, first row, end row)`` of a Parquet file or of the Parquet files of a folder (by name),
    ``PARTITION_ROWS`` rows each (fewer at a file's end): what one task reads and scores."""
    import pyarrow.parquet as pq

    path = Path(data)
    if not path.exists():
        raise DataFileError(f"{data}: no such file or folder")
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix.lower() in PARQUET_SUFFIXES)
    if not files:
        raise DataFileError(f"{data}: holds no Parquet files ({', '.join(PARQUET_SUFFIXES)})")
    pieces = []
    for file in files:
        try:
            rows = pq.ParquetFile(file).metadata.num_rows
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
            raise DataFileError(f"{file}: not a readable Parquet file ({first_line(exc)})") from None
        pieces += [(str(file), a, min(a + PARTITION_ROWS, rows)) for a in range(0, rows, PARTITION_ROWS)]
    if not pieces:
        raise DataFileError(f"{data}: has no claims")
    return pieces


def _read_mapped(
    piece: tuple[str, int, int],
    start: int | None,
    names: list[str],
    mapping: SourceMapping,
    identity: Identity,
    origin: str,
) -> pd.DataFrame:
    """Rows ``[first, end)`` of a file read (as ``pandas.read_parquet`` reads a file) and mapped to the
    canonical schema, as ``load_claims`` maps a whole table; indexed from ``start`` (the piece's first
    row's position in the data) when given. (Not ``columns``: ``dd.from_map`` would pass its own, the
    mapped frame's.)"""
    from features.data.sources.apply import apply_mapping

    file, first, end = piece
    try:
        frame = apply_mapping(_read_rows(file, first, end, names), mapping, identity, origin=origin).frame
    except MappingError as exc:
        raise MappingError(f"mapping '{mapping.name}' on {origin}: {exc}") from None
    if start is not None:  # rows a mapping excludes leave gaps: positions stay within the piece's
        frame.index = pd.RangeIndex(start, start + len(frame), name=ROW_INDEX)
    return frame


def _read_rows(file: str, first: int, end: int, names: list[str]) -> pd.DataFrame:
    """Rows ``[first, end)`` of the columns ``names`` of a Parquet file, streamed from the row groups
    they lie in by batches of ``READ_BATCH_ROWS``: a row group larger than a partition (``claimscore
    generate`` writes about a million rows per group) is never held whole. ``first == end``: no rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(file)
    groups, start_of = [], None  # the row groups overlapping [first, end), and the row the first begins at
    offset = 0
    for i in range(reader.metadata.num_row_groups):
        n = reader.metadata.row_group(i).num_rows
        if offset < end and offset + n > first:
            groups.append(i)
            start_of = offset if start_of is None else start_of
        offset += n
    if not groups:
        return reader.schema_arrow.empty_table().select(names).to_pandas()
    kept, offset = [], start_of
    batches = reader.iter_batches(READ_BATCH_ROWS, row_groups=groups, columns=names, use_pandas_metadata=True)
    for batch in batches:
        lo, hi = max(first - offset, 0), min(end - offset, batch.num_rows)
        if hi > lo:
            kept.append(batch.slice(lo, hi - lo))
        offset += batch.num_rows
        if offset >= end:
            break
    return pa.Table.from_batches(kept).to_pandas()


def columns_with_values(data: str | Path, names: Sequence[str]) -> tuple[set[str], int]:
    """Which of the columns ``names`` hold a value in some row of a Parquet file or folder, as they
    are read (before the mapping), and the number of rows: a quick look at only those columns, on the
    cluster, to refuse a table lacking an input before scoring it. (That a column still has values
    once mapped is known only at the end: :func:`write_scored` says.)"""
    import dask

    pieces = parquet_pieces(data)
    found = dask.compute(*[dask.delayed(_with_values)(piece, list(names)) for piece in pieces])
    return set().union(*found), sum(end - first for _, first, end in pieces)


def _with_values(piece: tuple[str, int, int], names: list[str]) -> set[str]:
    import pyarrow.parquet as pq

    file, first, end = piece
    present = set(pq.read_schema(file).names)
    raw = _read_rows(file, first, end, [n for n in names if n in present])
    return {c for c in raw.columns if raw[c].notna().any()}


def score_dask(claims: dd.DataFrame, scorer: Scorer, extras: Mapping[str, object] | None = None) -> dd.DataFrame:
    """The columns of :meth:`~serving.model.scorer.Scorer.score_table` for every claim of a
    canonical dask frame, partition by partition (hash-partitioned by ``claim_id``, so not in the
    order read). ``claim_id`` must be unique."""
    import dask

    features = build_features_dask(claims, scorer.features, {**scorer.extras, **(extras or {})})
    # one task holds the scorer: each worker fetches and deserialises it once, whatever the partitions
    shipped = dask.delayed(scorer, name=f"claimscore-scorer-{uuid.uuid4().hex}", traverse=False)
    return features.map_partitions(_scored, shipped, meta=_scored(features._meta, scorer))


def _scored(features: pd.DataFrame, scorer: Scorer) -> pd.DataFrame:
    """One partition of features (indexed by ``claim_id``) scored: the columns ``Scorer.score_table``
    answers for these claims, made as it makes them (an empty partition answers no rows, typed)."""
    if features.index.has_duplicates:  # rows of one claim_id meet in one partition (hash-partitioned)
        twice = features.index[features.index.duplicated()].unique()[:3]
        raise SchemaError(f"claim_id is not unique (e.g. {', '.join(map(str, twice))}): each claim is scored once")
    out = scorer.answer_table(features.index.to_numpy(), scorer.score_features(features) if len(features) else None)
    text = [KEY, *(f"{task}_reasons" for task in scorer.bundles), "route", "rules"]
    return out.astype(dict.fromkeys(text, "str"))  # typed alike in every partition, the empty ones too


def check_dataset_out(out: Path) -> None:
    """Refuse an output path that is a file, or a folder holding anything but a Parquet dataset's parts
    (the folder is replaced by the new parts)."""
    if out.is_file():
        raise DataFileError(f"{out}: is a file; scoring on Dask writes a folder of Parquet parts: give another path")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if not _DATASET_FILE.fullmatch(p.name))
        if other:
            raise DataFileError(
                f"{out}: is a folder holding other files ({', '.join(other[:3])}); "
                "give a new path or a folder of an earlier run's part files"
            )


def write_scored(
    scored: dd.DataFrame, out: Path, claims: dd.DataFrame, check: Callable[[set[str]], T]
) -> tuple[pd.Series, T]:
    """Write ``scored`` as a Parquet folder ``out`` (replacing an earlier run's parts); the number of
    claims per route and what ``check`` answers for the columns of ``claims`` (the canonical claims
    scored) that hold a value (:func:`~features.build.provided_columns` of the whole table). All of it
    is computed in one pass; when it fails, or ``check`` raises, no folder is left."""
    import dask

    check_dataset_out(out)
    try:
        write = scored.to_parquet(str(out), write_index=False, overwrite=out.is_dir(), compute=False)
        _, routes, present = dask.compute(write, scored["route"].value_counts(split_out=1), claims.notnull().any())
        return routes, check({c for c, v in present.items() if v})
    except BaseException as exc:
        if out.is_dir():  # nothing half-written: the parts of a run that failed are removed
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(exc, OSError):
            raise DataFileError(f"cannot write {out}: {exc.strerror or exc}") from None
        raise


@contextmanager
def dask_client(n_workers: int | None = None, scheduler: str | None = None) -> Iterator[Client]:
    """A client to the running cluster at ``scheduler`` (its workers must read and write the same
    paths), or to a :func:`local_cluster` of ``n_workers`` processes; closed on exit."""
    if scheduler is None:
        with local_cluster(n_workers=n_workers or 1) as client:
            yield client
        return
    from distributed import Client

    check_scheduler(scheduler)
    try:
        client = Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise ClaimScoreError(f"no Dask scheduler answers at {scheduler} ({first_line(exc)})") from None
    except Exception as exc:  # something else listens there, and may answer anything
        raise ClaimScoreError(f"what answers at {scheduler} is not a Dask scheduler ({first_line(exc)})") from None
    with client:
        yield client


def check_scheduler(scheduler: str) -> None:
    """Fail at once, in one line, when ``scheduler`` is not an address or nothing listens there (a
    client would retry for ``SCHEDULER_TIMEOUT_S``)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(scheduler)
        host, port = parse_host_port(location)
    except ValueError:
        raise ClaimScoreError(f"'{scheduler}' is not a Dask scheduler address: give tcp://HOST:PORT") from None
    if scheme not in ("tcp", "tls") or not port:
        return
    try:
        socket.create_connection((host, port), timeout=SCHEDULER_TIMEOUT_S).close()
    except OSError as exc:
        raise ClaimScoreError(f"no Dask scheduler answers at {scheduler} ({exc.strerror or exc})") from None

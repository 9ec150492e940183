"""Read a source table (CSV, Parquet or a SQL query) into a DataFrame, or fail with one readable line.

This is the I/O edge of :mod:`features.data.sources`: every way a file can be wrong becomes a
:class:`DataFileError` (or :class:`MappingError` when the mapping's read settings are at fault) that
names the file and the problem.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features import sql
from features.data.sources.mapping import ReadSpec
from features.errors import DataFileError, MappingError
from features.sql import db_error, first_line, with_installed_driver

if TYPE_CHECKING:
    pass

EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
    ".db": "sql",
    ".sqlite": "sql",
    ".sqlite3": "sql",
}


def is_url(data: str | Path | None) -> bool:
    return isinstance(data, str) and "://" in data


def describe(data: str | Path | None) -> str:
    """How to name ``data`` in messages (database URLs without their password)."""
    return sql.describe(str(data)) if is_url(data) else str(data)


def read_table(data: str | Path | None, spec: ReadSpec, *, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read ``data`` (a path, a SQLAlchemy URL, or None for ``spec.url``) as ``spec`` says.

    ``text_columns`` are read as text where the format would guess numbers (identifiers such as
    "00123" keep their leading zeros in CSV).
    """
    if is_url(data) or (data is None and spec.url):
        return _read_sql(str(data) if data is not None else str(spec.url), spec)
    if data is None:
        raise DataFileError("no data given and the mapping names no default file or read.url")
    path = Path(data)
    fmt = spec.format or EXTENSIONS.get(path.suffix.lower())
    _check_file(path)
    if fmt is None:
        raise DataFileError(
            f"{path}: cannot tell the format from the extension '{path.suffix}'; "
            "set read.format (csv, parquet or sql) in the mapping"
        )
    if fmt == "sql":
        return _read_sql(f"sqlite:///{path.resolve()}", spec)
    if fmt == "parquet":
        return _read_parquet(path)
    return _read_csv(path, spec, text_columns)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if path.is_dir():
        raise DataFileError(f"{path}: is a directory, not a data file")
    if path.stat().st_size == 0:
        raise DataFileError(f"{path}: is empty (0 bytes)")


def _read_csv(path: Path, spec: ReadSpec, text_columns: tuple[str, ...]) -> pd.DataFrame:
    encoding = spec.encoding
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"  # tolerate a byte-order mark from spreadsheet exports
    try:
        header = pd.read_csv(path, sep=spec.sep, encoding=encoding, nrows=0).columns
        dtype = {c: "str" for c in text_columns if c in header}
        df = pd.read_csv(path, sep=spec.sep, encoding=encoding, dtype=dtype or None, low_memory=False)
    except UnicodeDecodeError:
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic == b"PAR1":
            raise DataFileError(
                f"{path}: is a Parquet file, not CSV; set read.format: parquet "
                "(or drop read.format to go by the extension)"
            ) from None
        raise DataFileError(_encoding_problem(path, spec.encoding)) from None
    except pd.errors.EmptyDataError:
        raise DataFileError(f"{path}: has no header line (only blank lines)") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataFileError(f"{path}: not a readable CSV file ({first_line(exc)})") from None
    if len(df) == 0:
        raise DataFileError(f"{path}: has a header but no data rows")
    return df


def _encoding_problem(path: Path, encoding: str) -> str:
    """Find the first undecodable byte (read again in full: this is the error path)."""
    data = path.read_bytes()
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        return (
            f"{path}: not valid {encoding} at byte {exc.start} (line {line}, byte 0x{byte}); "
            "if the file uses another encoding, set read.encoding in the mapping (e.g. latin-1 or cp1252)"
        )
    return f"{path}: not valid {encoding}; set read.encoding in the mapping (e.g. latin-1 or cp1252)"


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path, engine="pyarrow")
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
        raise DataFileError(f"{path}: not a readable Parquet file ({first_line(exc)})") from None
    if len(df) == 0:
        raise DataFileError(f"{path}: Parquet file has no rows")
    return df


def _read_sql(url: str, spec: ReadSpec) -> pd.DataFrame:
    import sqlalchemy as sa

    try:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        raise DataFileError(f"'{url}' is not a SQLAlchemy database URL") from None
    if not spec.query:
        raise MappingError(f"{shown}: the mapping has no read.query to run against this database")
    if shown.startswith("sqlite:///"):
        db = Path(shown.removeprefix("sqlite:///"))
        if str(db) not in ("", ":memory:"):
            _check_file(db)
    try:
        engine = sa.create_engine(with_installed_driver(sa.engine.make_url(url)))
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise DataFileError(f"{shown}: cannot open this database ({first_line(exc)})") from None
    try:
        try:
            conn = engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            raise DataFileError(f"{shown}: cannot connect ({db_error(exc)})") from None
        with conn:
            df = pd.read_sql_query(sa.text(spec.query), conn)
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ else exc
        raise DataFileError(f"{shown}: query failed ({db_error(cause)}); query: {spec.query}") from None
    finally:
        engine.dispose()
    if len(df) == 0:
        raise DataFileError(f"{shown}: the query returned no rows")
    return df


def read_history(url: str) -> pd.DataFrame:
    """Every claim in the claim history store at ``url`` (:mod:`features.store.history`), as the
    canonical frame it holds, in report-time order; a missing or empty store is a DataFileError."""
    import sqlalchemy as sa

    from features.store.history import HistoryStore

    shown = describe(url)
    if shown.startswith("sqlite:///"):  # never create an empty store just to read it
        db = Path(shown.removeprefix("sqlite:///"))
        if str(db) not in ("", ":memory:") and not db.exists():
            raise DataFileError(
                f"history store {shown}: no such database; fill it with claimscore history load, "
                "or set history_url in the configuration"
            )
    store = HistoryStore(url)
    try:
        frame = store.read_all()
    except sa.exc.SQLAlchemyError as exc:
        raise DataFileError(f"history store {store.shown}: cannot read its claims ({db_error(exc)})") from None
    finally:
        store.close()
    if frame.empty:
        raise DataFileError(f"history store {store.shown}: holds no claims; fill it with claimscore history load")
    return frame

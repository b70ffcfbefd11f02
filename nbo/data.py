"""Loading and validating the five tables of the data contract.

Customers and events are required; consents, offers and contacts may be absent (a company's first
export is often a purchase history only): they are then held empty, and `limitations` says what nbo
cannot do without them. Optional columns (`TableSpec.columns` with `required=False`) may be absent
and stay absent in the loaded frame; a column that is present is checked in full.

Every command that reads data goes through `load_dataset`, so a file that breaks the contract is
refused the same way everywhere: a `DataError` naming the table, the column, how many rows are
wrong and one example value. Checks are vectorised (10 million events validate in seconds);
a schema library such as pandera was measured at ~4 s per 10M rows for three columns and could
not express timezone mixing or the list-typed `channels` column, so the contract is checked here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nbo.contract import TABLES
from nbo.errors import DataError, NboError
from nbo.validation import STR_DTYPE, TS_DTYPE, validate_frame


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """The validated tables. Timestamps are tz-naive UTC, ids are strings.

    `absent_tables`: tables the data directory had no file for (held here empty).
    """

    customers: pd.DataFrame
    consents: pd.DataFrame
    events: pd.DataFrame
    offers: pd.DataFrame
    contacts: pd.DataFrame
    no_offers: pd.DataFrame = field(default_factory=lambda: empty_table("no_offers"))
    absent_tables: tuple[str, ...] = ()

    def table(self, name: str) -> pd.DataFrame:
        return getattr(self, name)

    def for_customers(self, customer_ids: Iterable[str]) -> Dataset:
        """The same data restricted to some customers (offers are kept whole)."""
        ids = pd.Index(pd.unique(pd.Series(list(customer_ids), dtype=STR_DTYPE)))
        return replace(
            self,
            customers=self.customers[self.customers["customer_id"].isin(ids)],
            consents=self.consents[self.consents["customer_id"].isin(ids)],
            events=self.events[self.events["customer_id"].isin(ids)],
            contacts=self.contacts[self.contacts["customer_id"].isin(ids)],
            no_offers=self.no_offers[self.no_offers["customer_id"].isin(ids)],
        )


TABLE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Dataset) if f.name in TABLES)


# ----------------------------------------------------------------------------- reading files


def find_table_file(directory: Path, table: str) -> Path:
    """`DIR/table.parquet` or `DIR/table.csv`; exactly one of them must exist."""
    candidates = [directory / f"{table}.parquet", directory / f"{table}.csv"]
    found = [p for p in candidates if p.exists()]
    if not found:
        raise DataError(table, f"no {table}.parquet or {table}.csv in {directory}")
    if len(found) > 1:
        raise DataError(table, f"both {table}.parquet and {table}.csv in {directory}; keep one")
    if not found[0].is_file():
        kind = "a directory" if found[0].is_dir() else "not a regular file"
        raise DataError(table, f"{found[0]} is {kind}; expected one {found[0].suffix[1:]} file")
    return found[0]


def read_table_file(path: Path, table: str) -> pd.DataFrame:
    """Read a Parquet or CSV file as raw columns; unreadable files become a `DataError`."""
    if path.suffix not in (".parquet", ".csv"):
        raise DataError(table, f"{path.name}: only .parquet and .csv files are read")
    try:
        if not path.is_file():
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise DataError(table, f"{path} is {kind}; expected one {path.suffix[1:]} file")
        if path.stat().st_size == 0:
            raise DataError(table, f"{path.name} is empty (0 bytes)")
        if path.suffix == ".parquet":
            return _read_parquet(path, table)
        return _read_csv(path, table)
    except UnicodeDecodeError as exc:
        raise DataError(table, f"{path.name} is not valid UTF-8 text (byte {exc.start})") from None
    except pd.errors.EmptyDataError:
        raise DataError(table, f"{path.name} has no header row") from None
    except pd.errors.ParserError as exc:
        raise DataError(table, f"{path.name} is not a well-formed CSV file: {_first_line(exc)}") from None
    except PermissionError:
        raise DataError(table, f"{path} cannot be read: permission denied") from None
    except (pa.ArrowException, OSError) as exc:
        if path.suffix == ".csv":
            raise DataError(table, f"{path.name} cannot be read: {_first_line(exc)}") from None
        raise DataError(
            table, f"{path.name} is not a readable Parquet file (truncated or corrupt?): {_first_line(exc)}"
        ) from None


def _read_csv(path: Path, table: str) -> pd.DataFrame:
    """A CSV file as text columns. `index_col=False`: by default pandas takes a first data row with
    one field more than the header as "the first column is the index", and every column then
    holds its neighbour's values (an extra comma on line 2 read as an unparseable timestamp)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8", index_col=False)
        except pd.errors.ParserWarning:
            header = pd.read_csv(path, dtype=str, nrows=0, encoding="utf-8").shape[1]
            raise DataError(
                table, f"{path.name}: line 2 (the first data row) has more fields than the header's {header} "
                "(an extra comma, or an unquoted comma inside a value?)"
            ) from None


def _read_parquet(path: Path, table: str) -> pd.DataFrame:
    """A Parquet file as pandas columns; a column pandas cannot hold is named, not a traceback."""
    arrow = pq.read_table(path)
    try:
        return arrow.to_pandas(types_mapper=_arrow_types)
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
        raise DataError(table, f"{path.name}: a column cannot be converted ({_first_line(exc)})") from None


def _arrow_types(arrow_type: pa.DataType) -> object | None:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return pd.StringDtype("pyarrow", na_value=np.nan)
    return None


def _first_line(exc: BaseException) -> str:
    """The gist of a library's error: first line, without Arrow's repetition of the path."""
    text = re.sub(r"^Could not open Parquet input source '[^']*': ", "", str(exc).strip())
    lines = text.splitlines()
    return lines[0][:200].rstrip() if lines else type(exc).__name__


def check_references(data: Dataset) -> None:
    """Rules across tables: every id a table mentions exists where it is defined."""
    customers = pd.Index(data.customers["customer_id"])
    offers = pd.Index(data.offers["offer_id"])
    if "offers" in data.absent_tables and len(data.contacts):
        raise DataError(
            "contacts",
            f"{len(data.contacts)} row(s) name offers but the directory has no offers table; "
            "add offers.parquet or offers.csv",
            column="offer_id",
        )
    for table in ("consents", "events", "contacts", "no_offers"):
        ids = data.table(table)["customer_id"]
        unknown = ~ids.isin(customers)
        if unknown.any():
            raise DataError(
                table,
                f"{int(unknown.sum())} row(s) for a customer not in customers, e.g. {ids[unknown].iloc[0]!r}",
                column="customer_id",
            )
    both = data.no_offers["decision_id"].isin(data.contacts["decision_id"])
    if both.any():
        raise DataError(
            "no_offers",
            f"{int(both.sum())} decision(s) both made no contact and made one (also in contacts), "
            f"e.g. {data.no_offers['decision_id'][both].iloc[0]!r}",
            column="decision_id",
        )
    unknown = ~data.contacts["offer_id"].isin(offers)
    if unknown.any():
        raise DataError(
            "contacts",
            f"{int(unknown.sum())} row(s) for an offer not in offers, "
            f"e.g. {data.contacts['offer_id'][unknown].iloc[0]!r}",
            column="offer_id",
        )


def load_table(directory: Path | str, table: str) -> pd.DataFrame:
    """Load and validate one table of a data directory."""
    if table not in TABLES:
        raise NboError(f"unknown table {table!r}; tables are {', '.join(TABLES)}")
    directory = Path(directory)
    path = find_table_file(directory, table)
    return validate_frame(TABLES[table], read_table_file(path, table))


def table_columns(directory: Path | str, table: str) -> list[str]:
    """The column names of a table's file, from its Parquet schema or CSV header (no rows read);
    empty when the directory has no file for it."""
    directory = Path(directory)
    if not has_table_file(directory, table):
        return []
    path = find_table_file(directory, table)
    if path.suffix == ".parquet":
        return list(pq.read_schema(path).names)
    return list(pd.read_csv(path, nrows=0, dtype=str, encoding="utf-8").columns)


def has_table_file(directory: Path | str, table: str) -> bool:
    """Whether the directory has a file (Parquet or CSV) for the table, readable or not."""
    return any((Path(directory) / f"{table}.{ext}").exists() for ext in ("parquet", "csv"))


def load_dataset(directory: Path | str) -> Dataset:
    """Load the tables of a data directory, validated and cross-checked.

    An optional table without a file is held empty and named in `Dataset.absent_tables`; what that
    and every absent optional column leave out is logged once (`limitations`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise NboError(f"data directory {directory} does not exist or is not a directory")
    tables: dict[str, pd.DataFrame] = {}
    absent: list[str] = []
    for name in TABLE_NAMES:
        if not TABLES[name].required and not has_table_file(directory, name):
            tables[name] = empty_table(name)
            absent.append(name)
        else:
            tables[name] = load_table(directory, name)
    data = Dataset(**tables, absent_tables=tuple(absent))
    check_references(data)
    for line in limitations(data):
        log.info("%s", line)
    return data


def limitations(data: Dataset) -> list[str]:
    """One line per absent optional table or column: what nbo cannot use, from the contract.

    E.g. "no contacts table: no contact history: propensity training ... are unavailable".
    """
    lines = [f"no {name} table: {TABLES[name].if_absent}" for name in TABLE_NAMES
             if name in data.absent_tables and TABLES[name].absence_limits]
    for name in TABLE_NAMES:
        if name in data.absent_tables:
            continue
        frame = data.table(name)
        for col in TABLES[name].columns:
            if not col.required and col.absence_limits and col.name not in frame.columns:
                lines.append(f"no {name}.{col.name} column: {col.if_absent}")
    return lines


def empty_table(table: str) -> pd.DataFrame:
    """A table with the contract's columns and types and no rows."""
    spec = TABLES[table]
    dtypes = {"str": STR_DTYPE, "ts": TS_DTYPE, "float": "float64", "bool": "bool", "int": "int64", "timezone": STR_DTYPE}
    return pd.DataFrame(
        {c.name: pd.Series(dtype=dtypes.get(c.kind, object)) for c in spec.columns}
    )


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to; renamed onto `path` when the block succeeds,
    removed when it fails: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write an Arrow table (schema and metadata as given) atomically, zstd-compressed."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write a table atomically (temporary name, then rename): a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if path.suffix == ".csv":
            out = frame.copy()
            for name in out.columns:
                if out[name].dtype == object and out[name].map(lambda v: isinstance(v, tuple | list)).any():
                    out[name] = out[name].map(lambda v: "|".join(v) if isinstance(v, tuple | list) else v)
                elif pd.api.types.is_datetime64_dtype(out[name].dtype):
                    out[name] = out[name].dt.strftime("%Y-%m-%dT%H:%M:%SZ").where(out[name].notna(), "")
            out.to_csv(tmp, index=False)
        else:
            out = frame.copy()
            for name in out.columns:
                if out[name].dtype == object and len(out) and isinstance(out[name].iloc[0], tuple):
                    out[name] = out[name].map(list)
            table = pa.Table.from_pandas(out, preserve_index=False)
            pq.write_table(table, tmp, compression="zstd")


def write_dataset(data: Dataset, directory: Path | str, fmt: str = "parquet") -> None:
    """Write the tables to `directory` as Parquet (default) or CSV; an absent table stays absent."""
    if fmt not in ("parquet", "csv"):
        raise NboError(f"unknown format {fmt!r}; use parquet or csv")
    directory = Path(directory)
    for name in TABLE_NAMES:
        if name not in data.absent_tables:
            write_table(data.table(name), directory / f"{name}.{fmt}")

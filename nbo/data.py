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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nbo.contract import TABLES, ColumnSpec, TableSpec
from nbo.errors import DataError, NboError
from nbo.vocab import CONTACT_CHANNELS

TS_DTYPE = "datetime64[ns]"
STR_DTYPE = "str"
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """The five validated tables. Timestamps are tz-naive UTC, ids are strings.

    `absent_tables`: tables the data directory had no file for (held here empty).
    """

    customers: pd.DataFrame
    consents: pd.DataFrame
    events: pd.DataFrame
    offers: pd.DataFrame
    contacts: pd.DataFrame
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
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
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


# ----------------------------------------------------------------------------- validation


def _example(values: pd.Series) -> str:
    value = values.iloc[0]
    if hasattr(value, "item"):
        value = value.item()
    return repr(value[:60]) if isinstance(value, str) else repr(value)


def _fail(spec: TableSpec, col: ColumnSpec, bad: pd.Series, what: str) -> DataError:
    return DataError(spec.name, f"{len(bad)} row(s) {what}, e.g. {_example(bad)}", column=col.name)


def _as_str(spec: TableSpec, col: ColumnSpec, raw: pd.Series) -> pd.Series:
    if raw.dtype == object:
        non_str = raw[raw.notna() & ~raw.map(lambda v: isinstance(v, str))]
        if len(non_str):
            raise _fail(spec, col, non_str, "have a value that is not text")
    elif not (pd.api.types.is_string_dtype(raw.dtype) or raw.isna().all()):
        if pd.api.types.is_float_dtype(raw.dtype) or pd.api.types.is_bool_dtype(raw.dtype):
            raise _fail(spec, col, raw.dropna(), f"have type {raw.dtype} instead of text")
        raw = raw.astype(object).where(raw.notna(), None).map(lambda v: v if v is None else str(v))
    out = raw.astype(STR_DTYPE)
    if col.allowed is not None:
        allowed = set(col.allowed)
        present = out.dropna()
        uniques = pd.unique(present)
        unknown = [u for u in uniques if u not in allowed]
        if unknown:
            bad = present[present.isin(unknown)]
            raise _fail(spec, col, bad, f"have a value outside {{{', '.join(col.allowed)}}}")
    if col.max_length is not None:
        lengths = out.str.len()
        too_long = out[lengths > col.max_length]
        if len(too_long):
            raise _fail(spec, col, too_long, f"have a value longer than {col.max_length} characters")
    if not col.nullable:
        empty = out.isna() | (out.str.strip() == "")
        if empty.any():
            raise _fail(spec, col, raw[empty].fillna("<empty>"), "have an empty value")
    return out


def _as_float(spec: TableSpec, col: ColumnSpec, raw: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(raw.dtype):
        raise _fail(spec, col, raw, "have a boolean instead of a number")
    num = pd.to_numeric(raw, errors="coerce") if not pd.api.types.is_numeric_dtype(raw.dtype) else raw
    num = num.astype("float64")
    unparseable = num.isna() & raw.notna()
    if unparseable.any():
        raise _fail(spec, col, raw[unparseable], "have a value that is not a number")
    if np.isinf(num).any():
        raise _fail(spec, col, raw[np.isinf(num)], "have an infinite value")
    if not col.nullable and num.isna().any():
        raise _fail(spec, col, raw[num.isna()].fillna("<empty>").astype(str), "have an empty value")
    if col.min_value is not None and (num < col.min_value).any():
        raise _fail(spec, col, num[num < col.min_value], f"have a value below {col.min_value:g}")
    if col.max_value is not None and (num > col.max_value).any():
        raise _fail(spec, col, num[num > col.max_value], f"have a value above {col.max_value:g}")
    return num


def _as_bool(spec: TableSpec, col: ColumnSpec, raw: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(raw.dtype) and not raw.isna().any():
        return raw.astype(bool)
    text = raw.astype(object).map(lambda v: str(v).strip().lower() if v is not None and v == v else None)
    truth = text.map(lambda v: True if v in _TRUE else (False if v in _FALSE else None))
    bad = truth.isna()
    if bad.any():
        raise _fail(spec, col, raw[bad].fillna("<empty>"), "have a value that is not a boolean (true/false)")
    return truth.astype(bool)


def _as_ts(spec: TableSpec, col: ColumnSpec, raw: pd.Series) -> pd.Series:
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        out = _in_ns_range(spec, col, raw.dt.tz_convert("UTC").dt.tz_localize(None), raw)
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        out = _in_ns_range(spec, col, raw, raw)
    elif pd.api.types.is_numeric_dtype(raw.dtype) and not raw.isna().all():
        raise _fail(spec, col, raw.dropna(), "have a number instead of an ISO-8601 timestamp")
    else:
        text = raw.astype(object).where(raw.notna(), None)
        present = text.dropna().astype(str).str.strip()
        aware = present.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
        # Each part keeps the resolution pandas parsed it at (nanoseconds when the text has them,
        # else microseconds, which hold any year 1..9999): a value outside the nanosecond range of
        # a Dataset is then named as such below, not "unparseable" or a crash.
        parts = [_parse_ts(present[mask]) for mask in (aware, ~aware) if mask.any()]
        for part in parts:
            bad = part.isna()
            if bad.any():
                alone = _parse_ts(present.loc[part.index[bad]])  # parsed with nanoseconds beside it?
                if alone.notna().any():
                    _in_ns_range(spec, col, alone.dropna().dt.tz_localize(None), present.loc[alone.dropna().index])
                raise _fail(spec, col, present.loc[part.index[bad]], "have a value that is not a parseable timestamp")
        if aware.any() and not aware.all():
            minority = present[~aware] if (~aware).sum() <= aware.sum() else present[aware]
            raise _fail(
                spec, col, minority, "mix timezone-aware and naive timestamps (the column must be one or the other)"
            )
        out = pd.Series(pd.NaT, index=raw.index, dtype=TS_DTYPE)
        for part in parts:
            out.loc[part.index] = _in_ns_range(spec, col, part.dt.tz_localize(None), present.loc[part.index])
    out = out.astype(TS_DTYPE)
    if not col.nullable and out.isna().any():
        raise _fail(spec, col, raw[out.isna()].astype(object).fillna("<empty>"), "have an empty value")
    return out


def _parse_ts(text: pd.Series) -> pd.Series:
    try:
        return pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        try:
            return pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
        except (ValueError, TypeError, OverflowError):
            return pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")


#: The span of `datetime64[ns]`, the timestamp type of a Dataset.
TS_MIN, TS_MAX = pd.Timestamp.min.ceil("D"), pd.Timestamp.max.floor("D")


def _in_ns_range(spec: TableSpec, col: ColumnSpec, values: pd.Series, shown: pd.Series) -> pd.Series:
    """`values` (tz-naive UTC, any resolution) as `datetime64[ns]`; a value beyond the years
    1677-2262 that type holds (e.g. a 9999-12-31 "no end" sentinel) is refused, naming it."""
    outside = values.notna() & ((values < TS_MIN) | (values > TS_MAX))
    if outside.any():
        raise _fail(
            spec, col, shown[outside].astype(str),
            f"have a timestamp outside the supported range {TS_MIN:%Y-%m-%d} to {TS_MAX:%Y-%m-%d}",
        )
    return values.astype(TS_DTYPE)


def _as_channels(spec: TableSpec, col: ColumnSpec, raw: pd.Series) -> pd.Series:
    def split(value: object) -> tuple[str, ...] | None:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(",", "|").split("|")]
        else:
            try:
                parts = [str(p).strip() for p in value]  # type: ignore[union-attr]
            except TypeError:
                return None
        return tuple(p for p in parts if p)

    lists = raw.map(split)
    empty = lists.map(lambda v: not v)
    if empty.any():
        raise _fail(spec, col, raw[empty].astype(object).fillna("<empty>"), "list no channel")
    allowed = set(CONTACT_CHANNELS)
    unknown = lists.map(lambda v: any(c not in allowed for c in v))
    if unknown.any():
        bad = lists[unknown].map(lambda v: next(c for c in v if c not in allowed))
        raise _fail(spec, col, bad, f"name a channel outside {{{', '.join(CONTACT_CHANNELS)}}}")
    return lists.map(lambda v: tuple(dict.fromkeys(v)))


_CONVERTERS = {
    "str": _as_str,
    "float": _as_float,
    "bool": _as_bool,
    "ts": _as_ts,
    "channels": _as_channels,
}


def validate_frame(spec: TableSpec, raw: pd.DataFrame) -> pd.DataFrame:
    """Check one table against its spec and return it with contract types; raise `DataError`."""
    missing = [c for c in spec.required_columns if c not in raw.columns]
    if missing:
        have = ", ".join(map(str, raw.columns[:12])) or "none"
        raise DataError(spec.name, f"missing column(s) {', '.join(missing)} (columns found: {have})")
    raw = raw.reset_index(drop=True)
    out = {}
    for col in spec.columns:
        if col.name in raw.columns:  # an optional column that is absent stays absent
            out[col.name] = _CONVERTERS[col.kind](spec, col, raw[col.name])
    extra = [c for c in raw.columns if c not in out]
    frame = pd.DataFrame(out, index=raw.index)
    for c in extra:
        frame[c] = raw[c]
    if spec.key:
        dup = frame.duplicated(list(spec.key), keep="first")
        if dup.any():
            example = frame.loc[dup, list(spec.key)].iloc[0].tolist()
            shown = example[0] if len(example) == 1 else tuple(map(str, example))
            raise DataError(
                spec.name,
                f"{int(dup.sum())} duplicate key row(s) on ({', '.join(spec.key)}), e.g. {shown!r}",
            )
    _table_rules(spec.name, frame)
    return frame


def _table_rules(table: str, frame: pd.DataFrame) -> None:
    """Rules across columns of one table."""
    if table == "events" and "amount" not in frame.columns:
        bought = frame["type"] == "purchase"
        if bought.any():
            raise DataError(
                table,
                f"{int(bought.sum())} purchase row(s) but no amount column; add `amount` "
                "(currency units, empty where unknown)",
                column="amount",
            )
    if table == "offers":
        bad = frame["valid_to"] < frame["valid_from"]
        if bad.any():
            raise DataError(
                table,
                f"{int(bad.sum())} row(s) end before they start, e.g. offer {frame.loc[bad, 'offer_id'].iloc[0]!r}",
                column="valid_to",
            )
    if table == "contacts":
        zero = frame["propensity"] <= 0
        if zero.any():
            raise DataError(
                table,
                f"{int(zero.sum())} row(s) have propensity 0; a shown offer was chosen with "
                "probability in (0, 1], e.g. decision "
                f"{frame.loc[zero, 'decision_id'].iloc[0]!r}",
                column="propensity",
            )
        early = frame["outcome_ts"].notna() & (frame["outcome_ts"] < frame["ts"])
        if early.any():
            raise DataError(
                table,
                f"{int(early.sum())} row(s) have an outcome before the contact, e.g. decision "
                f"{frame.loc[early, 'decision_id'].iloc[0]!r}",
                column="outcome_ts",
            )


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
    for table in ("consents", "events", "contacts"):
        ids = data.table(table)["customer_id"]
        unknown = ~ids.isin(customers)
        if unknown.any():
            raise DataError(
                table,
                f"{int(unknown.sum())} row(s) for a customer not in customers, e.g. {ids[unknown].iloc[0]!r}",
                column="customer_id",
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
    lines = [f"no {name} table: {TABLES[name].if_absent}" for name in TABLE_NAMES if name in data.absent_tables]
    for name in TABLE_NAMES:
        if name in data.absent_tables:
            continue
        frame = data.table(name)
        for col in TABLES[name].columns:
            if not col.required and col.name not in frame.columns:
                lines.append(f"no {name}.{col.name} column: {col.if_absent}")
    return lines


def empty_table(table: str) -> pd.DataFrame:
    """A table with the contract's columns and types and no rows."""
    spec = TABLES[table]
    dtypes = {"str": STR_DTYPE, "ts": TS_DTYPE, "float": "float64", "bool": "bool", "int": "int64"}
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

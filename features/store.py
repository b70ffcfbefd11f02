"""Materialised customer features: one Parquet file per as_of, with the feature set in its metadata.

The online service reads the row of one customer from the latest file and adds the request's
context and the live contact history (`build_candidate_features` recomputes contact columns).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.feature_set import CUSTOMER_FEATURES, FEATURE_SET, FeatureSet
from nbo.data import atomic_path
from nbo.errors import NboError

_META_KEYS = ("feature_set", "feature_set_version", "as_of")


def write_materialised(
    frame: pd.DataFrame, path: Path | str, as_of: pd.Timestamp, feature_set: FeatureSet = FEATURE_SET
) -> None:
    """Write customer features atomically with `nbo.feature_set`, `nbo.feature_set_version` and
    `nbo.as_of` (ISO-8601, UTC) in the Parquet schema metadata."""
    write_materialised_chunks([frame], path, as_of, feature_set)


def write_materialised_chunks(
    chunks: Iterable[pd.DataFrame], path: Path | str, as_of: pd.Timestamp, feature_set: FeatureSet = FEATURE_SET
) -> int:
    """`write_materialised` of the concatenation of `chunks` (each framed like
    `build_customer_features`, at least one), streamed: one row group per chunk through one
    Parquet writer, so only one chunk is in memory. The schema and its metadata are the first
    chunk's; written atomically (nothing is left when a chunk fails). Returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    writer = None
    with atomic_path(path) as tmp:
        try:
            for chunk in chunks:
                table = pa.Table.from_pandas(chunk, preserve_index=True)
                if writer is None:
                    schema = table.schema.with_metadata(materialised_metadata(table.schema, as_of, feature_set))
                    writer = pq.ParquetWriter(tmp, schema, compression="zstd", use_dictionary=_dictionary_columns(schema))
                writer.write_table(table.cast(writer.schema))
                rows += len(chunk)
            if writer is None:
                raise ValueError("write_materialised_chunks needs at least one chunk (an empty frame for no rows)")
        finally:
            if writer is not None:
                writer.close()
    return rows


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth dictionary-encoding: the text labels (a handful of values each). Not the
    ~230 numeric features (measured at 200k customers: a dictionary on every column cost 1.26 s of
    CPU and 89 MB, none on the numbers 0.88 s and 76 MB; zstd does better on their plain pages),
    nor the customer id, which is unique per row."""
    index = set(schema.pandas_metadata.get("index_columns", [])) if schema.pandas_metadata else set()
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            if f.name not in index]


def materialised_metadata(
    schema: pa.Schema, as_of: pd.Timestamp, feature_set: FeatureSet = FEATURE_SET
) -> dict[bytes, bytes]:
    """`schema`'s metadata with the feature set and `as_of` a materialised file carries."""
    meta = dict(schema.metadata or {})
    meta.update(
        {
            b"nbo.feature_set": feature_set.name.encode(),
            b"nbo.feature_set_version": feature_set.version.encode(),
            b"nbo.as_of": pd.Timestamp(as_of).isoformat().encode(),
        }
    )
    return meta


def _meta(path: Path, schema: pa.Schema) -> dict[str, object]:
    raw = schema.metadata or {}
    meta: dict[str, object] = {}
    for key in _META_KEYS:
        value = raw.get(f"nbo.{key}".encode())
        if value is None:
            raise NboError(f"{path} lacks nbo.{key} in its Parquet metadata; was it written by `nbo features`?")
        meta[key] = value.decode(errors="replace")
    try:
        meta["as_of"] = pd.Timestamp(meta["as_of"])
    except (ValueError, TypeError, OverflowError):
        raise NboError(f"{path}: nbo.as_of {str(meta['as_of'])[:60]!r} in its Parquet metadata is not a timestamp") from None
    if meta["as_of"] is pd.NaT:
        raise NboError(f"{path}: nbo.as_of in its Parquet metadata is empty")
    if (meta["feature_set"], meta["feature_set_version"]) == (FEATURE_SET.name, FEATURE_SET.version):
        # Same name and version but columns missing: written by another build of the code.
        missing = [c for c in CUSTOMER_FEATURES if c not in schema.names]
        if missing:
            raise NboError(
                f"{path} lacks {len(missing)} column(s) of feature set {FEATURE_SET.name} {FEATURE_SET.version}, "
                f"e.g. {missing[0]!r}; re-run `nbo features`"
            )
    return meta


def _unreadable(path: Path, exc: BaseException) -> NboError:
    return NboError(f"{path} is not a readable Parquet file (truncated or corrupt?): {_first(exc)}")


def _check_file(path: Path) -> None:
    """A materialised file is one regular, non-empty file: anything else is named, not read."""
    if not path.exists():
        raise NboError(f"no materialised features at {path}")
    if path.is_dir():
        raise NboError(f"materialised features {path} is a directory with no features file nbo can use")
    if not path.is_file():
        raise NboError(f"materialised features {path} is not a regular file")
    if path.stat().st_size == 0:
        raise NboError(f"materialised features {path} is empty (0 bytes)")


def _open(path: Path) -> pq.ParquetFile:
    """A materialised file opened for reading its footer and row groups (`_check_file` first)."""
    _check_file(path)
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, exc) from None


def _frame(table: pa.Table | pa.RecordBatch, path: Path | None = None) -> pd.DataFrame:
    try:
        frame = table.to_pandas()
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
        raise NboError(f"{path or 'materialised features'}: a column cannot be converted ({_first(exc)})") from None
    for col in ("lifecycle", "top_category", "next_category"):
        if col in frame.columns:
            frame[col] = frame[col].astype("str")
    if "customer_id" in frame.columns:  # a batch whose schema lost the pandas index metadata
        frame = frame.set_index("customer_id")
    frame.index = frame.index.astype("str")
    frame.index.name = "customer_id"
    return frame


def _first(exc: BaseException) -> str:
    """The gist of a library's error: first line, without Arrow's repetition of the path."""
    text = re.sub(r"^Could not open Parquet input source '[^']*': ", "", str(exc).strip())
    lines = text.splitlines()
    return lines[0][:200].rstrip() if lines else type(exc).__name__


def read_materialised(path: Path | str) -> tuple[pd.DataFrame, dict[str, object]]:
    """(frame indexed by customer_id, {"feature_set", "feature_set_version", "as_of"})."""
    path = Path(path)
    _check_file(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, exc) from None
    meta = _meta(path, table.schema)
    return _frame(table, path), meta


def materialised_meta(path: Path | str) -> dict[str, object]:
    """The metadata of a materialised file (as `read_materialised`), reading only its footer."""
    path = Path(path)
    _check_file(path)
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, exc) from None
    return _meta(path, schema)


def materialised_rows(path: Path | str) -> int:
    """Number of customers in a materialised file (from its footer)."""
    return int(_open(Path(path)).metadata.num_rows)


def iter_materialised(path: Path | str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The rows of a materialised file in order, `chunk_rows` at a time (the last chunk may be
    shorter), each framed like `read_materialised`: memory bounded by the chunk, not the file."""
    path = Path(path)
    source = _open(path)
    pending: list[pa.RecordBatch] = []
    size = 0
    schema = source.schema_arrow
    for batch in _batches(source, path, chunk_rows):
        # Batches stop at row-group ends: regroup so every chunk but the last has exactly chunk_rows.
        while len(batch):
            take = min(chunk_rows - size, len(batch))
            pending.append(batch.slice(0, take))
            size += take
            batch = batch.slice(take)
            if size == chunk_rows:
                yield _frame(pa.Table.from_batches(pending, schema=schema), path)
                pending, size = [], 0
    if size:
        yield _frame(pa.Table.from_batches(pending, schema=schema), path)


class MaterialisedRows:
    """Rows `[start, stop)` of a materialised file, framed exactly like `iter_materialised`'s
    chunks, for a batch worker that reads its own chunks instead of receiving them pickled. The
    row groups last decoded are kept: a worker given consecutive chunks decodes each group once."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._source = _open(self.path)
        meta = self._source.metadata
        self._starts = [0]
        for g in range(meta.num_row_groups):
            self._starts.append(self._starts[-1] + meta.row_group(g).num_rows)
        self._groups: dict[int, pa.Table] = {}

    def read(self, start: int, stop: int) -> pd.DataFrame:
        stop = min(stop, self._starts[-1])
        if not 0 <= start < stop:
            raise ValueError(f"rows [{start}, {stop}) are not in {self.path.name} ({self._starts[-1]} rows)")
        first = bisect.bisect_right(self._starts, start) - 1
        last = bisect.bisect_right(self._starts, stop - 1) - 1
        self._groups = {g: t for g, t in self._groups.items() if first <= g <= last}
        for g in range(first, last + 1):
            if g not in self._groups:
                try:
                    self._groups[g] = self._source.read_row_group(g)
                except (pa.ArrowException, OSError) as exc:
                    raise _unreadable(self.path, exc) from None
        table = pa.concat_tables([self._groups[g] for g in range(first, last + 1)])
        return _frame(table.slice(start - self._starts[first], stop - start), self.path)


def _batches(source: pq.ParquetFile, path: Path, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """`source.iter_batches`, with a corrupt page deep in the file named like an unreadable footer."""
    batches = source.iter_batches(batch_size=chunk_rows)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(path, exc) from None
        yield batch


def check_feature_set(meta: dict[str, object], feature_set: FeatureSet = FEATURE_SET) -> None:
    """Refuse features materialised by another feature set or version."""
    if (meta.get("feature_set"), meta.get("feature_set_version")) != (feature_set.name, feature_set.version):
        raise NboError(
            f"materialised features are {meta.get('feature_set')} {meta.get('feature_set_version')}, "
            f"this code expects {feature_set.name} {feature_set.version}; re-run `nbo features`"
        )

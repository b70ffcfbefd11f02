"""GDPR access and erasure: everything nbo holds about one customer, exported or erased.

Sources, each a list of records:

| source | where | what |
|---|---|---|
| `store.contacts` | the contact store (SQLite file or Redis) | every show, with outcome and propensity |
| `store.decisions` | the contact store's decision log | every decision, also the empty ones |
| `store.consents` | the contact store | consent changes recorded at runtime (`POST /consents`) |
| `store.events` | the contact store's event log | events posted while nbo runs (`POST /events`, `nbo ingest`) |
| `data.<file>` | each `*.parquet` / `*.csv` directly in the data directory with a `customer_id` column | the customer's rows (customers, consents, events, contacts, and any extra table) |
| `features.<file>` | a materialised features file, or every `*.parquet` under a features directory | the customer's row in each snapshot |
| `ledger.<kind>:<path>` | every file nbo wrote that the ledger names (`nbo.ledger`: batch outputs, their feature caches and work directories, predictions, feature files) | the customer's rows in each |

`erase_customer` removes exactly what `export_customer` lists, so a second export is empty. Every
source is read before any is changed; a failure half way leaves some sources erased: run it again
(erasure is idempotent).
Files are rewritten atomically (temporary name, then rename): data tables through
`nbo.data.write_table` in their own format, materialised features at the Arrow level so that
their Parquet metadata (`nbo.feature_set`, `nbo.as_of`, pandas index) is kept byte for byte.
A SQLite store is vacuumed and its WAL truncated after the erasure, so the deleted rows do not
linger in free pages. Logs carry `hash_id(customer_id)` only.

A table reached through a symbolic link is rewritten where the link points (the link stays a link).
Ledger entries that no longer exist are reported under `not_present`; those that exist but cannot be
read as a table with a `customer_id` column under `not_reached`, with the reason: nbo says what it
could not erase instead of claiming it did.

A running `nbo serve` erases the store on `POST /forget` and drops the customer from its in-memory
copy of the data directory's contacts and of the materialised features (`DecisionEngine.forget`,
docs/service.md); the data directory and the features files are this module's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nbo.data import atomic_path, read_table_file, write_parquet_atomic, write_table
from nbo.errors import NboError
from nbo.ledger import LedgerEntry, read_ledger
from serving.settings import open_store

log = logging.getLogger(__name__)


def hash_id(customer_id: str) -> str:
    """What logs carry instead of a customer id."""
    return hashlib.sha256(customer_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]

ID_COLUMN = "customer_id"
#: What a contact store's `export` lists (`store.<name>` sources); `forget` erases them all.
STORE_SOURCES = ("contacts", "decisions", "consents", "events", "outbox")
_REMOTE = ("redis://", "rediss://", "unix://")

Records = list[dict[str, object]]


def check_customer_id(customer_id: str) -> str:
    """Ids follow the data contract: 1-128 characters, not blank."""
    if not isinstance(customer_id, str) or not customer_id.strip() or len(customer_id) > 128:
        raise NboError("--customer must be 1-128 characters (a customer id of the data contract)")
    return customer_id


def _sqlite_path(spec: str) -> Path:
    return Path(spec.removeprefix("sqlite:///"))


def _check_store(spec: str) -> None:
    if not spec.startswith(_REMOTE) and not _sqlite_path(spec).is_file():
        # open_store would create an empty database: a typo must not look like "nothing stored".
        raise NboError(f"--store {spec} does not exist (a SQLite contact store file or redis://host:port/db)")


def _data_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise NboError(f"--data {directory} is not a directory")
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in (".parquet", ".csv"))


def _feature_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
    if not path.is_file():
        raise NboError(f"--features {path} does not exist")
    return [path]


def _records(frame: pd.DataFrame) -> Records:
    """JSON-ready rows: ISO-8601 timestamps, NaN -> null."""
    return json.loads(frame.to_json(orient="records", date_format="iso", force_ascii=False))


def _match(frame: pd.DataFrame, customer_id: str) -> pd.Series:
    return (frame[ID_COLUMN].astype(object) == customer_id).astype(bool)


def _data_tables(directory: Path) -> Iterator[tuple[Path, pd.DataFrame]]:
    for path in _data_files(directory):
        frame = read_table_file(path, path.stem)
        if ID_COLUMN in frame.columns:
            yield path, frame


def _feature_tables(path: Path) -> Iterator[tuple[Path, pa.Table]]:
    for file in _feature_files(path):
        try:
            table = pq.read_table(file)
        except (pa.ArrowException, OSError) as exc:
            raise NboError(f"{file} is not a readable Parquet file: {str(exc).splitlines()[0][:200]}") from None
        if ID_COLUMN in table.column_names:
            yield file, table


def _feature_mask(table: pa.Table, customer_id: str) -> pa.ChunkedArray:
    column = table[ID_COLUMN]
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    return pc.fill_null(pc.equal(column, pa.scalar(customer_id, pa.string())), False)


def _real(path: Path) -> Path:
    """Where a rewrite must land: the file a symbolic link points to, not the link."""
    return path.resolve() if path.is_symlink() else path


def _ledger_files(entry: LedgerEntry) -> list[Path]:
    if entry.path.is_dir() and not entry.path.is_symlink():
        return sorted(p for p in entry.path.rglob("*") if p.suffix in (".parquet", ".csv") and p.is_file()
                      and not p.is_symlink())
    return [entry.path]


def _ledger_tables(ledger: Path) -> tuple[list[tuple[str, Path, pa.Table | pd.DataFrame]], dict[str, str], list[str]]:
    """(label, file, table) of every ledger file holding a `customer_id` column; the files that
    could not be read (label -> why); the entries no longer present."""
    tables, not_reached, gone = [], {}, []
    for entry in read_ledger(ledger):
        if not entry.path.exists():
            gone.append(str(entry.path))
            continue
        for file in _ledger_files(entry):
            label = f"ledger.{entry.kind}:{file}"
            try:
                if file.suffix == ".csv":
                    table: pa.Table | pd.DataFrame = pd.read_csv(file, dtype=str, keep_default_na=False)
                    has_id = ID_COLUMN in table.columns
                else:
                    table = pq.read_table(file)
                    has_id = ID_COLUMN in table.column_names
            except (pa.ArrowException, OSError, ValueError, pd.errors.ParserError) as exc:
                not_reached[label] = f"unreadable: {type(exc).__name__}"
                continue
            if has_id:
                tables.append((label, file, table))
            elif file.suffix in (".parquet", ".csv") and entry.kind != "batch_work_dir":
                not_reached[label] = "no customer_id column"
    return tables, not_reached, gone


def _ledger_mask(table: pa.Table | pd.DataFrame, customer_id: str) -> pa.ChunkedArray | pd.Series:
    if isinstance(table, pd.DataFrame):
        return table[ID_COLUMN] == customer_id
    return _feature_mask(table, customer_id)


def _ledger_records(table: pa.Table | pd.DataFrame, customer_id: str) -> Records:
    mask = _ledger_mask(table, customer_id)
    rows = table[mask] if isinstance(table, pd.DataFrame) else table.filter(mask).to_pandas()
    return _records(rows.reset_index() if ID_COLUMN not in rows.columns else rows)


def _erase_ledger_table(file: Path, table: pa.Table | pd.DataFrame, customer_id: str) -> int:
    mask = _ledger_mask(table, customer_id)
    if isinstance(table, pd.DataFrame):
        n = int(mask.sum())
        if n:
            with atomic_path(_real(file)) as tmp:
                table[~mask].to_csv(tmp, index=False)
        return n
    n = int(pc.sum(mask).as_py() or 0)
    if n:
        write_parquet_atomic(table.filter(pc.invert(mask)), _real(file))
    return n


def _label(kind: str, path: Path, root: Path) -> str:
    rel = path.name if root.is_file() or path.parent == root else path.relative_to(root).as_posix()
    return f"{kind}.{rel}"


def _check_request(customer_id: str, store: str | None, data_dir: Path | None, features: Path | None,
                   ledger: Path | None = None) -> None:
    check_customer_id(customer_id)
    if store is None and data_dir is None and features is None and (ledger is None or not ledger.exists()):
        raise NboError("give at least one source: --store, --data, --features or a ledger (--ledger)")


def export_customer(
    customer_id: str,
    *,
    store: str | None = None,
    data_dir: Path | None = None,
    features: Path | None = None,
    ledger: Path | None = None,
) -> dict[str, object]:
    """`{"customer_id", "sources": {source: [records]}, "total_records", "not_reached", "not_present"}`
    over the given sources and the files the ledger names."""
    _check_request(customer_id, store, data_dir, features, ledger)
    sources: dict[str, Records] = {}
    if store is not None:
        _check_store(store)
        opened = open_store(store)
        try:
            held = opened.export(customer_id)
        finally:
            opened.close()
        for name in STORE_SOURCES:
            sources[f"store.{name}"] = json.loads(json.dumps(held.get(name, []), default=_iso))
    if data_dir is not None:
        for path, frame in _data_tables(Path(data_dir)):
            sources[_label("data", path, Path(data_dir))] = _records(frame[_match(frame, customer_id)])
    if features is not None:
        for file, table in _feature_tables(Path(features)):
            rows = table.filter(_feature_mask(table, customer_id)).to_pandas()
            sources[_label("features", file, Path(features))] = _records(rows.reset_index() if ID_COLUMN not in rows.columns else rows)
    not_reached: dict[str, str] = {}
    gone: list[str] = []
    if ledger is not None:
        tables, not_reached, gone = _ledger_tables(ledger)
        for label, _, table in tables:
            sources[label] = _ledger_records(table, customer_id)
    total = sum(len(v) for v in sources.values())
    log.info("export for customer %s: %d record(s) in %d source(s)", hash_id(customer_id), total, len(sources))
    return {"customer_id": customer_id, "sources": sources, "total_records": total,
            "not_reached": not_reached, "not_present": gone}


def erase_customer(
    customer_id: str,
    *,
    store: str | None = None,
    data_dir: Path | None = None,
    features: Path | None = None,
    ledger: Path | None = None,
) -> dict[str, object]:
    """Erase what `export_customer` lists; `{"erased": {source: n}, "total_records", "not_reached",
    "not_present"}`."""
    _check_request(customer_id, store, data_dir, features, ledger)
    erased: dict[str, int] = {}
    # Check every source is readable before touching any of them.
    data_tables = list(_data_tables(Path(data_dir))) if data_dir is not None else []
    feature_tables = list(_feature_tables(Path(features))) if features is not None else []
    ledger_tables, not_reached, gone = _ledger_tables(ledger) if ledger is not None else ([], {}, [])
    if store is not None:
        _check_store(store)
        opened = open_store(store)
        try:
            held = opened.export(customer_id)
            opened.forget(customer_id)
        finally:
            opened.close()
        for name in STORE_SOURCES:
            erased[f"store.{name}"] = len(held.get(name, []))
        if not store.startswith(_REMOTE):
            _compact_sqlite(_sqlite_path(store))
    for path, frame in data_tables:
        hit = _match(frame, customer_id)
        erased[_label("data", path, Path(data_dir))] = int(hit.sum())  # type: ignore[arg-type]
        if hit.any():
            write_table(frame[~hit].reset_index(drop=True), _real(path))
    for file, table in feature_tables:
        mask = _feature_mask(table, customer_id)
        n = int(pc.sum(mask).as_py() or 0)
        erased[_label("features", file, Path(features))] = n  # type: ignore[arg-type]
        if n:
            write_parquet_atomic(table.filter(pc.invert(mask)), _real(file))
    for label, file, table in ledger_tables:
        erased[label] = _erase_ledger_table(file, table, customer_id)
    total = sum(erased.values())
    log.info("erased customer %s: %d record(s) in %d source(s), %d not reached", hash_id(customer_id), total,
             len(erased), len(not_reached))
    return {"erased": erased, "total_records": total, "not_reached": not_reached, "not_present": gone}


def _iso(value: object) -> object:
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[union-attr]
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _compact_sqlite(path: Path) -> None:
    """VACUUM and truncate the WAL so erased rows are not left in free pages or old WAL frames."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()

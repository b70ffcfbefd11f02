"""Checks of the data a decision engine will load, run by `nbo serve` and `nbo score` before they
start BentoML workers or write anything.

A service worker that fails on bad data logs a traceback and is restarted by BentoML for ever;
checked here, the same mistake is one line on stderr and exit status 2 (docs/reliability.md §6).
The engine also treats an *unreadable* consents or contacts file as absent when its error message
happens to contain "no " or "not found" (serving/engine.py `_optional_table`): validated here, a
truncated contacts file is refused instead of silently dropping the contact history.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from nbo.table_cache import load_table_cached
from nbo.errors import NboError

#: Tables the engine reads; consents and contacts may be absent (no consents, no history).
ENGINE_TABLES = ("offers", "consents", "contacts")
OPTIONAL_TABLES = ("consents", "contacts")


def check_engine_tables(data: Path, cache: Path | None = None,
                        defer: list[Callable[[], None]] | None = None) -> dict[str, pd.DataFrame]:
    """Validate the tables the decision engine loads (an absent optional table is fine); the
    tables read, by name (a caller may use them instead of reading them again). `cache`: keep
    them there for the service's workers (`nbo.table_cache`), by the writes appended to `defer`
    (run by the caller once every check passed)."""
    tables: dict[str, pd.DataFrame] = {}
    for table in ENGINE_TABLES:
        if table in OPTIONAL_TABLES and not any((data / f"{table}.{ext}").exists() for ext in ("parquet", "csv")):
            continue  # absent: the engine starts with an empty table
        tables[table] = load_table_cached(data, table, cache, defer=defer)
    return tables


def check_service_inputs(data: Path, features_file: Path, store: str | None = None, cache: Path | None = None,
                         defer: list[Callable[[], None]] | None = None) -> dict[str, pd.DataFrame]:
    """The engine's tables, the materialised features' footer and the store file; raise NboError.
    Returns the tables read (`check_engine_tables`: kept in `cache` for the workers by `defer`)."""
    from features import check_feature_set, materialised_meta

    tables = check_engine_tables(data, cache, defer)
    check_feature_set(materialised_meta(features_file))
    check_store_file(store)
    return tables


_SQLITE_HEADER = b"SQLite format 3\x00"
_REMOTE = ("redis://", "rediss://", "unix://")


def check_store_file(store: str | None, option: str = "--store") -> None:
    """A SQLite contact store that exists must be a SQLite file (an absent or empty one is created
    on first use). Read from its 16-byte header only: nothing is opened, locked or created."""
    if store is None or store.startswith(_REMOTE):
        return
    path = Path(store.removeprefix("sqlite:///"))
    if not path.exists():
        return
    if path.is_dir():
        raise NboError(f"{option} {path} is a directory, not a SQLite contact store file")
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise NboError(f"{option} {path} cannot be read: {exc.strerror or exc}") from None
    if header and header != _SQLITE_HEADER:
        raise NboError(f"{option} {path} is not a SQLite contact store (not a database file)")


def check_redis_persistence(store: str | None, accept_volatile: bool, timeout_s: float = 2.0) -> None:
    """A Redis contact store must keep its data across a restart (issue 19 item 12): one that has
    neither the append-only file nor snapshots is refused (ConfigError: one line, exit 2) unless
    `accept_volatile` (then a warning line). Snapshots only, `appendfsync no`, a server that hides
    CONFIG or cannot be reached now: a warning (`serving.contact_store.check_persistence`).
    A SQLite store: nothing to check."""
    if store is None or not store.startswith(_REMOTE):
        return
    from serving.settings import open_store

    redis_store = open_store(store, timeout_s=timeout_s)
    try:
        redis_store.check_persistence(accept_volatile)  # type: ignore[attr-defined]
    finally:
        redis_store.close()

"""Checks of the data a decision engine will load, run by `nbo serve` and `nbo score` before they
start BentoML workers or write anything.

A service worker that fails on bad data logs a traceback and is restarted by BentoML for ever;
checked here, the same mistake is one line on stderr and exit status 2 (docs/reliability.md §6).
The engine also treats an *unreadable* consents or contacts file as absent when its error message
happens to contain "no " or "not found" (serving/engine.py `_optional_table`): validated here, a
truncated contacts file is refused instead of silently dropping the contact history.
"""

from __future__ import annotations

from pathlib import Path

from nbo.data import load_table

#: Tables the engine reads; consents and contacts may be absent (no consents, no history).
ENGINE_TABLES = ("offers", "consents", "contacts")
OPTIONAL_TABLES = ("consents", "contacts")


def check_engine_tables(data: Path) -> None:
    """Validate the tables the decision engine loads (an absent optional table is fine)."""
    for table in ENGINE_TABLES:
        if table in OPTIONAL_TABLES and not any((data / f"{table}.{ext}").exists() for ext in ("parquet", "csv")):
            continue  # absent: the engine starts with an empty table
        load_table(data, table)


def check_service_inputs(data: Path, features_file: Path) -> None:
    """The engine's tables and the materialised features' footer; raise NboError."""
    from features import check_feature_set, materialised_meta

    check_engine_tables(data)
    check_feature_set(materialised_meta(features_file))

"""`nbo export` / `nbo forget`: GDPR access and erasure for one customer (serving/privacy.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli._app import app, user_errors
from cli._preflight import check_store_file
from cli.options import LEDGER_OPTION
from nbo.errors import NboError

_CUSTOMER = typer.Option(..., "--customer", help="The customer id (as in the data contract).")
_DATA = typer.Option(None, "--data", help="Data directory: every table file in it with a customer_id column.")
_STORE = typer.Option(None, "--store", help="Contact store: a SQLite file or redis://host:port/db.")
_FEATURES = typer.Option(
    None, "--features", help="A materialised features file, or a directory (every *.parquet under it)."
)


def _check_data_dir(data: Path | None) -> None:
    """Every table file of --data must be a file: a directory named `events.parquet` (a partitioned
    dataset, a copy gone wrong) would otherwise be skipped, and its records neither listed nor erased."""
    if data is None or not data.is_dir():
        return
    for entry in sorted(data.iterdir()):
        if entry.suffix in (".parquet", ".csv") and not entry.is_file():
            kind = "a directory" if entry.is_dir() else "not a regular file"
            raise NboError(f"--data: {entry} is {kind}; nbo reads each table from one file")


@app.command()
@user_errors
def export(
    customer: str = _CUSTOMER,
    data: Path | None = _DATA,
    store: str | None = _STORE,
    features: Path | None = _FEATURES,
    ledger: Path = LEDGER_OPTION,
) -> None:
    """Print, as one JSON object, every record nbo holds about a customer (GDPR access)."""
    from serving.privacy import export_customer

    _check_data_dir(data)
    check_store_file(store)
    result = export_customer(customer, store=store, data_dir=data, features=features, ledger=ledger)
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))


@app.command()
@user_errors
def forget(
    customer: str = _CUSTOMER,
    data: Path | None = _DATA,
    store: str | None = _STORE,
    features: Path | None = _FEATURES,
    ledger: Path = LEDGER_OPTION,
) -> None:
    """Erase every record `nbo export` lists for a customer (GDPR erasure); files are rewritten atomically.

    Also erases the customer's rows in every file the ledger names (batch outputs, their work
    directories and feature caches, predictions, feature files); prints what it could not reach."""
    from serving.privacy import erase_customer

    _check_data_dir(data)
    check_store_file(store)
    result = erase_customer(customer, store=store, data_dir=data, features=features, ledger=ledger)
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    for label, why in result["not_reached"].items():  # type: ignore[union-attr]
        typer.echo(f"not erased: {label} ({why})", err=True)

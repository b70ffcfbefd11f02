"""`nbo export` / `nbo forget`: GDPR access and erasure for one customer (serving/privacy.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from nbo.cli._app import app, user_errors

_CUSTOMER = typer.Option(..., "--customer", help="The customer id (as in the data contract).")
_DATA = typer.Option(None, "--data", help="Data directory: every table file in it with a customer_id column.")
_STORE = typer.Option(None, "--store", help="Contact store: a SQLite file or redis://host:port/db.")
_FEATURES = typer.Option(
    None, "--features", help="A materialised features file, or a directory (every *.parquet under it)."
)


@app.command()
@user_errors
def export(
    customer: str = _CUSTOMER,
    data: Path | None = _DATA,
    store: str | None = _STORE,
    features: Path | None = _FEATURES,
) -> None:
    """Print, as one JSON object, every record nbo holds about a customer (GDPR access)."""
    from serving.privacy import export_customer

    result = export_customer(customer, store=store, data_dir=data, features=features)
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))


@app.command()
@user_errors
def forget(
    customer: str = _CUSTOMER,
    data: Path | None = _DATA,
    store: str | None = _STORE,
    features: Path | None = _FEATURES,
) -> None:
    """Erase every record `nbo export` lists for a customer (GDPR erasure); files are rewritten atomically."""
    from serving.privacy import erase_customer

    result = erase_customer(customer, store=store, data_dir=data, features=features)
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))

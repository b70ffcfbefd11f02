"""`nbo validate`: check a data directory against the data contract."""

from __future__ import annotations

from pathlib import Path

import typer

from cli._app import app, user_errors
from nbo.data import TABLE_NAMES, load_dataset


@app.command()
@user_errors
def validate(
    data: Path = typer.Option(..., "--data", help="Data directory with the five tables (Parquet or CSV)."),
) -> None:
    """Check a data directory against the data contract (docs/data.md); exit 2 on the first error."""
    dataset = load_dataset(data)
    for name in TABLE_NAMES:
        frame = dataset.table(name)
        typer.echo(f"{name:<10} {len(frame):>12,} rows  ok")
    typer.echo(f"{data}: valid")

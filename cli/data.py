"""`nbo validate`: check a data directory against the data contract."""

from __future__ import annotations

from pathlib import Path

import typer

from cli._app import app, user_errors
from nbo.data import TABLE_NAMES, limitations, load_dataset


@app.command()
@user_errors
def validate(
    data: Path = typer.Option(..., "--data", help="Data directory with the five tables (Parquet or CSV)."),
) -> None:
    """Check a data directory against the data contract (docs/data.md); exit 2 on the first error."""
    from features import customer_feature_names
    from nbo.errors import NboError
    from serving.catalogue import compile_offer_rules

    dataset = load_dataset(data)
    for name in TABLE_NAMES:
        if name in dataset.absent_tables:
            typer.echo(f"{name:<10} {'absent':>12}  (optional)")
            continue
        frame = dataset.table(name)
        typer.echo(f"{name:<10} {len(frame):>12,} rows  ok")
    for line in limitations(dataset):  # what nbo cannot do with this export, said once
        typer.echo(f"note: {line}")
    # Every eligibility rule compiles now, as `nbo score` and `nbo serve` will compile it.
    try:
        rules = compile_offer_rules(dataset.offers, customer_feature_names())
    except NboError as exc:
        raise NboError(f"offers.eligibility: {exc}") from None
    typer.echo(f"{'rules':<10} {len(rules):>12,} eligibility rules compile")
    typer.echo(f"{data}: valid")

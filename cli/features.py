"""`nbo features`: materialise customer features as of a date to Parquet."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import typer

from features import FEATURE_SET, customer_feature_chunks, customer_feature_names, write_materialised_chunks
from cli._app import app, user_errors
from cli.options import LEDGER_OPTION, check_engine, check_out, parse_as_of
from nbo.data import load_dataset
from nbo.ledger import record_output

#: An --as-of this many days after the last event is probably a mistake (a year typed wrong).
STALE_AFTER_DAYS = 90


@app.command()
@user_errors
def features(
    data: Path = typer.Option(..., "--data", help="Data directory with the five tables (Parquet or CSV)."),
    as_of: str = typer.Option(..., "--as-of", help="ISO date/time (UTC); only rows strictly before it are used."),
    out: Path = typer.Option(..., "--out", help="Parquet file to write (atomically)."),
    ledger: Path = LEDGER_OPTION,
    engine: str = typer.Option("pandas", "--engine", help="pandas (this machine) or spark (docs/features.md)."),
    master: str = typer.Option(None, "--master", help="Spark master (default: spark.master from Spark config, else local[*])."),
    remote: str = typer.Option(None, "--remote", help="Spark Connect URL, sc://host:port (default: $SPARK_REMOTE)."),
) -> None:
    """Materialise customer features as of a date (docs/features.md) to a Parquet file."""
    check_engine(engine, master, remote)
    out = check_out(out, (".parquet",))
    moment = parse_as_of(as_of)
    if engine == "spark":
        from features.spark import spark_customer_features

        start = time.perf_counter()
        record_output(ledger, out, "features")
        rows = spark_customer_features(data, moment, out, master=master, remote=remote,
                                       progress=lambda line: typer.echo(line, err=True))
        typer.echo(f"{out}: {rows:,} customers as of {moment.isoformat()} "
                   f"({FEATURE_SET.name} {FEATURE_SET.version}, Spark, {time.perf_counter() - start:.1f} s)")
        return
    dataset = load_dataset(data)
    last = dataset.events["ts"].max() if len(dataset.events) else None
    if last is not None and moment - last > pd.Timedelta(days=STALE_AFTER_DAYS):
        typer.echo(f"warning: --as-of {moment.date()} is {(moment - last).days:,} days after the data's last event "
                   f"({last.date()}): every customer will look inactive", err=True)
    start = time.perf_counter()
    record_output(ledger, out, "features")
    # In pieces of customers, one Parquet row group each: memory holds one piece's output, not
    # the whole frame (docs/features.md "Performance").
    rows = write_materialised_chunks(customer_feature_chunks(dataset, moment), out, moment)
    typer.echo(
        f"{out}: {rows:,} customers x {len(customer_feature_names())} columns as of {moment.isoformat()} "
        f"({FEATURE_SET.name} {FEATURE_SET.version}, {time.perf_counter() - start:.1f} s)"
    )

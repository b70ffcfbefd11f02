"""`nbo demo`: the whole path on the embedded default - simulate, train, promote, materialise, serve.

Everything it writes stays under `--dir` (data, MLflow store, features, contact store), so the
demo never touches anything outside the working directory.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer

from cli._app import app, user_errors


def _step(title: str) -> float:
    typer.secho(f"\n== {title}", bold=True)
    return time.perf_counter()


def _done(began: float) -> None:
    typer.echo(f"   ({time.perf_counter() - began:.1f} s)")


@app.command()
@user_errors
def demo(
    directory: Path = typer.Option(Path("demo"), "--dir", help="Working directory of the demo (created)."),
    customers: int = typer.Option(5000, "--customers", min=100, max=1_000_000, help="Simulated customers."),
    days: int = typer.Option(365, "--days", min=240, max=1095, help="Simulated days (>= 240: churn needs a 90-day horizon and several snapshots)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the service at the end and keep serving."),
    port: int = typer.Option(3000, "--port", min=1024, max=65535, help="Port of the service on 127.0.0.1."),
) -> None:
    """Simulated data -> trained and promoted models -> materialised features -> running service."""
    import socket

    import pandas as pd

    from nbo.errors import NboError

    if serve:  # before minutes of simulation and training, not after
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise NboError(f"--port {port} is in use on 127.0.0.1; choose another (--port)") from None

    from features import FEATURE_SET, build_customer_features, write_materialised
    from nbo.data import load_dataset
    from simulator import SimConfig, Simulator, write_simulation
    from training.registry import promote
    from models.tracking import MODEL_NAMES, resolve_tracking
    from training.train import TrainConfig, fit_and_log

    directory = directory.resolve()
    data_dir = directory / "data"
    # The simulated period ends today, so the running service's clock is the world's clock.
    start = datetime.now(UTC).date() - timedelta(days=days)
    as_of = pd.Timestamp(start + timedelta(days=days))

    began = _step(f"1. simulate {customers:,} customers x {days} days -> {data_dir}")
    sim = Simulator(SimConfig(customers=customers, days=days, start=start), seed=seed)
    sim.run(progress=True)
    write_simulation(sim, data_dir)
    daily = sim.daily()
    typer.echo(f"   {int(daily['events'].sum()):,} events, {int(daily['contacts'].sum()):,} contacts, "
               f"{int(daily['accepted'].sum()):,} accepted, {int(daily['churned_today'].sum()):,} churned")
    _done(began)

    began = _step("2. validate the data contract")
    data = load_dataset(data_dir)
    for name in ("customers", "consents", "events", "offers", "contacts"):
        typer.echo(f"   {name:<10} {len(data.table(name)):>10,} rows")
    _done(began)

    tracking = resolve_tracking(None, workdir=directory)
    client = tracking.activate()
    typer.echo(f"\n   MLflow tracking: {tracking.uri}")
    for which in ("propensity", "churn"):
        began = _step(f"3. train {which} (as of {as_of.date()})")
        result = fit_and_log(which, data, TrainConfig(as_of=as_of), tracking, data_dir=data_dir)
        typer.echo("   " + result.report.summary().replace("\n", "\n   "))
        promotion = promote(client, MODEL_NAMES[which])
        typer.echo(f"   {MODEL_NAMES[which]} v{result.version}: "
                   f"{'promoted to champion' if promotion.promoted else 'not promoted'} ({promotion.reason})")
        _done(began)

    began = _step("4. materialise customer features")
    feats = build_customer_features(data, as_of)
    features_path = directory / "features" / f"customers-{as_of:%Y%m%d}.parquet"
    write_materialised(feats, features_path, as_of)
    typer.echo(f"   {len(feats):,} customers, feature set {FEATURE_SET.name} {FEATURE_SET.version} -> {features_path}")
    stages = feats["lifecycle"].value_counts()
    typer.echo("   lifecycle: " + ", ".join(f"{k} {v:,}" for k, v in stages.items()))
    _done(began)

    if serve:
        from cli.serve import run_demo_service

        run_demo_service(directory, data_dir, features_path, port=port, as_of=as_of)
    else:
        typer.echo("\n(--no-serve: not starting the service)")

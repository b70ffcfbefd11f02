"""`nbo programmes run`: the time-driven programmes of policy.toml (serving/programmes.py `sweep`)
as of a moment, for a cron: drift to at-risk or lapsed, browse without purchase for N hours, and
the triggers of events recorded since the last run (`nbo ingest`). The outbox rows go to the
contact store that `nbo serve` reads (`GET /outbox`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli._app import app, user_errors
from nbo.errors import NboError

programmes_app = typer.Typer(help="Event-triggered programmes (the programmes of policy.toml; docs/policy.md).",
                             no_args_is_help=True)
app.add_typer(programmes_app, name="programmes")


@programmes_app.command("run")
@user_errors
def run(
    data: Path = typer.Option(..., "--data", help="Data directory (customers, events, offers, consents, contacts)."),
    features: Path = typer.Option(..., "--features", help="Materialised features file or directory (as nbo serve)."),
    policy: Path = typer.Option(..., "--policy", help="policy.toml with programmes (its programmes array)."),
    as_of: str = typer.Option(None, "--as-of", help="The sweep's moment (ISO, UTC; default: now)."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)."),
    store: str = typer.Option("nbo-contacts.db", "--store", help="Contact store: a SQLite file, or redis://host:port/db."),
) -> None:
    """Fire the programmes due as of --as-of (each trigger once, whatever runs before); print counts as JSON.

    A bad policy (unknown trigger kind, a programme without channels, negative hours...) is one
    `error:` line naming the key, exit 2, and nothing is written.
    """
    from serving.policy import active_programmes, load_policy

    loaded = load_policy(policy)  # ConfigError (an NboError) names the key: exit 2 before anything is opened
    if not active_programmes(loaded):
        raise NboError(f"--policy {policy}: no enabled [[programmes]]: nothing to run")
    if not data.is_dir():
        raise NboError(f"--data {data} is not a directory")
    from datetime import UTC, datetime

    from cli._preflight import check_engine_tables, check_store_file
    from cli.options import parse_as_of

    moment = parse_as_of(as_of, "--as-of").to_pydatetime() if as_of else datetime.now(UTC).replace(tzinfo=None)
    check_engine_tables(data.resolve())
    check_store_file(store)
    if tracking_uri is None:
        from models.tracking import resolve_tracking

        tracking_uri = resolve_tracking(None).uri
    from nbo.data import load_dataset
    from serving.engine import DecisionEngine
    from serving.programmes import outbox_summary, sweep
    from serving.settings import EngineSettings

    settings = EngineSettings(data_dir=data.resolve(), features_path=features.resolve(), tracking_uri=tracking_uri,
                              policy_path=policy.resolve(), store=store, compile_models=False)
    engine = DecisionEngine.from_settings(settings)
    try:
        rows = sweep(engine, load_dataset(data.resolve()), moment)
    finally:
        engine.close()
    typer.echo(json.dumps({"as_of": moment.isoformat(), **outbox_summary(rows)}))

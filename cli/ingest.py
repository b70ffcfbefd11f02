"""`nbo ingest FILE`: append events to the contact store's event log (serving/live.py), the same
path as `POST /events`: a running `nbo serve` on the same store reads them on its next decision.
With `--policy` (and `--features`), the programmes the events trigger fire at once, through the
function `POST /events` uses (`DecisionEngine.ingest_events`); each trigger fires once, so a
later `nbo programmes run` or a repeated ingest fires nothing again."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli._app import app, user_errors
from cli._preflight import check_store_file
from nbo.errors import NboError


@app.command()
@user_errors
def ingest(
    file: Path = typer.Argument(..., help="CSV or Parquet: event_id, customer_id, ts, type[, channel, category, "
                                          "product_id, amount] (the events table's columns and an event id)."),
    data: Path = typer.Option(..., "--data", help="Data directory: its customers (who may have events) and "
                                                  "events (events up to its last one are refused)."),
    store: str = typer.Option("nbo-contacts.db", "--store", help="Contact store: a SQLite file, or redis://host:port/db."),
    now: str = typer.Option(None, "--now", help="The clock the times are checked against (UTC; default: now)."),
    live_max_past_days: float = typer.Option(365.0, "--live-max-past-days", min=0.001,
                                             help="Refuse an event more than this many days before --now."),
    live_max_skew: float = typer.Option(300.0, "--live-max-skew", min=0,
                                        help="Refuse an event more than this many seconds after --now."),
    policy: Path = typer.Option(None, "--policy", help="policy.toml: fire the programmes the events trigger "
                                                       "(as POST /events does; needs --features)."),
    features: Path = typer.Option(None, "--features", help="Materialised features file or directory (as nbo serve; "
                                                           "with --policy)."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow tracking URI, with --policy (default: "
                                                                  "$MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)."),
) -> None:
    """Append the events of FILE to the event log, all or nothing; print what was recorded.

    A bad row (unknown customer, time out of range, unknown type or channel, an event id recorded
    with other content) is one `error:` line naming the row and field, exit 2, nothing written;
    events recorded before (same id, same content) are counted as duplicates. With --policy, the
    programmes fire (`fired`: outbox rows written).
    """
    from serving.live import LiveLimits, ingest_file
    from serving.settings import open_store

    if not file.is_file():
        raise NboError(f"{file}: no such file")
    if not data.is_dir():
        raise NboError(f"--data {data} is not a directory")
    if policy is not None:
        from serving.policy import active_programmes, load_policy

        if not active_programmes(load_policy(policy)):  # ConfigError names the key: exit 2, nothing written
            raise NboError(f"--policy {policy}: no enabled [[programmes]]: nothing to fire")
        if features is None:
            raise NboError("--policy needs --features (the programmes decide with the service's features)")
    check_store_file(store)
    if now is None:
        from datetime import UTC, datetime

        clock = datetime.now(UTC).replace(tzinfo=None)
    else:
        from cli.options import parse_as_of

        clock = parse_as_of(now, "--now").to_pydatetime()
    limits = LiveLimits(live_max_past_days, live_max_skew)
    if policy is None:
        opened = open_store(store)
        try:
            result = ingest_file(file, data_dir=data, store=opened, now=clock, limits=limits)
        finally:
            opened.close()
        typer.echo(json.dumps({"received": result.received, "recorded": result.recorded, "duplicates": result.duplicates}))
        return
    from models.tracking import resolve_tracking
    from serving.engine import DecisionEngine
    from serving.settings import EngineSettings

    settings = EngineSettings(data_dir=data.resolve(), features_path=features.resolve(),
                              tracking_uri=tracking_uri or resolve_tracking(None).uri, policy_path=policy.resolve(),
                              store=store, compile_models=False, live_max_past_days=live_max_past_days,
                              live_max_skew_s=live_max_skew)
    engine = DecisionEngine.from_settings(settings)
    try:
        result = ingest_file(file, data_dir=data, store=None, now=clock, limits=limits,
                             record=lambda events: engine.ingest_events(events, clock))
    finally:
        engine.close()
    typer.echo(json.dumps({"received": result.received, "recorded": result.recorded, "duplicates": result.duplicates,
                           "fired": result.fired}))

"""`nbo score`: batch scoring for campaign tools (docs/batch.md).

Same policy, models and features as the real-time service (`serving.batch` runs
`DecisionEngine.batch_decide` on chunks), decided at the campaign's `--as-of`, reserved in the
contact store under `--campaign` unless `--dry-run`. Idempotent and resumable.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from cli._app import app, user_errors
from cli.options import LEDGER_OPTION, check_engine, check_out
from nbo.errors import NboError
from nbo.ledger import record_output
from nbo.vocab import OUTBOUND_CHANNELS


def _features(data: Path, features: Path | None, as_of, out: Path, ledger: Path) -> Path:  # type: ignore[no-untyped-def]
    """The materialised file to score: the one given, or features computed as of --as-of."""
    from features import FEATURE_SET, build_customer_features, materialised_meta, write_materialised
    from serving.settings import latest_features_file

    if features is not None:
        path = latest_features_file(features.resolve())
        meta = materialised_meta(path)
        if meta["as_of"] > as_of:
            raise NboError(f"--features {path.name} are as of {meta['as_of']}, after --as-of {as_of}: they would use the future")
        return path
    path = out.with_name(f"{out.name}.features-{as_of:%Y%m%dT%H%M%S}.parquet")
    if not path.exists():
        from nbo.data import load_dataset

        started = time.perf_counter()
        frame = build_customer_features(load_dataset(data), as_of)
        record_output(ledger, path, "features_cache")
        write_materialised(frame, path, as_of)
        typer.echo(f"computed {len(frame):,} customers' features as of {as_of} ({FEATURE_SET.name} "
                   f"{FEATURE_SET.version}, {time.perf_counter() - started:.1f} s) -> {path}", err=True)
    return path


def _add_send_at(out: Path, data: Path, as_of, policy: Path | None, channel: str) -> None:  # type: ignore[no-untyped-def]
    """Add `send_at` (naive UTC) to the finished output, rewritten under a temporary name then renamed."""
    import os

    import pandas as pd

    from nbo.data import load_table
    from serving.policy import ContactPolicy, load_policy
    from serving.send_time import send_times_for

    quiet = (load_policy(policy) if policy is not None else ContactPolicy()).quiet_hours
    csv = out.suffix.lower() == ".csv"
    frame = pd.read_csv(out, keep_default_na=False, dtype={"customer_id": str}) if csv \
        else pd.read_parquet(out)
    when = send_times_for(frame["customer_id"].astype(str).tolist(), load_table(data, "events"),
                          load_table(data, "customers"), as_of, quiet, channel)
    frame["send_at"] = pd.to_datetime(frame["customer_id"].astype(str).map(when))
    tmp = out.with_name(f".{out.name}.send-at-{os.getpid()}")
    try:
        if csv:
            frame.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


@app.command()
@user_errors
def score(
    data: Path = typer.Option(..., "--data", help="Data directory (offers, consents, contacts; customers/events when features are computed)."),
    as_of: str = typer.Option(..., "--as-of", help="Campaign time (ISO, UTC): the decision time for caps, validity and quiet hours."),
    channel: str = typer.Option(..., "--channel", help="Contact channel: web, app, email, sms, push or mail."),
    out: Path = typer.Option(..., "--out", help="Output file, .parquet or .csv (written when complete)."),
    k: int = typer.Option(1, "--k", help="Offers per customer (1-20)."),
    campaign: str = typer.Option(None, "--campaign", help="Campaign id: reservations are recorded under it (required unless --dry-run)."),
    customers: Path = typer.Option(None, "--customers", help="Only these customers: ids one a line, or CSV/Parquet with customer_id."),
    segment: str = typer.Option(None, "--segment", help='Only customers matching this rule, e.g. \'lifecycle == "at_risk"\'.'),
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide and write the output, reserve nothing."),
    engine: str = typer.Option("pandas", "--engine", help="pandas (this machine) or spark."),
    master: str = typer.Option(None, "--master", help="Spark master (default: spark.master from Spark config, else local[*])."),
    features: Path = typer.Option(None, "--features", help="Materialised features file or directory (default: computed as of --as-of)."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)."),
    policy: Path = typer.Option(None, "--policy", help="policy.toml (default: the built-in default policy)."),
    store: str = typer.Option("nbo-contacts.db", "--store", help="Contact store: a SQLite file, or redis://host:port/db."),
    chunk_size: int = typer.Option(2_000, "--chunk-size", help="Customers per chunk: memory grows with chunk x offers (~0.4 GB per worker at 2,000 x 50)."),
    workers: int = typer.Option(1, "--workers", help="pandas engine: worker processes deciding chunks."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
    accept_volatile_redis: bool = typer.Option(
        False, "--accept-volatile-redis",
        help="Run on a Redis store without persistence (appendonly no, save \"\"): a warning instead of a refusal."),
    offer_attributes: Path = typer.Option(
        None, "--offer-attributes",
        help="CSV/Parquet: offer_id and attr_<name> columns (e.g. attr_price): what every customer faces now per offer."),
    send_hour: str = typer.Option(
        "now", "--send-hour",
        help="now: send at --as-of (the output as before). best: add a send_at column (UTC), each customer's best "
        "hour within 24 h outside quiet hours, in their time zone (outbound channels; docs/batch.md).",
    ),
    ledger: Path = LEDGER_OPTION,
) -> None:
    """Score customers in batch with the real-time policy; reserve the contacts under a campaign id."""
    from cli.options import parse_as_of
    from serving.batch import (
        MAX_K,
        BatchJob,
        BatchRun,
        check_channel,
        compile_segment,
        customers_digest,
        features_fingerprint,
        read_customer_list,
        read_offer_attributes,
    )
    from serving.settings import EngineSettings

    moment = parse_as_of(as_of)
    check_channel(channel)
    if send_hour not in ("now", "best"):
        raise NboError(f"--send-hour {send_hour!r} is not now or best")
    if send_hour == "best" and channel not in OUTBOUND_CHANNELS:
        raise NboError(f"--send-hour best is for outbound channels ({', '.join(OUTBOUND_CHANNELS)}); "
                       f"{channel} answers in the customer's session")
    if not 1 <= k <= MAX_K:
        raise NboError(f"--k {k} is out of range (1-{MAX_K})")
    check_engine(engine, master, None)
    if chunk_size < 1 or workers < 1:
        raise NboError("--chunk-size and --workers must be at least 1")
    if campaign is None:
        if not dry_run:
            raise NboError("--campaign is required (reservations are recorded under it), or pass --dry-run")
        campaign = "dry-run"
    if not 1 <= len(campaign) <= 128:
        raise NboError("--campaign must have 1 to 128 characters")
    data = data.resolve()
    if not data.is_dir():
        raise NboError(f"--data {data} is not a directory")
    from cli._preflight import check_engine_tables, check_redis_persistence, check_store_file

    check_engine_tables(data)  # bad data: one line, exit 2, before any output or reservation
    check_store_file(store)
    check_redis_persistence(store, accept_volatile_redis)  # caps that a Redis restart would forget: refused
    try:
        compile_segment(segment)  # a bad rule fails here, naming the construct and column
    except NboError as exc:
        raise NboError(f"--segment: {exc}") from None
    ids = read_customer_list(customers) if customers is not None else None
    attributes = None
    if offer_attributes is not None:
        from nbo.data import load_table

        attributes = read_offer_attributes(offer_attributes.resolve(), load_table(data, "offers")["offer_id"].tolist())
    out = check_out(out.resolve(), (".parquet", ".csv"))
    by_uplift = False
    if policy is not None:
        from serving.policy import load_policy

        by_uplift = load_policy(policy).arbitration.objective == "uplift"
    if tracking_uri is None:
        from models.tracking import resolve_tracking

        tracking_uri = resolve_tracking(None).uri
    if by_uplift:  # no uplift champion: one line and exit 2, before anything is written
        from serving.engine import require_uplift_champion

        require_uplift_champion(tracking_uri)
    features_path = _features(data, features, moment, out, ledger)
    settings = EngineSettings(data_dir=data, features_path=features_path, tracking_uri=tracking_uri,
                              policy_path=policy.resolve() if policy else None, store=store)
    job = BatchJob(campaign=campaign, channel=channel, as_of=moment.to_pydatetime(), k=k, dry_run=dry_run,
                   engine=engine, chunk_rows=chunk_size, segment=segment or None,  # type: ignore[arg-type]
                   customers_digest=customers_digest(ids), features=features_fingerprint(features_path),
                   offer_attributes=attributes)
    run = BatchRun(settings, job, out, ids, workers=workers, master=master, progress=progress)
    # Recorded before anything is written: a run killed half way leaves its parts reachable too.
    record_output(ledger, run.work_dir, "batch_work_dir")
    record_output(ledger, out, "batch_output")
    started = time.perf_counter()
    summary = run.run()
    if send_hour == "best":
        _add_send_at(out, data, moment.to_pydatetime(), policy, channel)
    elapsed = time.perf_counter() - started
    if summary.get("already_complete"):
        typer.echo(f"campaign {campaign!r} already complete: {out} stands, nothing reserved again", err=True)
    suppressed = ", ".join(f"{r} {n:,}" for r, n in summary["suppressed_by_reason"].items()) or "none"  # type: ignore[union-attr]
    typer.echo(
        f"{summary['customers_scored']:,} customers scored, {summary['customers_offered']:,} offered "
        f"({summary['offers']:,} offers, expected value {summary['expected_value']:,.2f}), "
        f"{summary['customers_suppressed']:,} without offer ({suppressed}), "
        f"{summary['segment_excluded']:,} outside the segment; "
        f"{'dry run, nothing reserved' if dry_run else 'reserved under campaign ' + repr(campaign)} "
        f"in {elapsed:.1f} s -> {out}"
    )
    typer.echo(json.dumps(summary, sort_keys=True, default=str))

"""`nbo train`, `nbo promote`, `nbo predict`: the data scientist's loop around the MLflow registry."""

from __future__ import annotations

import enum
import json
import os
from pathlib import Path

import typer

from cli._app import app, short_openmp_spin, user_errors
from cli.options import LEDGER_OPTION, check_engine, check_out, parse_as_of
from nbo.allocator import keep_freed_memory
from nbo.data import load_dataset, write_table
from nbo.errors import NboError

TRACKING_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)."


class Which(str, enum.Enum):
    propensity = "propensity"
    churn = "churn"
    all = "all"
    uplift = "uplift"


class ModelKind(str, enum.Enum):
    propensity = "propensity"
    churn = "churn"


def _usable_cores(most: int) -> int:
    """The cores this process may run on (its affinity where the OS tells it), at most `most`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(most, cores))


@app.command()
@user_errors
def train(
    data: Path = typer.Option(..., "--data", help="Data directory (docs/data.md)."),
    as_of: str = typer.Option(..., "--as-of", help="Training date (UTC); nothing at or after it is used."),
    model: Which = typer.Option(Which.all, "--model", help="Which model to train (`all`: propensity and churn; "
                                "`uplift` on its own: it needs decisions without contact, docs/training.md)."),
    horizon_days: int = typer.Option(90, "--horizon-days", min=1, max=730, help="Churn horizon H in days."),
    window_days: int = typer.Option(7, "--window-days", min=1, max=90, help="Acceptance window in days."),
    max_exposures: int = typer.Option(None, "--max-exposures", min=1000,
                                      help="Use only the most recent N exposures for propensity."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
    seed: int = typer.Option(0, "--seed", help="Random seed of the fit."),
    objective: str = typer.Option(
        "auto", "--objective",
        help="Propensity objective: auto (choice when every decision has 2+ candidates and exactly one "
             "accepted, else binary), binary or choice (docs/training.md)."),
    engine: str = typer.Option("pandas", "--engine", help="Who builds the training sets: pandas (this machine) "
                               "or spark (the same sets; docs/training.md)."),
    master: str = typer.Option(None, "--master", help="Spark master (default: spark.master from Spark config, else local[*])."),
    remote: str = typer.Option(None, "--remote", help="Spark Connect URL, sc://host:port (default: $SPARK_REMOTE)."),
    workers: int = typer.Option(None, "--workers", min=1, help="Processes building the propensity training set "
                                "with pandas (default: the usable cores, at most 4; the same rows whatever the number)."),
) -> None:
    """Train propensity and/or churn models, log them to MLflow, register each as `challenger`.

    Prints a table of validation metrics against the baselines (logistic regression, the offer's
    historical acceptance rate, the recency heuristic) and, on simulated data, the truth.
    """
    short_openmp_spin()  # before LightGBM and scikit-learn load their OpenMP
    keep_freed_memory()  # the training set's pieces allocate and free arrays of tens of MB
    from models.tracking import resolve_tracking
    from training.train import TrainConfig, fit_and_log, metrics_json

    when = parse_as_of(as_of)
    if objective not in ("auto", "binary", "choice"):
        raise NboError(f"--objective {objective!r} is not auto, binary or choice")
    check_engine(engine, master, remote)
    if engine == "spark" and model == Which.uplift:
        raise NboError("--engine spark builds the propensity and churn sets; the uplift set is built with pandas")
    dataset = load_dataset(data)  # bad data fails before anything is written to MLflow
    tracking = resolve_tracking(tracking_uri)
    tracking.activate()
    config = TrainConfig(as_of=when, window_days=window_days, horizon_days=horizon_days,
                         max_exposures=max_exposures, seed=seed, objective=objective, engine=engine,
                         spark_master=master, spark_remote=remote, workers=workers or _usable_cores(4))
    if model == Which.uplift:
        from training.uplift import UpliftConfig, fit_and_log_uplift

        typer.echo("training uplift ...")
        up = fit_and_log_uplift(dataset, UpliftConfig(as_of=when, window_days=window_days, seed=seed), tracking,
                                data_dir=data)
        typer.echo(up.summary())
        typer.echo(f"-> registered {up.registered_name} version {up.version} as @challenger (run {up.run_id})\n")
        typer.echo(json.dumps({"uplift": {"version": up.version, "run_id": up.run_id, **up.metrics}}, indent=2,
                              default=float))
        return
    which = ["propensity", "churn"] if model == Which.all else [model.value]
    results = []
    for name in which:
        if name == "propensity" and dataset.contacts.empty:
            typer.echo("propensity: skipped - the contacts table is empty (no exposures to learn from)")
            continue
        typer.echo(f"training {name} ...")
        result = fit_and_log(name, dataset, config, tracking, data_dir=data)
        results.append(result)
        typer.echo(result.report.summary())
        if not result.report.by_stage.empty:
            typer.echo("by lifecycle stage:\n" + result.report.by_stage.to_string(float_format=lambda v: f"{v:.4f}"))
        typer.echo(f"-> registered {result.registered_name} version {result.version} as @challenger "
                   f"(run {result.run_id})\n")
    if not results:
        raise NboError("nothing was trained")
    typer.echo(metrics_json(results))


@app.command()
@user_errors
def promote(
    model: str = typer.Option(..., "--model", help="Registered model name (nbo-propensity, nbo-churn, nbo-uplift) "
                                                    "or propensity/churn/uplift/all (all: propensity and churn)."),
    force: bool = typer.Option(False, "--force", help="Promote without the baseline gate and the champion "
                                                      "comparison (the output says what was skipped)."),
    require_ope: bool = typer.Option(False, "--require-ope", help="Also require the latest `nbo evaluate` of "
                                     "challenger vs champion to pass (challenger's DR lower bound > champion's DR)."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
) -> None:
    """Move `champion` to the `challenger` if it beats its run's best baseline and is at least as good
    as the champion on the same validation data."""
    from training.registry import promote as do_promote
    from training.registry import promote_uplift
    from models.tracking import MODEL_NAMES, UPLIFT_MODEL, resolve_tracking

    client = resolve_tracking(tracking_uri).activate()
    if model in ("uplift", UPLIFT_MODEL):
        result = promote_uplift(client, UPLIFT_MODEL, force=force)
        verb = "promoted" if result.promoted else "not promoted"
        typer.echo(f"{UPLIFT_MODEL}: {verb} - {result.reason}")
        if not result.promoted and not force and result.metrics:
            raise typer.Exit(code=1)
        return
    if model == "all":
        names = list(MODEL_NAMES.values())
    else:
        names = [MODEL_NAMES.get(model, model)]
    for name in names:
        if name not in MODEL_NAMES.values():
            raise NboError(f"unknown model {name!r}; use {', '.join(MODEL_NAMES.values())}")
        result = do_promote(client, name, force=force, require_ope=require_ope)
        verb = ("promoted" if result.promoted else
                "not promoted (no champion)" if result.champion_before is None else "kept the champion")
        typer.echo(f"{name}: {verb} - {result.reason}")
        if not result.promoted and not force and result.metrics:
            raise typer.Exit(code=1)


@app.command()
@user_errors
def predict(
    model: ModelKind = typer.Option(..., "--model", help="churn: per customer; propensity: per customer x offer."),
    data: Path = typer.Option(..., "--data", help="Data directory (docs/data.md)."),
    as_of: str = typer.Option(..., "--as-of", help="Score as of this date (UTC)."),
    out: Path = typer.Option(..., "--out", help="Output file (.parquet or .csv)."),
    alias: str = typer.Option("champion", "--alias", help="Registry alias to load."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
    ledger: Path = LEDGER_OPTION,
) -> None:
    """Score customers (churn) or customer x offer pairs (propensity) with a registered model."""
    from nbo.ledger import record_output

    import numpy as np

    from features import build_candidate_features, build_customer_features
    from models.registry import load_model
    from models.tracking import MODEL_NAMES, resolve_tracking

    out = check_out(out, (".parquet", ".csv"))
    when = parse_as_of(as_of)
    dataset = load_dataset(data)
    client = resolve_tracking(tracking_uri).activate()
    loaded = load_model(client, MODEL_NAMES[model.value], alias)
    customers = build_customer_features(dataset, when)
    if model == ModelKind.churn:
        frame = customers.reset_index()[["customer_id", "lifecycle"]]
        X = customers[loaded.feature_names].to_numpy(np.float32, na_value=np.nan)
        frame["churn_probability"] = loaded.model.predict_proba_positive(X)
    else:
        from features import prepare_offers
        from features.offer_attributes import attribute_columns

        # The model's offer codes; no decision-time attributes here (their columns are missing).
        offers = prepare_offers(dataset.offers, vocabulary=loaded.model.vocabulary)
        pairs = build_candidate_features(customers, offers, dataset.contacts, None, when)
        for name in attribute_columns(loaded.model.decision_attributes):
            pairs[name] = np.nan
        frame = pairs[["customer_id", "offer_id"]].copy()
        X = pairs[loaded.feature_names].to_numpy(np.float32, na_value=np.nan)
        group = pairs["customer_id"].to_numpy(dtype=object)  # a choice model: each customer's offers
        frame["p_accept"] = (loaded.model.predict_proba_positive(X, group) if loaded.model.is_choice
                             else loaded.model.predict_proba_positive(X))
    frame["model_version"] = loaded.label
    record_output(ledger, out, "predictions")
    write_table(frame.reset_index(drop=True), out)
    typer.echo(f"wrote {len(frame):,} rows to {out} with {loaded.label}")
    typer.echo(json.dumps({"rows": len(frame), "model": loaded.label,
                           "mean": float(frame.iloc[:, -2].mean()) if len(frame) else None}))

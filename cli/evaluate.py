"""`nbo evaluate`: off-policy evaluation of a candidate model + contact policy on logged decisions."""

from __future__ import annotations

from pathlib import Path

import typer

from cli._app import app, user_errors
from cli.options import check_out, parse_as_of
from nbo.data import load_dataset

TRACKING_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)."


def _load(client, ref: str):
    from models.registry import load_model
    from models.tracking import PROPENSITY_MODEL

    if ref.isdigit():
        return load_model(client, PROPENSITY_MODEL, version=ref)
    return load_model(client, PROPENSITY_MODEL, alias=ref)


@app.command()
@user_errors
def evaluate(
    data: Path = typer.Option(..., "--data", help="Data directory with logged contacts (docs/data.md)."),
    candidate: str = typer.Option("challenger", "--candidate", help="Propensity model alias or version to evaluate."),
    baseline: str = typer.Option("champion", "--baseline", help="Alias or version to compare with ('' for none)."),
    policy: Path = typer.Option(None, "--policy", help="policy.toml (default: the default contact policy)."),
    since: str = typer.Option(None, "--since", help="First logged decision to use (UTC; default: 28 days before the last)."),
    until: str = typer.Option(None, "--until", help="End of the period (UTC, exclusive; default: after the last decision)."),
    out: Path = typer.Option(Path("ope-report.md"), "--out", help="Markdown report (PNG plots written next to it)."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
) -> None:
    """Estimate acceptance and expected value per decision (IPS, SNIPS, DR with 95 % intervals) of
    the candidate next to the logged policy and the baseline; log the run to MLflow."""
    from serving.policy import ContactPolicy, load_policy
    from evaluation.evaluate import evaluate as run_ope
    from evaluation.evaluate import log_evaluation, write_report
    from models.tracking import resolve_tracking
    from models.tracking import version_by_alias

    out = check_out(out, None)
    since_ts = parse_as_of(since, "--since") if since else None
    until_ts = parse_as_of(until, "--until") if until else None
    contact_policy = load_policy(policy) if policy else ContactPolicy()
    dataset = load_dataset(data)  # bad data fails before anything is read from or written to MLflow
    client = resolve_tracking(tracking_uri).activate()
    cand = _load(client, candidate)
    base = None
    if baseline:
        from models.tracking import PROPENSITY_MODEL

        if baseline.isdigit() or version_by_alias(client, PROPENSITY_MODEL, baseline) is not None:
            base = _load(client, baseline)
            if base.version == cand.version:
                typer.echo(f"baseline {base.label} is the candidate: evaluating it once")
                base = None
        else:
            typer.echo(f"no @{baseline} yet: no baseline")
    result = run_ope(dataset, cand, contact_policy, base, since_ts, until_ts, progress=True)
    write_report(result, out)
    run_id = log_evaluation(result, cand.label, base.label if base else None)
    typer.echo(result.markdown(f"{out.stem}_"))
    ok, reason = result.gate()
    typer.echo(f"gate: {'pass' if ok else 'fail'} - {reason}")
    typer.echo(f"wrote {out}; MLflow run {run_id}")
    if not ok:
        raise typer.Exit(code=1)  # the convention of every command: ran, verdict negative

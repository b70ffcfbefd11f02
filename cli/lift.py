"""`nbo lift`: incremental conversions and revenue against the control group (docs/evaluation.md)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import typer

from cli._app import app, user_errors
from cli.options import check_out, parse_as_of
from nbo.errors import NboError


@app.command()
@user_errors
def lift(
    data: Path = typer.Option(..., "--data", help="Data directory with contacts and no_offers (docs/data.md)."),
    out: Path = typer.Option(Path("lift.json"), "--out", help="The figures as JSON; the charts are written next to it "
                             "(<stem>_qini.png, <stem>_over_time.png)."),
    since: str = typer.Option(None, "--since", help="First decision to count (UTC; default: the first)."),
    until: str = typer.Option(None, "--until", help="End of the period (UTC, exclusive; default: after the last)."),
    window_days: int = typer.Option(7, "--window-days", help="A decision's outcome: purchases within this many days after it."),
    baseline: str = typer.Option("control", "--baseline", help="control: the universal control group's decisions; "
                                 "randomised: also the randomised no-offer draws."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="Log the figures and charts as an MLflow run "
                                     "(default: not logged)."),
) -> None:
    """Incremental conversions and revenue of the contacts, by channel, programme and offer, against
    the control group, with 95 % intervals; a Qini curve and the incremental revenue week by week."""
    from evaluation.lift import lift as measure
    from nbo.data import load_dataset

    out = check_out(out, (".json",))
    since_ts = parse_as_of(since, "--since") if since else None
    until_ts = parse_as_of(until, "--until") if until else None
    if not data.is_dir():
        raise NboError(f"--data {data} is not a directory")
    report = measure(load_dataset(data), since_ts, until_ts, window_days, baseline)  # every check before any write
    payload = json.dumps(report.as_dict(), indent=2) + "\n"
    charts = {name: out.with_name(f"{out.stem}_{name}.png") for name in ("qini", "over_time")}
    figures = report.figures()
    written: list[Path] = []
    try:  # each file complete or absent: written aside, then renamed
        for name, path in charts.items():
            tmp = path.with_name(f".{path.name}.tmp")
            figures[name].savefig(tmp, dpi=110, format="png")
            os.replace(tmp, path)
            written.append(path)
        fd, tmp_json = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload)
        os.replace(tmp_json, out)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise NboError(f"cannot write {out}: {exc.strerror or exc}") from None
    s = report.summary
    conv, rev = s["incremental_conversions"], s["incremental_revenue"]
    typer.echo(f"{s['contacts']:,} contacts vs {s['control_decisions']:,} control decisions "
               f"({s['unmeasured_contacts']:,} contacts on channels without control not measured)")
    typer.echo(f"incremental conversions {_fmt(conv)}; incremental revenue {_fmt(rev)} (95 % interval)")
    if tracking_uri:
        import mlflow

        from models.tracking import resolve_tracking

        resolve_tracking(tracking_uri).activate()
        with mlflow.start_run(run_name=f"lift-{s['first_decision'][:10]}-{s['last_decision'][:10]}") as run:
            mlflow.set_tags({"nbo.lift": "1", "nbo.lift.baseline": baseline})
            mlflow.log_params({"since": s["since"], "until": s["until"], "window_days": window_days, "baseline": baseline})
            metrics = {f"{what}_{k}": v for what, est in (("conversions", conv), ("revenue", rev))
                       for k, v in est.items() if v is not None}
            mlflow.log_metrics({**metrics, "contacts": float(s["contacts"]), "control_decisions": float(s["control_decisions"])})
            for name, fig in figures.items():
                mlflow.log_figure(fig, f"lift/{name}.png")
            mlflow.log_artifact(str(out), "lift")
        typer.echo(f"MLflow run {run.info.run_id}")
    typer.echo(f"wrote {out}, {', '.join(str(p) for p in charts.values())}")


def _fmt(est: dict[str, float | None]) -> str:
    if est["incremental"] is None:
        return "n/a"
    return f"{est['incremental']:,.1f} [{est['low']:,.1f}, {est['high']:,.1f}]"

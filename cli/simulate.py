"""`nbo simulate`: generate a customer base with known truth (see docs/simulator.md)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import typer

from cli._app import app, user_errors
from nbo.errors import NboError


@app.command()
@user_errors
def simulate(
    customers: int = typer.Option(..., "--customers", help="Number of customers (> 0)."),
    days: int = typer.Option(..., "--days", help="Length of the simulated period in days (> 0)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
    out: Path = typer.Option(..., "--out", help="Output directory (the five tables, plus truth/)."),
    start: str = typer.Option("2025-01-01", "--start", help="First day of the period, YYYY-MM-DD (UTC)."),
    fmt: str = typer.Option("parquet", "--format", help="File format of the five tables: parquet or csv."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr for long runs."),
    cannibalisation: bool = typer.Option(
        False, "--cannibalisation/--no-cannibalisation",
        help="Customers who buy an offer's category anyway (within 7 days) make it a non-incremental acceptance "
        "(docs/simulator.md).",
    ),
    control_share: float = typer.Option(
        0.0, "--control-share",
        help="Share of customers in the logging policy's universal control group, in [0, 0.5] (by hashed id; "
        "never contacted on email, sms, push). Decisions without contact go to no_offers.",
    ),
    no_offer_rate: float = typer.Option(
        0.0, "--no-offer-rate", help="Share of the logging policy's other decisions randomised to no offer, in [0, 1].",
    ),
    send_hours: bool = typer.Option(
        False, "--send-hours/--no-send-hours",
        help="Customers engage at their own hours of the day; a message delivered at an hour they are not around "
        "is accepted less often. The truth gains each customer's hour profile (docs/simulator.md).",
    ),
    incentives: str = typer.Option(
        None, "--incentives",
        help="Incentive variants of every offer: `default` (pct10, pct20, free_delivery) or a TOML file of "
        "[[incentive]] tables (docs/simulator.md).",
    ),
) -> None:
    """Simulate customers, behaviour, offers and contacts under a randomised logging policy.

    Writes customers, consents, events, offers and contacts (valid for `nbo validate`) to OUT, and
    the ground truth (latent traits, churn dates, true acceptance probabilities) to OUT/truth/.
    """
    from simulator import SimConfig, Simulator, write_simulation
    from simulator.config import load_incentives
    from simulator.io import check_out_dir

    if customers <= 0:
        raise NboError(f"--customers must be > 0, got {customers}")
    if days <= 0:
        raise NboError(f"--days must be > 0, got {days}")
    if seed < 0:
        raise NboError(f"--seed must be >= 0, got {seed}")
    try:
        start_date = datetime.strptime(start, "%Y-%m-%d").date()
    except ValueError:
        raise NboError(f"--start must be a date YYYY-MM-DD, got {start!r}") from None
    variants = load_incentives(incentives) if incentives is not None else ()
    check_out_dir(out, fmt)
    began = time.perf_counter()
    if not 0.0 <= control_share <= 0.5:
        raise NboError(f"--control-share must be in [0, 0.5], got {control_share}")
    if not 0.0 <= no_offer_rate <= 1.0:
        raise NboError(f"--no-offer-rate must be in [0, 1], got {no_offer_rate}")
    config = SimConfig(customers=customers, days=days, start=start_date, cannibalisation=cannibalisation,
                       incentives=variants, control_share=control_share, no_offer_rate=no_offer_rate,
                       send_hours=send_hours)
    sim = Simulator(config, seed=seed)
    sim.run(progress=progress and customers * days >= 1_000_000)
    write_simulation(sim, out, fmt=fmt)
    daily = sim.daily()
    typer.echo(
        f"simulated {customers:,} customers x {days} days (seed {seed}) in {time.perf_counter() - began:.1f} s: "
        f"{int(daily['events'].sum()):,} events, {int(daily['contacts'].sum()):,} contacts, "
        f"{int(daily['accepted'].sum()):,} accepted, {int(daily['churned_today'].sum()):,} churned -> {out}"
    )

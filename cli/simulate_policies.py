"""`nbo simulate-policies`: closed-loop comparison of contact policies in the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli._app import app, user_errors


@app.command("simulate-policies")
@user_errors
def simulate_policies(
    customers: int = typer.Option(2000, "--customers", min=50, help="Simulated customers."),
    days: int = typer.Option(365, "--days", min=7, help="Days each policy runs."),
    seed: int = typer.Option(0, "--seed", help="World seed (the same customers for every policy)."),
    train_days: int = typer.Option(180, "--train-days", min=30, help="Days of logging-policy data the models learn from "
                                                                 "(a separate run of the same world configuration, seed + 1)."),
    policies: str = typer.Option(",".join(("random", "popular", "nbo_uncapped", "nbo", "oracle")), "--policies",
                                 help="Comma-separated policy names: random, popular, nbo, oracle; nbo and oracle "
                                      "also under part of the policy's rules with a suffix: _fatigue_caps (no per-offer "
                                      "cap or decline cooldowns), _repeat_rules (no fatigue caps), _uncapped (neither)."),
    policy: Path = typer.Option(None, "--policy", help="policy.toml for the nbo and oracle policies (default policy)."),
    out: Path = typer.Option(None, "--out", help="Write the table as JSON (one object per policy)."),
    plots: Path = typer.Option(None, "--plots", help="Directory for PNG plots (cumulative value, active customers)."),
    organic_margin: float = typer.Option(0.3, "--organic-margin", min=0.0, max=1.0,
                                         help="Margin on the purchases customers make on their own, which churn loses "
                                              "(long-term value counts it; 0 counts offers alone)."),
    offer_wearout: float = typer.Option(0.1, "--offer-wearout", min=0.0,
                                        help="Acceptance logit a customer loses per recent showing of the same offer "
                                             "(the simulated world; 0: customers never tire of an offer repeated)."),
    refit_days: int = typer.Option(30, "--refit-days", min=0, help="Refit the nbo policies' model every N days on the "
                                                                   "logging run's rows plus their own closed exposures "
                                                                   "(0: never)."),
) -> None:
    """Run each policy day by day over the same simulated customers and print contacts, accepted
    offers, value, churned customers and long-term value (docs/evaluation.md)."""
    from nbo.errors import NboError
    from simulator import SimConfig
    from serving.policy import ContactPolicy, load_policy
    from evaluation.policy_sim import ALL_POLICY_NAMES, compare_policies, plot_runs, table

    names = [p.strip() for p in policies.split(",") if p.strip()]
    unknown = [n for n in names if n not in ALL_POLICY_NAMES]
    if unknown:
        raise NboError(f"unknown policy {unknown[0]!r}; use {', '.join(ALL_POLICY_NAMES)}")
    contact_policy = load_policy(policy) if policy else ContactPolicy()
    config = SimConfig(customers=customers, days=days, organic_margin=organic_margin, offer_wearout=offer_wearout)
    runs, trained = compare_policies(config, seed, contact_policy, names, train_days=train_days, progress=True,
                                      refit_days=refit_days)
    if trained is not None:
        typer.echo(f"propensity model: {trained.train_rows:,} training exposures, validation AUC {trained.valid_auc:.3f}")
    frame = table(runs)
    typer.echo(frame.to_string(float_format=lambda v: f"{v:,.1f}"))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({r.name: r.row() for r in runs}, indent=2) + "\n")
        typer.echo(f"wrote {out}")
    if plots is not None:
        for path in plot_runs(runs, plots):
            typer.echo(f"wrote {path}")

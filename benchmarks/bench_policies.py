"""Closed-loop policy comparison over a simulated year: the figures of docs/evaluation.md.

    python benchmarks/bench_policies.py [--customers 1000] [--days 365] [--seeds 0 1 2] [--refit-days 30]
                                        [--out bench_policies.json] [--organic-margin 0.3]
                                        [--accept-fatigue 0.45] [--churn-fatigue 1.5] [--offer-wearout 0.1]
                                        [--extra-policies nbo_fatigue_caps oracle_fatigue_caps]
    python benchmarks/bench_policies.py --from-daily bench_policies.daily.csv [--organic-margin 0]

For each seed: trains the propensity model on a 180-day logging-policy run of the same world
configuration (seed + 1), runs every policy for `--days` days on the world of the seed, prints the
table and the checks of issue 8 (pass/FAIL with the numbers), and writes the table as JSON, the
daily series as CSV and the plots (one seed: `--out`; several: `<out stem>.seed<S>.json`). With
several seeds it ends with one line per check and seed, so a check that passes on one world only
is visible. Long-term value counts the margin on customers' own purchases (`--organic-margin`,
default `SimConfig.organic_margin`); the checks also print the offers-only figures and the margin
at which nbo and nbo_uncapped break even. `--from-daily` re-summarises saved years, no simulation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, from anywhere
from benchmarks._hardware import hardware  # noqa: E402
from simulator import SimConfig
from serving.policy import ContactPolicy
from evaluation.policy_sim import (
    ALL_POLICY_NAMES,
    DEFAULT_REFIT_DAYS,
    POLICY_NAMES,
    PolicyRun,
    break_even_margin,
    compare_policies,
    plot_runs,
    summarise,
    table,
)


def checks(runs: list[PolicyRun]) -> list[tuple[str, str, bool]]:
    """(short name, description with the numbers, passed) of each check of issue 8. Long-term
    value counts the margin on customers' own purchases (`SimConfig.organic_margin`); the
    descriptions also give the offers-only figures, so a check carried by that margin shows."""
    by = {r.name: r for r in runs}
    ltv = {k: r.long_term_value for k, r in by.items()}
    offers = {k: r.offer_long_term_value for k, r in by.items()}
    share = ltv["nbo"] / ltv["oracle"] if ltv["oracle"] else float("nan")
    offer_share = offers["nbo"] / offers["oracle"] if offers["oracle"] else float("nan")
    margin = break_even_margin(by["nbo"], by["nbo_uncapped"])
    return [
        ("beats popular", f"nbo beats popular on long-term value ({ltv['nbo']:,.0f} vs {ltv['popular']:,.0f}; "
                          f"offers alone {offers['nbo']:,.0f} vs {offers['popular']:,.0f})",
         ltv["nbo"] > ltv["popular"]),
        ("beats random", f"nbo beats random on long-term value ({ltv['nbo']:,.0f} vs {ltv['random']:,.0f}; "
                         f"offers alone {offers['nbo']:,.0f} vs {offers['random']:,.0f})",
         ltv["nbo"] > ltv["random"]),
        ("80% of oracle", f"nbo reaches 80% of the oracle's long-term value ({share:.1%}; offers alone "
                          f"{offer_share:.1%})", share >= 0.8),
        ("keeps customers", f"nbo keeps more customers than nbo_uncapped ({by['nbo'].active_end} vs "
                            f"{by['nbo_uncapped'].active_end})", by["nbo"].active_end > by["nbo_uncapped"].active_end),
        ("LTV over uncapped", f"nbo earns more long-term value than nbo_uncapped ({ltv['nbo']:,.0f} vs "
                              f"{ltv['nbo_uncapped']:,.0f}; offers alone {offers['nbo']:,.0f} vs "
                              f"{offers['nbo_uncapped']:,.0f}; break-even organic margin {margin:.2f})",
         ltv["nbo"] > ltv["nbo_uncapped"]),
    ]


def run_seed(args: argparse.Namespace, seed: int, out: Path, plots: Path) -> list[PolicyRun]:
    t0 = time.perf_counter()
    config = SimConfig(customers=args.customers, days=args.days, organic_margin=args.organic_margin,
                       accept_fatigue=args.accept_fatigue, churn_fatigue=args.churn_fatigue,
                       offer_wearout=args.offer_wearout)
    names = [*POLICY_NAMES, *args.extra_policies]
    runs, trained = compare_policies(config, seed, ContactPolicy(), names, train_days=args.train_days,
                                     progress=False, refit_days=args.refit_days)
    elapsed = time.perf_counter() - t0
    refits = max((r.refits for r in runs), default=0)
    print(f"\n{args.customers} customers x {args.days} days, seed {seed}, accept_fatigue {args.accept_fatigue}, "
          f"churn_fatigue {args.churn_fatigue}, offer_wearout {args.offer_wearout}; model: {trained.train_rows:,} exposures, "
          f"validation AUC {trained.valid_auc:.3f}; refit every {args.refit_days or 'never'} days "
          f"({refits} refits); {elapsed:.0f} s")
    report(runs, args.days)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({r.name: r.row() for r in runs}, indent=2) + "\n")
    daily = pd.concat([r.daily.assign(policy=r.name) for r in runs], ignore_index=True)
    daily_path = out.with_suffix(".daily.csv")
    daily.to_csv(daily_path, index=False)  # to recompute any summary without re-running the year
    print("wrote", out, "and", daily_path)
    for path in plot_runs(runs, plots):
        print("wrote", path)
    return runs


def from_daily(path: Path, organic_margin: float) -> list[PolicyRun]:
    """The runs of a saved `<out>.daily.csv`, summarised again (e.g. at another organic margin)."""
    daily = pd.read_csv(path)
    return [summarise(name, part.drop(columns="policy").reset_index(drop=True), organic_margin)
            for name, part in daily.groupby("policy", sort=False)]


def report(runs: list[PolicyRun], days: int) -> None:
    """Print the table, the first weeks and the checks."""
    by = {r.name: r for r in runs}
    print(table(runs).to_string(float_format=lambda v: f"{v:,.1f}"))
    first = {r.name: r.value_after(28) for r in runs}
    print("net value after 28 days:", {k: round(v) for k, v in first.items()})
    for _, text, ok in checks(runs):
        print(f"[{'pass' if ok else 'FAIL'}] {text}")
    u = by["nbo_uncapped"]
    for capped in ("nbo", "nbo_fatigue_caps"):
        if capped not in by:
            continue
        n = by[capped]
        print(f"[info] value earned within the {days} days, offers: {capped} {n.value:,.0f} vs nbo_uncapped "
              f"{u.value:,.0f}; with the margin on own purchases: {n.value + n.organic_value:,.0f} vs "
              f"{u.value + u.organic_value:,.0f}; break-even organic margin "
              f"{break_even_margin(n, u, within_period=True):.2f}; offers after 28 days: {first[capped]:,.0f} vs "
              f"{first['nbo_uncapped']:,.0f}; long-term value {n.long_term_value:,.0f} vs {u.long_term_value:,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="World seeds, one year each.")
    parser.add_argument("--seed", type=int, default=None, help="One world seed (same as --seeds S).")
    parser.add_argument("--train-days", type=int, default=180)
    parser.add_argument("--refit-days", type=int, default=DEFAULT_REFIT_DAYS,
                        help="Refit the nbo policies' model every N days on their own log (0: never).")
    parser.add_argument("--out", type=Path, default=Path("bench_policies.json"))
    parser.add_argument("--plots", type=Path, default=Path("bench_policies_plots"))
    parser.add_argument("--organic-margin", type=float, default=SimConfig().organic_margin,
                        help="Margin on customers' own purchases in long-term value (0: offers alone).")
    parser.add_argument("--accept-fatigue", type=float, default=SimConfig().accept_fatigue,
                        help="The world's acceptance logit lost per unit of fatigue (see bench_thesis.py).")
    parser.add_argument("--churn-fatigue", type=float, default=SimConfig().churn_fatigue,
                        help="The world's churn hazard multiplier per unit of fatigue.")
    parser.add_argument("--offer-wearout", type=float, default=SimConfig().offer_wearout,
                        help="The world's acceptance logit lost per recent showing of the same offer (bench_rules.py).")
    parser.add_argument("--extra-policies", nargs="*", default=[],
                        choices=[n for n in ALL_POLICY_NAMES if n not in POLICY_NAMES],
                        help="Run these too, e.g. nbo_fatigue_caps (the policy's fatigue caps without its repeat rules).")
    parser.add_argument("--from-daily", type=Path, nargs="+", default=None,
                        help="Summarise saved <out>.daily.csv files again instead of running (e.g. another margin).")
    args = parser.parse_args()
    if args.from_daily:
        for path in args.from_daily:
            print(f"\n{path} (organic margin {args.organic_margin})")
            runs = from_daily(path, args.organic_margin)
            report(runs, len(runs[0].daily))
        return
    seeds = [args.seed] if args.seed is not None else args.seeds
    print(hardware())
    results: dict[int, list[PolicyRun]] = {}
    for seed in seeds:
        out = args.out if len(seeds) == 1 else args.out.with_name(f"{args.out.stem}.seed{seed}.json")
        plots = args.plots if len(seeds) == 1 else args.plots / f"seed{seed}"
        results[seed] = run_seed(args, seed, out, plots)
    if len(seeds) > 1:
        print("\nchecks by seed:")
        for seed, runs in results.items():
            print(f"  seed {seed}: " + ", ".join(f"{name} {'pass' if ok else 'FAIL'}" for name, _, ok in checks(runs)))


if __name__ == "__main__":
    main()

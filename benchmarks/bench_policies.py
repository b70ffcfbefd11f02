"""Closed-loop policy comparison over a simulated year: the figures of docs/evaluation.md.

    python benchmarks/bench_policies.py [--customers 1000] [--days 365] [--seed 0] [--out bench_policies.json]

Trains the propensity model on a 180-day logging-policy run of the same world configuration
(seed + 1), runs every policy for `--days` days on the world of `--seed`, prints the table and the
checks of issue 8 (pass/FAIL with the numbers), and writes the table as JSON and the plots.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from nbo.simulator import SimConfig
from serving.policy import ContactPolicy
from training.policy_sim import compare_policies, plot_runs, table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-days", type=int, default=180)
    parser.add_argument("--out", type=Path, default=Path("bench_policies.json"))
    parser.add_argument("--plots", type=Path, default=Path("bench_policies_plots"))
    args = parser.parse_args()
    t0 = time.perf_counter()
    runs, trained = compare_policies(SimConfig(customers=args.customers, days=args.days), args.seed, ContactPolicy(),
                                     train_days=args.train_days, progress=False)
    elapsed = time.perf_counter() - t0
    by = {r.name: r for r in runs}
    print(f"{args.customers} customers x {args.days} days, seed {args.seed}; model: {trained.train_rows:,} exposures, "
          f"validation AUC {trained.valid_auc:.3f}; {elapsed:.0f} s")
    print(table(runs).to_string(float_format=lambda v: f"{v:,.1f}"))
    first = {r.name: float(r.daily["net_value_cum"].iloc[min(27, len(r.daily) - 1)]) for r in runs}
    print("net value after 28 days:", {k: round(v) for k, v in first.items()})
    ltv = {k: r.long_term_value for k, r in by.items()}
    checks = [
        ("nbo beats popular on long-term value", ltv["nbo"] > ltv["popular"]),
        ("nbo beats random on long-term value", ltv["nbo"] > ltv["random"]),
        (f"nbo reaches 80% of the oracle's long-term value ({ltv['nbo'] / ltv['oracle']:.0%})",
         ltv["nbo"] >= 0.8 * ltv["oracle"]),
        (f"nbo keeps more customers than nbo_uncapped ({by['nbo'].active_end} vs {by['nbo_uncapped'].active_end})",
         by["nbo"].active_end > by["nbo_uncapped"].active_end),
        (f"nbo earns more long-term value than nbo_uncapped ({ltv['nbo']:,.0f} vs {ltv['nbo_uncapped']:,.0f})",
         ltv["nbo"] > ltv["nbo_uncapped"]),
    ]
    for text, ok in checks:
        print(f"[{'pass' if ok else 'FAIL'}] {text}")
    print(f"[info] value earned within the {args.days} days: nbo {by['nbo'].value:,.0f} vs nbo_uncapped "
          f"{by['nbo_uncapped'].value:,.0f}; after 28 days: {first['nbo']:,.0f} vs {first['nbo_uncapped']:,.0f}")
    args.out.write_text(json.dumps({r.name: r.row() for r in runs}, indent=2) + "\n")
    daily = pd.concat([r.daily.assign(policy=r.name) for r in runs], ignore_index=True)
    daily_path = args.out.with_suffix(".daily.csv")
    daily.to_csv(daily_path, index=False)  # to recompute any summary without re-running the year
    print("wrote", args.out, "and", daily_path)
    for path in plot_runs(runs, args.plots):
        print("wrote", path)


if __name__ == "__main__":
    main()

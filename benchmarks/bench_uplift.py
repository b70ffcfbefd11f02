"""Closed loop by incremental value (issue 21 item 6): uplift vs response vs random vs no contact
vs the oracle, on simulated worlds with cannibalisation and incentive variants.

    python benchmarks/bench_uplift.py [--customers 100] [--days 365] [--seeds 0 1 2] [--train-days 365]
                                      [--train-customers 400] [--rounds 200] [--fatigue-cost 0]
                                      [--exploration 0] [--ope [--ope-customers N] [--ope-window 1]
                                      [--ope-logger uniform|epsilon|softmax] [--ope-epsilon 0.1]
                                      [--ope-caps target|logged] [--ope-keep-control]]
                                      [--out bench_uplift.json]
    python benchmarks/bench_uplift.py --merge seed0.json seed1.json seed2.json   # seeds run apart

For each seed: fits the propensity and uplift models on a `--train-days` logging run of
`--train-customers` customers of the world of seed + 1 (control group 10 %, no-offer exploration
10 %), then runs every policy of `evaluation.uplift_loop` for `--days` days on `--customers`
customers of the world of the seed. The arbiter policies (uplift, response, oracle) run under one
contact policy; its exploration rate is `--exploration` (0 by default: the models are not refitted
during the loop, so exploring would only be a cost the greedy oracle does not pay). Prints each
seed's table with its CPU and wall time, then the medians over seeds and the bars of issue 21
with the figures of every seed:

- uplift >= 90 % of the oracle's incremental value, on every seed;
- uplift beats response on incremental value, with fewer contacts and fewer discounts given.

Shorter runs (fewer customers or days) are for trying the mechanics: the year is the measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, from anywhere
from benchmarks._hardware import hardware  # noqa: E402
from evaluation.uplift_loop import (OPE_LOGGERS, UPLIFT_LOOP_POLICIES, UpliftRun, compare_uplift_policies,  # noqa: E402
                                   uplift_ope)
from serving.policy import ContactPolicy  # noqa: E402
from simulator import SimConfig  # noqa: E402
from simulator.config import DEFAULT_INCENTIVES  # noqa: E402

COLUMNS = ("incremental_value", "contacts", "accepted", "accepted_anyway", "incentive_offers", "discounts_given",
           "incentive_cost", "organic_margin", "active_end")


def bars(by: dict[str, UpliftRun]) -> list[tuple[str, str, bool]]:
    """(name, description with the numbers, passed) of the bars of issue 21 on one seed."""
    u, r, o = by["uplift"], by["response"], by["oracle"]
    share = u.incremental_value / o.incremental_value if o.incremental_value else float("nan")
    return [
        ("90% of oracle", f"uplift {u.incremental_value:,.0f} = {share:.1%} of the oracle's {o.incremental_value:,.0f}",
         share >= 0.9),
        ("beats response", f"uplift {u.incremental_value:,.0f} vs response {r.incremental_value:,.0f}",
         u.incremental_value > r.incremental_value),
        ("fewer contacts", f"uplift {u.contacts:,} vs response {r.contacts:,}", u.contacts < r.contacts),
        ("fewer discounts", f"uplift {u.discounts_given:,} vs response {r.discounts_given:,} given "
                            f"({u.incentive_offers:,} vs {r.incentive_offers:,} offered)",
         u.discounts_given < r.discounts_given),
    ]


ESTIMATORS = ("ips", "snips", "dr", "dr_baseline")


def ope_line(seed: int, row: dict[str, float]) -> str:
    """One seed's OPE: every estimator with its interval and its error against the closed-loop truth."""
    truth = row["truth"]
    parts = "; ".join(f"{name} {row[name]:,.0f} [{row[f'{name}_low']:,.0f}, {row[f'{name}_high']:,.0f}] "
                      f"{(row[name] - truth) / truth:+.1%}" for name in ESTIMATORS)
    return (f"  seed {seed}: {row.get('logger', 'uniform')} logger (epsilon {row.get('epsilon', 1.0):g}), "
            f"{row['decisions']:,} decisions, {row.get('contacts', 0):,} contacts, {row['matches']:,} matching, "
            f"ESS {row['ess']:,.0f}; {row.get('cpu_s', float('nan')):.0f} CPU s: {parts}; closed-loop truth {truth:,.0f} "
            f"({row.get('truth_contacts', 0):,} contacts; the target's expected contacts on the log "
            f"{row.get('target_contacts', float('nan')):,.0f}); caps {row.get('caps', 'logged')}, "
            f"{row.get('control_customers', 0)} control customers left out; mean weights: contacts "
            f"{row.get('contact_weight_mean', float('nan')):.3f} vs the target's P(contact) {row.get('coverage', float('nan')):.3f}, "
            f"no contact {row.get('none_weight_mean', float('nan')):.3f} (expected 1)")


def _runs(rows: dict[str, dict[str, object]]) -> dict[str, UpliftRun]:
    return {name: UpliftRun(**row) for name, row in rows.items()}  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-days", type=int, default=365)
    parser.add_argument("--train-customers", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=200, help="Boosting rounds of each model.")
    parser.add_argument("--fatigue-cost", type=float, default=0.0,
                        help="arbitration.fatigue_cost of every outbound channel (uplift objective).")
    parser.add_argument("--exploration", type=float, default=0.0, help="arbitration.exploration.rate of the arbiter policies.")
    parser.add_argument("--ope", action="store_true",
                        help="Also estimate the uplift policy's incremental value off-policy on a randomised log of "
                             "the same world (evaluation.uplift_loop.uplift_ope) and compare it with its closed-loop truth.")
    parser.add_argument("--ope-customers", type=int, default=None,
                        help="Customers of the randomised log (default --customers); totals scaled to --customers.")
    parser.add_argument("--ope-window", type=int, default=1, help="Purchase window of the OPE outcome, days.")
    parser.add_argument("--ope-logger", choices=OPE_LOGGERS, default="uniform",
                        help="Logging policy of the OPE log (evaluation.uplift_loop.logging_policy): uniform over the "
                             "eligible offers, or the uplift policy exploring (epsilon-greedy or softmax).")
    parser.add_argument("--ope-epsilon", type=float, default=0.1,
                        help="Exploration rate of the epsilon / softmax logger.")
    parser.add_argument("--ope-temperature", type=float, default=1.0, help="Softmax temperature (currency units of ev).")
    parser.add_argument("--ope-caps", choices=("target", "logged"), default="target",
                        help="The target's contact-level cap state in the OPE: its own contacts on the logged decisions "
                             "(default) or the log's (evaluation.evaluate.evaluate(caps=)).")
    parser.add_argument("--ope-keep-control", action="store_true",
                        help="Keep the control group's decisions in the per-decision OPE (before issue 21's fix: "
                             "their propensities are per customer, not per decision).")
    parser.add_argument("--ope-only", action="store_true",
                        help="With --ope: run only the uplift policy in closed loop (its truth), not the other four.")
    parser.add_argument("--merge", type=Path, nargs="+", help="Print the medians of the JSON files of earlier runs.")
    parser.add_argument("--out", type=Path, default=Path("bench_uplift.json"))
    args = parser.parse_args()
    print(hardware())
    results: dict[int, dict[str, UpliftRun]] = {}
    opes: dict[int, dict[str, float]] = {}
    if args.merge:
        for path in args.merge:
            saved = json.loads(path.read_text())
            for seed, rows in saved["seeds"].items():
                results[int(seed)] = _runs(rows)
                print(f"\nseed {seed} ({path}: {saved.get('timing', {}).get(seed, '')})")
                print(pd.DataFrame(list(rows.values())).set_index("name").to_string(float_format=lambda v: f"{v:,.1f}"))
            opes.update({int(seed): row for seed, row in saved.get("ope", {}).items()})
    config = SimConfig(customers=args.customers, days=args.days, cannibalisation=True, incentives=DEFAULT_INCENTIVES)
    fatigue = {c: args.fatigue_cost for c in ("email", "sms", "push", "mail")} if args.fatigue_cost else {}
    policy = ContactPolicy.model_validate({"arbitration": {"fatigue_cost": fatigue,
                                                          "exploration": {"rate": args.exploration}}})
    names = ("uplift",) if args.ope and args.ope_only else UPLIFT_LOOP_POLICIES
    timing: dict[int, str] = {}
    for seed in [] if args.merge else args.seeds:
        t0, c0 = time.perf_counter(), time.process_time()
        runs, world = compare_uplift_policies(config, seed, policy, names, args.train_days, args.rounds,
                                              train_customers=args.train_customers)
        by = results[seed] = {r.name: r for r in runs}
        m = world.uplift_metrics if world is not None else {}
        timing[seed] = (f"{time.process_time() - c0:.0f} CPU s, {time.perf_counter() - t0:.0f} s wall, "
                        f"load {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        print(f"\nseed {seed}: {args.customers} customers x {args.days} days; models on a {args.train_days}-day "
              f"logging run of {args.train_customers} customers ({world.propensity_rows if world else 0:,} exposures, "
              f"{world.uplift_rows if world else 0:,} uplift rows; held-out value Qini uplift "
              f"{m.get('value_qini_uplift', float('nan')):.3f} vs response {m.get('value_qini_response', float('nan')):.3f}); "
              f"{timing[seed]}", flush=True)
        print(pd.DataFrame([r.row() for r in runs]).set_index("name").to_string(float_format=lambda v: f"{v:,.1f}"))
        if set(UPLIFT_LOOP_POLICIES) <= set(by):
            for _, text, ok in bars(by):
                print(f"[{'pass' if ok else 'FAIL'}] {text}", flush=True)
        if args.ope and world is not None:
            c1, w1 = time.process_time(), time.perf_counter()
            ope = uplift_ope(config, seed, policy, world, window_days=args.ope_window, customers=args.ope_customers,
                             logger=args.ope_logger, epsilon=args.ope_epsilon, temperature=args.ope_temperature,
                             caps=args.ope_caps, exclude_control=not args.ope_keep_control)
            truth = by["uplift"].incremental_value
            opes[seed] = ope.row() | {"truth": truth, "truth_contacts": by["uplift"].contacts,
                                      "cpu_s": time.process_time() - c1, "wall_s": time.perf_counter() - w1,
                                      "load": os.getloadavg()[0]}
            print(ope_line(seed, opes[seed]), flush=True)
    if opes:
        print("\nOPE of the uplift policy against its closed-loop truth (bar: within 10 %):")
        for seed in sorted(opes):
            print(ope_line(seed, opes[seed]))
        for name in ESTIMATORS:
            errors = [(opes[s][name] - opes[s]["truth"]) / opes[s]["truth"] for s in sorted(opes)]
            print(f"  {name}: relative error by seed {', '.join(f'{e:+.1%}' for e in errors)}; median "
                  f"{statistics.median(errors):+.1%}, median |error| {statistics.median(map(abs, errors)):.1%}")
    median = {}
    if all(set(UPLIFT_LOOP_POLICIES) <= set(by) for by in results.values()):
        median = {name: {c: statistics.median(getattr(results[s][name], c) for s in results) for c in COLUMNS}
                  for name in UPLIFT_LOOP_POLICIES}
        print(f"\nmedians over seeds {', '.join(map(str, results))}:")
        print(pd.DataFrame(median).T.to_string(float_format=lambda v: f"{v:,.1f}"))
        oracle = median["oracle"]["incremental_value"]
        for name in UPLIFT_LOOP_POLICIES:
            share = median[name]["incremental_value"] / oracle if oracle else float("nan")
            print(f"  {name}: {share:.1%} of the oracle's incremental value (medians)")
        for name in ("uplift", "response"):
            shares = [results[s][name].incremental_value / results[s]["oracle"].incremental_value for s in results]
            print(f"  {name} % of the oracle by seed: {', '.join(f'{v:.1%}' for v in shares)}; "
                  f"median {statistics.median(shares):.1%}")
        print("\nbars by seed:")
        for seed, by in results.items():
            print(f"  seed {seed}: " + "; ".join(f"{name} {'pass' if ok else 'FAIL'} ({text})" for name, text, ok in bars(by)))
    args.out.write_text(json.dumps({"config": {k: v for k, v in vars(args).items() if k != "out"} | {"out": str(args.out)},
                                    "seeds": {s: {n: r.row() for n, r in by.items()} for s, by in results.items()},
                                    "timing": timing, "medians": median, "ope": opes}, indent=2, default=str) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()

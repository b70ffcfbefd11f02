"""Off-policy estimates against the simulator's truth, over seeds, worlds and target policies.

    python benchmarks/bench_ope.py [--customers 20000] [--days 90] [--seeds 11 1 2 3]
        [--offer-wearout 0.1 0] [--k 1 3] [--out bench_ope.csv]

Issue 8's check, measured where the test suite asserts one seed (`tests/training/test_ope.py`):
each estimator (IPS, SNIPS, DR) of a fixed target policy on the randomised logging policy's log,
against the value the target earns run closed loop on the same world (`evaluation.ope_truth`). The
target makes one of its k most valuable eligible offers 70 % of the time: k = 1 repeats itself,
and where customers tire of an offer shown again (offer wear-out, on by default) it wears its
offer out in a way no per-decision estimate can see. Prints one row per run, the median error per
(world, k) and the hardware; about 3 s per run (20,000 x 90) on one core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, from anywhere
from benchmarks._hardware import hardware  # noqa: E402
from simulator import SimConfig
from evaluation.ope_truth import check_against_truth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 1, 2, 3])
    parser.add_argument("--offer-wearout", type=float, nargs="+", default=[SimConfig().offer_wearout, 0.0],
                        help="worlds to run (default: the default world and one without wear-out)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3], help="target: one of the k most valuable offers")
    parser.add_argument("--out", type=Path, default=Path("bench_ope.csv"))
    args = parser.parse_args()
    if min(args.k) < 1 or args.customers < 1 or args.days < 1 or min(args.offer_wearout) < 0:
        parser.error("--k, --customers and --days must be >= 1, --offer-wearout >= 0")
    print(hardware(), flush=True)
    rows = []
    for wearout in args.offer_wearout:
        config = SimConfig(customers=args.customers, days=args.days, offer_wearout=wearout)
        for k in args.k:
            for seed in args.seeds:
                began = time.perf_counter()
                check = check_against_truth(config, seed, k)
                rows.append({"offer_wearout": wearout, "k": k, "seed": seed, "truth": check.truth,
                             "logged": check.logged, **{f"{n}_error": e for n, e in check.errors().items()},
                             "seconds": time.perf_counter() - began})
                r = rows[-1]
                print(f"offer_wearout {wearout:g}, k {k}, seed {seed}: truth {r['truth']:.3f} (logged "
                      f"{r['logged']:.3f}); IPS {r['ips_error']:+.1%}, SNIPS {r['snips_error']:+.1%}, "
                      f"DR {r['dr_error']:+.1%}; {r['seconds']:.1f} s", flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out, index=False)
    errors = ["ips_error", "snips_error", "dr_error"]
    summary = frame.groupby(["offer_wearout", "k"])[errors].agg(["median", "min", "max"])
    print(f"\n{args.customers:,} customers x {args.days} days; relative error of each estimate against the "
          f"closed-loop truth (median, min, max over seeds {' '.join(map(str, args.seeds))}); bar: within 10 %")
    print(summary.to_string(float_format=lambda v: f"{v:+.1%}"))
    within = (frame[errors].abs() < 0.10).all(axis=1)
    for (wearout, k), ok in within.groupby([frame["offer_wearout"], frame["k"]]):
        print(f"offer_wearout {wearout:g}, k {k}: every estimate within 10 % on {int(ok.sum())} of {len(ok)} seeds")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

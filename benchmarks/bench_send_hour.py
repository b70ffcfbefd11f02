"""The best hour (issue 22 item 5): the same outbound programme sent at nbo's chosen hour vs a
fixed hour vs a random hour, in simulated worlds with hour-of-day engagement.

    python benchmarks/bench_send_hour.py [--customers 20000] [--days 120] [--seeds 0 1 2 3 4]
                                         [--fixed-hour 10] [--out bench_send_hour.json]

For each seed the arms of `evaluation.send_hour_loop` run in turn (interleaved, seed by seed) on
the world of that seed with the default contact policy's quiet hours (sms and push, 21:00-08:00
UTC). Prints each run (outbound contacts, acceptances, outbound value = accepted offers' value -
contact cost, the world's value, CPU seconds), then per arm the median over seeds and the ratios
chosen / fixed and chosen / random of every seed, and the bar: chosen beats fixed on every seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, from anywhere
from benchmarks._hardware import hardware  # noqa: E402
from evaluation.send_hour_loop import ARMS, run_arm  # noqa: E402
from serving.policy import ContactPolicy  # noqa: E402
from simulator import SimConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--fixed-hour", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="write the runs as JSON here")
    args = parser.parse_args()
    print(hardware(), flush=True)
    quiet = ContactPolicy().quiet_hours
    config = SimConfig(customers=args.customers, days=args.days, send_hours=True)
    print(f"{args.customers:,} customers x {args.days} days, send hours on (hour_effect {config.hour_effect}), "
          f"quiet hours {', '.join(quiet.channels)} {quiet.start}-{quiet.end} {quiet.timezone}, "
          f"fixed hour {args.fixed_hour:02d}:00 UTC", flush=True)
    runs = []
    print(f"{'seed':>4} {'arm':>7} {'outbound':>9} {'accepted':>9} {'accept %':>9} {'outbound value':>15} "
          f"{'world value':>12} {'CPU s':>6}")
    for seed in args.seeds:
        for arm in ARMS:
            r = run_arm(config, seed, arm, quiet, args.fixed_hour)
            runs.append(r)
            print(f"{seed:>4} {arm:>7} {r.outbound_contacts:>9,} {r.outbound_accepted:>9,} "
                  f"{100 * r.outbound_accepted / max(r.outbound_contacts, 1):>8.2f}% {r.outbound_value:>15,.0f} "
                  f"{r.total_value:>12,.0f} {r.seconds:>6.1f}", flush=True)
    by = {(r.seed, r.arm): r for r in runs}
    print("\nmedian over seeds:")
    for arm in ARMS:
        rs = [by[(s, arm)] for s in args.seeds]
        print(f"  {arm:>7}: outbound value {statistics.median(r.outbound_value for r in rs):>10,.0f}, accepted "
              f"{statistics.median(r.outbound_accepted for r in rs):>7,.0f}, world value "
              f"{statistics.median(r.total_value for r in rs):>10,.0f}")
    ratios = {}
    for other in ("fixed", "random", "oracle"):
        ratios[other] = [by[(s, "chosen")].outbound_value / by[(s, other)].outbound_value for s in args.seeds]
        print(f"  chosen / {other:<6} outbound value: median {statistics.median(ratios[other]):.3f}, per seed "
              + " ".join(f"{x:.3f}" for x in ratios[other]))
    beats = all(x > 1 for x in ratios["fixed"])
    print(f"\nbar: chosen beats fixed on every seed ({len(args.seeds)} seeds): {'PASS' if beats else 'FAIL'}")
    print(hardware())
    if args.out is not None:
        args.out.write_text(json.dumps([r.row() for r in runs], indent=2) + "\n")


if __name__ == "__main__":
    main()

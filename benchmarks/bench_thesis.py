"""Where does capping contacts pay? The oracle with and without caps across simulated worlds.

    python benchmarks/bench_thesis.py [--customers 1000] [--days 365] [--seed 0]
        [--accept-fatigue 0.45 0.7 1.0] [--churn-fatigue 1.5 3 6] [--out bench_thesis.csv]
        [--capped oracle_fatigue_caps]

Issue 8's thesis is that the capped, relationship-aware policy earns more over a year than the
uncapped one. Whether any policy can show it depends on how hard the world punishes
over-contact, so this maps it with the true probabilities (no model: the ceiling of what a
capped policy can show): for each (accept_fatigue, churn_fatigue) world, value within the
period (offers alone, and with the margin on customers' own purchases), after the first 28
days, long-term value, customers kept, and the organic margin above which caps pay off in the
long run. Writes the table as CSV and the heatmap as PNG next to it. About 2 minutes per world
(1,000 x 365) on one core. `--capped` maps the oracle under part of the policy's rules instead
(`oracle_fatigue_caps`: the fatigue caps without the per-offer cap and decline cooldowns;
`oracle_repeat_rules`: the reverse).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, from anywhere
from benchmarks._hardware import hardware  # noqa: E402
from simulator import SimConfig
from serving.policy import ContactPolicy
from evaluation.policy_sim import ALL_POLICY_NAMES, TRUTH_UNCAPPED, plot_thesis_map, thesis_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accept-fatigue", type=float, nargs="+", default=[0.45, 0.7, 1.0])
    parser.add_argument("--churn-fatigue", type=float, nargs="+", default=[1.5, 3.0, 6.0])
    parser.add_argument("--organic-margin", type=float, default=SimConfig().organic_margin)
    parser.add_argument("--out", type=Path, default=Path("bench_thesis.csv"))
    parser.add_argument("--capped", default="oracle", help="The capped oracle compared with oracle_uncapped.",
                        choices=[n for n in ALL_POLICY_NAMES if n.startswith("oracle") and n != TRUTH_UNCAPPED])
    args = parser.parse_args()
    print(hardware())
    config = SimConfig(customers=args.customers, days=args.days, organic_margin=args.organic_margin)
    t0 = time.perf_counter()
    frame = thesis_map(config, args.seed, ContactPolicy(), tuple(args.accept_fatigue), tuple(args.churn_fatigue),
                       progress=True, capped=args.capped)
    print(f"{args.capped} vs {TRUTH_UNCAPPED}, {args.customers} customers x {args.days} days, seed {args.seed}, "
          f"organic margin {args.organic_margin}; "
          f"{len(frame)} worlds in {time.perf_counter() - t0:.0f} s")
    shown = frame[["accept_fatigue", "churn_fatigue", "capped_value", "uncapped_value", "capped_value_with_organic",
                   "uncapped_value_with_organic", "capped_first_days", "uncapped_first_days",
                   "capped_long_term_value", "uncapped_long_term_value", "capped_active_end",
                   "uncapped_active_end", "break_even_margin", "break_even_margin_period"]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:,.2f}" if abs(v) < 10 else f"{v:,.0f}"))
    holds = frame[frame["uncapped_wins_first_days"] & frame["capped_wins_year"]]
    print(f"thesis as stated (uncapped ahead after 28 days, capped ahead over the period incl. own purchases): "
          f"{len(holds)} of {len(frame)} worlds"
          + (": " + ", ".join(f"({a:g}, {c:g})" for a, c in zip(holds.accept_fatigue, holds.churn_fatigue)) if len(holds) else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print("wrote", args.out, "and", plot_thesis_map(frame, args.out.with_suffix(".png")))


if __name__ == "__main__":
    main()

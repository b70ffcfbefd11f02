"""Which of the contact policy's rules pay? The oracle under each family of rules, per world seed.

    python benchmarks/bench_rules.py [--customers 1000] [--days 365] [--seeds 0 1 2]
        [--accept-fatigue 0.45] [--churn-fatigue 1.5] [--offer-wearout 0 0.1 0.3] [--out bench_rules.csv]

The contact policy holds two families of rules that cost offers in the short run for the
relationship's sake: fatigue caps (contacts per channel and across outbound channels per window)
and repeat rules (the per-offer cap and the cooldowns after a decline). Issue 8's thesis is
about the first: over-contact loses customers. This runs the oracle (true probabilities, no
model: the ceiling of what a policy can show) under the whole policy, the fatigue caps alone,
the repeat rules alone and neither, on the same customers, and prints per seed the value within
the period (offers, and with the margin on customers' own purchases), after the first 28 days,
long-term value and customers kept. Writes the table as CSV and a bar chart as PNG next to it.
About 40 s per policy and seed (1,000 x 365) on one core.

The default world has offer wear-out (`SimConfig.offer_wearout` 0.1 since 2026-11-24): customers
tire of an offer shown again. `--offer-wearout 0` runs the world without it (the default before),
where the repeat rules can only cost; several values show from which wear-out on they pay.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, from anywhere
from benchmarks._hardware import hardware  # noqa: E402
from simulator import SimConfig
from serving.policy import ContactPolicy
from evaluation.policy_sim import RULE_SETS, compare_policies

ORACLES = [f"oracle{rules}" for rules in RULE_SETS]
FIRST_DAYS = 28


def seed_rows(config: SimConfig, seed: int) -> list[dict[str, object]]:
    runs, _ = compare_policies(config, seed, ContactPolicy(), ORACLES)
    return [{"offer_wearout": config.offer_wearout, "seed": seed, "policy": r.name, **r.headline(FIRST_DAYS)}
            for r in runs]


def plot(frame: pd.DataFrame, path: Path) -> Path:
    """Value within the period (with own purchases) per rule set: one bar group per seed, or per
    offer wear-out (median over seeds) when several worlds ran."""
    by = "seed" if frame["offer_wearout"].nunique() == 1 else "offer_wearout"
    values = frame.groupby([by, "policy"])["value_with_organic"].median().unstack("policy")
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(ORACLES)
    for i, name in enumerate(ORACLES):
        ax.bar(np.arange(len(values)) + i * width, values[name], width, label=name)
    ax.set_xticks(np.arange(len(values)) + 0.4 - width / 2, [f"{by} {v:g}" for v in values.index])
    ax.set(ylabel="value in the period" + ("" if by == "seed" else " (median of seeds)"),
           title="The oracle under each family of the policy's rules\n(offers + margin on own purchases)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def summary(frame: pd.DataFrame) -> list[str]:
    """Per world and rule set: on how many seeds the capped oracle is ahead of the uncapped one
    within the period, and on how many the thesis holds as stated."""
    lines = []
    for wearout, world in frame.groupby("offer_wearout"):
        wide = world.pivot(index="seed", columns="policy")
        free = wide["value_with_organic"]["oracle_uncapped"]
        for capped in ORACLES[:-1]:
            year = wide["value_with_organic"][capped] > free
            early = wide["first_days"]["oracle_uncapped"] > wide["first_days"][capped]
            lines.append(f"offer_wearout {wearout:g}, {capped}: ahead of oracle_uncapped within the period on "
                         f"{int(year.sum())} of {len(year)} seeds (median ratio "
                         f"{(wide['value_with_organic'][capped] / free).median():.2f}); thesis as stated "
                         f"(uncapped ahead after {FIRST_DAYS} days, capped within the period) on {int((year & early).sum())}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--accept-fatigue", type=float, default=SimConfig().accept_fatigue)
    parser.add_argument("--churn-fatigue", type=float, default=SimConfig().churn_fatigue)
    parser.add_argument("--offer-wearout", type=float, nargs="+", default=[SimConfig().offer_wearout],
                        help="Acceptance logit lost per recent showing of the same offer (one world each).")
    parser.add_argument("--organic-margin", type=float, default=SimConfig().organic_margin)
    parser.add_argument("--out", type=Path, default=Path("bench_rules.csv"))
    args = parser.parse_args()
    print(hardware())
    rows = []
    for wearout in args.offer_wearout:
        config = SimConfig(customers=args.customers, days=args.days, organic_margin=args.organic_margin,
                           accept_fatigue=args.accept_fatigue, churn_fatigue=args.churn_fatigue,
                           offer_wearout=wearout)
        for seed in args.seeds:
            t0 = time.perf_counter()
            rows += seed_rows(config, seed)
            print(f"offer_wearout {wearout:g}, seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    frame = pd.DataFrame(rows)
    print(f"{args.customers} customers x {args.days} days, accept_fatigue {args.accept_fatigue}, "
          f"churn_fatigue {args.churn_fatigue}, organic margin {args.organic_margin}")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:,.2f}" if abs(v) < 10 else f"{v:,.0f}"))
    print("\n".join(summary(frame)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print("wrote", args.out, "and", plot(frame, args.out.with_suffix(".png")))


if __name__ == "__main__":
    main()

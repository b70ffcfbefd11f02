"""Closed-loop simulation of contact policies: each policy plugged into the simulator, day by day.

Every policy runs on a fresh `Simulator(config, seed)` (same customers, same catalogue, same start
state). What differs is who is contacted, on which channel and with which offer; the simulator's
truth then decides acceptance, fatigue, opt-outs and churn. This module runs and compares them
(`run_policy`, `compare_policies`, `thesis_map`) and draws the results; the parts live in modules
of their own (docs/evaluation.md):

- `evaluation.sim_policies`: the policies compared (random, popular, nbo and the oracle);
- `evaluation.rule_sets`: the contact policy with all, part or none of its rules;
- `evaluation.memory_store`: the in-memory contact store the arbiter reserves in;
- `evaluation.refit`: the model fitted on a logging run and refitted on the policy's own log;
- `evaluation.long_term_value`: a run's result and what it is worth in the long run.

Their public names stay importable from here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from evaluation.long_term_value import (
    FUTURE_DAYS,
    RATE_WINDOW_DAYS,
    PolicyRun,
    break_even_margin,
    expected_active_days,
    long_term_value,
    summarise,
    table,
)
from evaluation.memory_store import MemoryContactStore
from evaluation.refit import DEFAULT_REFIT_DAYS, Refitter, TrainedWorld, train_on_logging_run
from evaluation.rule_sets import RULE_SETS, greedy, uncapped, without_fatigue_caps, without_repeat_rules
from evaluation.sim_policies import (
    ALL_POLICY_NAMES,
    POLICY_NAMES,
    TRUTH_UNCAPPED,
    ArbiterPolicy,
    PopularPolicy,
    learns_from_log,
    make_policy,
    opportunity_scores,
    rule_inputs,
    split_name,
)
from serving.policy import ContactPolicy
from simulator import SimConfig, Simulator

#: Names importable from here since before the split (the closed loop's public surface).
__all__ = [
    "ALL_POLICY_NAMES",
    "DEFAULT_REFIT_DAYS",
    "FUTURE_DAYS",
    "POLICY_NAMES",
    "RATE_WINDOW_DAYS",
    "RULE_SETS",
    "TRUTH_UNCAPPED",
    "ArbiterPolicy",
    "MemoryContactStore",
    "PolicyRun",
    "PopularPolicy",
    "Refitter",
    "TrainedWorld",
    "break_even_margin",
    "compare_policies",
    "expected_active_days",
    "greedy",
    "long_term_value",
    "make_policy",
    "opportunity_scores",
    "plot_runs",
    "plot_thesis_map",
    "rule_inputs",
    "run_policy",
    "summarise",
    "table",
    "thesis_map",
    "train_on_logging_run",
    "uncapped",
    "without_fatigue_caps",
    "without_repeat_rules",
]


def run_policy(name: str, config: SimConfig, seed: int, policy: ContactPolicy, trained: TrainedWorld | None,
               progress: bool = False, refit_days: int = DEFAULT_REFIT_DAYS) -> PolicyRun:
    """Run one policy over the whole period of `config` on the world of `seed`; the nbo policies
    refit their model every `refit_days` days on their own log (0: never, see `Refitter`). Only
    the truth-based policies and `random` run without a `trained` world."""
    from tqdm.auto import tqdm

    learns = name.startswith("nbo")
    if trained is None and learns_from_log(name):
        raise ValueError(f"policy {name!r} learns from a logging run: pass a TrainedWorld")
    sim = Simulator(config, seed=seed)
    refitter = Refitter(trained, refit_days) if learns else None
    chosen = make_policy(name, sim, policy, trained, seed, model=refitter)
    first = 0
    for day in tqdm(range(config.days), desc=name, unit="day", disable=not progress, leave=False):
        sim.step(chosen)
        if isinstance(chosen, ArbiterPolicy):
            chosen.observe(sim, first)
        first += sim.results[-1].contacts
        if refitter is not None and day + 1 < config.days:  # a model fitted after the last day would score nothing
            refitter.after_day(sim, day + 1)
    return summarise(name, sim.daily(), config.organic_margin, refitter.refits if refitter is not None else 0)


def compare_policies(config: SimConfig, seed: int, policy: ContactPolicy, names: tuple[str, ...] | list[str] = POLICY_NAMES,
                     train_days: int = 180, num_boost_round: int = 200, progress: bool = False,
                     trained: TrainedWorld | None = None, refit_days: int = DEFAULT_REFIT_DAYS,
                     ) -> tuple[list[PolicyRun], TrainedWorld | None]:
    """Train once on a logging-policy run (seed + 1, `train_days` days), then run every policy on
    the world of `seed` for `config.days` days (the nbo policies refitting every `refit_days`).
    Policies that need no model (random and the oracles) run without training: `None` then."""
    if trained is None and any(learns_from_log(name) for name in names):
        trained = train_on_logging_run(config, seed + 1, train_days, num_boost_round)
    runs = [run_policy(name, config, seed, policy, trained, progress, refit_days) for name in names]
    return runs, trained


def thesis_map(config: SimConfig, seed: int, policy: ContactPolicy, accept_fatigue: tuple[float, ...],
               churn_fatigue: tuple[float, ...], first_days: int = 28, progress: bool = False,
               capped: str = "oracle") -> pd.DataFrame:
    """What caps are worth with perfect knowledge, across worlds that punish over-contact more or
    less: for each (`accept_fatigue`, `churn_fatigue`) the oracle with and without the policy's
    caps on the same customers. One row per world: value within the period and after
    `first_days` (offers alone, and with the margin on customers' own purchases), long-term
    value, customers kept, and the organic margins above which the capped oracle is worth more in
    the long run and within the period (`break_even_margin`). No model is involved: this is the world's economics, the
    bound on what any capped policy can show in it. `capped` is the oracle under another rule set,
    e.g. `oracle_fatigue_caps` for the fatigue caps without the repeat rules."""
    if split_name(capped)[0] != "oracle" or capped == TRUTH_UNCAPPED:
        raise ValueError(f"capped must be an oracle under some of the policy's rules, not {capped!r}")
    rows = []
    cells = [(a, c) for a in accept_fatigue for c in churn_fatigue]
    from tqdm.auto import tqdm

    for a, c in tqdm(cells, desc="worlds", disable=not progress, leave=False):
        world = config.model_copy(update={"accept_fatigue": a, "churn_fatigue": c})
        kept, free = (run_policy(n, world, seed, policy, None) for n in (capped, TRUTH_UNCAPPED))
        row = {"accept_fatigue": a, "churn_fatigue": c, "capped_policy": capped}
        for tag, r in (("capped", kept), ("uncapped", free)):
            row |= {f"{tag}_{key}": value for key, value in r.headline(first_days).items()}
        row["break_even_margin"] = break_even_margin(kept, free)
        row["break_even_margin_period"] = break_even_margin(kept, free, within_period=True)
        row["capped_wins_year"] = row["capped_value_with_organic"] > row["uncapped_value_with_organic"]
        row["capped_wins_long_term"] = kept.long_term_value > free.long_term_value
        row["uncapped_wins_first_days"] = row["uncapped_first_days"] > row["capped_first_days"]
        rows.append(row)
    return pd.DataFrame(rows)


def plot_thesis_map(frame: pd.DataFrame, path) -> object:
    """Heatmaps of the break-even organic margin over the (accept_fatigue, churn_fatigue) grid, in
    long-term value and within the period: below a cell's number the uncapped oracle is worth
    more, above it the capped one ("never": not even at a margin of 1)."""
    from pathlib import Path

    panels = [("break_even_margin", "long-term value")]
    if "break_even_margin_period" in frame:
        panels.append(("break_even_margin_period", "value within the period"))
    fig = Figure(figsize=(5.2 * len(panels), 4.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, (column, title) in zip(axes, panels, strict=True):
        grid = frame.pivot(index="accept_fatigue", columns="churn_fatigue", values=column)
        im = ax.imshow(grid.clip(upper=1.0).to_numpy(), origin="lower", cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(grid.columns)), [f"{c:g}" for c in grid.columns])
        ax.set_yticks(range(len(grid.index)), [f"{a:g}" for a in grid.index])
        for i in range(len(grid.index)):
            for j in range(len(grid.columns)):
                v = grid.iat[i, j]
                ax.text(j, i, "never" if not np.isfinite(v) or v > 1 else f"{v:.2f}", ha="center", va="center",
                        fontsize=9)
        ax.set(xlabel="churn_fatigue (churn hazard x per unit of fatigue)", title=f"caps pay off above this margin:\n{title}")
    axes[0].set_ylabel("accept_fatigue (logit per unit of fatigue)")
    capped = frame["capped_policy"].iloc[0] if "capped_policy" in frame else "oracle"
    fig.colorbar(im, ax=list(axes), label=f"break-even organic margin ({capped} vs {TRUTH_UNCAPPED})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_runs(runs: list[PolicyRun], directory) -> list:
    """Cumulative net value and active customers over time, one line per policy (PNG files)."""
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for column, title, fname in (("net_value_cum", "cumulative net value of offers (currency units)", "cumulative_value.png"),
                                 ("customer_value_cum", "cumulative net value incl. margin on customers' own purchases",
                                  "cumulative_customer_value.png"),
                                 ("active_end_of_day", "active customers", "active_customers.png")):
        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
        for r in runs:
            ax.plot(r.daily["day"], r.daily[column], label=r.name)
        ax.set(title=title, xlabel="day")
        ax.legend()
        fig.tight_layout()
        path = directory / fname
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths

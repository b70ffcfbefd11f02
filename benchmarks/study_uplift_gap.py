"""Take the uplift policy's gap to the oracle apart on one seed (issue 21; evaluation/uplift_gap.py).

    python benchmarks/study_uplift_gap.py [--seed 0] [--customers 100] [--days 365] [--train-days 365]
                                          [--train-customers 400] [--curve 200 800 1600] [--every 7]
                                          [--hybrids] [--cache DIR] [--out study.json]

1. Fits the models as bench_uplift does (a logging run of the world of seed + 1).
2. Runs the uplift policy for the year on the world of the seed, recording every `--every`-th
   day's opportunities (model inputs and TRUE effects), and the oracle; with `--hybrids` also the
   closed loop with the TRUE P(accept) x the model's share and with the model's P(accept) x the
   TRUE share.
3. One-step decisions on the recorded opportunities (no caps): the uplift model, both hybrids,
   and with `--curve` the uplift models of logging runs of other sizes: share of the oracle's
   one-step value, contacts, incentive picks, loss by kind, by price sensitivity, by organic intent.

`--cache DIR` keeps the fitted worlds, their uplift training sets and the recording (pickles) so
other estimators can be tried on the same opportunities (`--load`).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._hardware import hardware  # noqa: E402
from evaluation.uplift_gap import HYBRIDS, GapRecorder, hybrid_scorer, mix, one_step, summary  # noqa: E402
from evaluation.uplift_loop import model_inputs, run_uplift_policy, train_uplift_world  # noqa: E402
from serving.policy import ContactPolicy  # noqa: E402
from simulator import SimConfig, Simulator  # noqa: E402
from simulator.config import DEFAULT_INCENTIVES  # noqa: E402
from simulator.io import dataset  # noqa: E402


def world_of(config: SimConfig, seed: int, args: argparse.Namespace, customers: int, cache: Path | None):  # type: ignore[no-untyped-def]
    path = cache / f"world_s{seed + 1}_c{customers}_d{args.train_days}.pkl" if cache else None
    if path is not None and path.exists():
        return pickle.loads(path.read_bytes())
    sets: list = []  # type: ignore[type-arg]
    world = train_uplift_world(config, seed + 1, args.train_days, args.rounds, customers=customers, keep_sets=sets)
    if path is not None:
        path.write_bytes(pickle.dumps((world, sets)))
    return world, sets


def report(name: str, s: dict[str, object]) -> dict[str, object]:
    print(f"\n== {name}: {s['share_of_oracle']:.1%} of the oracle's one-step value on {s['opportunities']:,} "
          f"opportunities; contacts {s['contacts']:,} (oracle {s['oracle_contacts']:,}), incentive picks "
          f"{s['incentive_picks']:,} (oracle {s['oracle_incentive_picks']:,})")
    for key in ("by_kind", "by_price", "by_intent"):
        print(s[key].to_string(float_format=lambda v: f"{v:,.2f}"))
    return {k: (v.reset_index().to_dict("records") if isinstance(v, pd.DataFrame) else v) for k, v in s.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--customers", type=int, default=100)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--train-days", type=int, default=365)
    ap.add_argument("--train-customers", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--curve", type=int, nargs="*", default=[])
    ap.add_argument("--every", type=int, default=7)
    ap.add_argument("--hybrids", action="store_true")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("study_uplift_gap.json"))
    args = ap.parse_args()
    print(hardware(), flush=True)
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)
    config = SimConfig(customers=args.customers, days=args.days, cannibalisation=True, incentives=DEFAULT_INCENTIVES)
    policy = ContactPolicy.model_validate({"arbitration": {"exploration": {"rate": 0.0}}})
    c0, t0 = time.process_time(), time.perf_counter()
    world, _ = world_of(config, args.seed, args, args.train_customers, args.cache)
    print(f"models: {time.process_time() - c0:.0f} CPU s", flush=True)
    out: dict[str, object] = {"config": {k: str(v) for k, v in vars(args).items()}, "closed_loop": {}, "one_step": {}}
    rec_path = args.cache / f"rec_s{args.seed}_c{args.customers}_d{args.days}_e{args.every}.pkl" if args.cache else None
    recorders: list[GapRecorder] = []
    sims: list[Simulator] = []

    def recording(sim: Simulator, scorer):  # type: ignore[no-untyped-def]
        r = GapRecorder(scorer, model_inputs(world, sim), sim.population.price_sensitivity, args.every)
        recorders.append(r)
        sims.append(sim)
        return r

    runs = []
    if rec_path is not None and rec_path.exists():
        rec, catalogue = pickle.loads(rec_path.read_bytes())
    else:
        runs.append(run_uplift_policy("uplift", config, args.seed, policy, world, wrap=recording))
        rec = recorders[0].frame()
        catalogue = Simulator(config, seed=args.seed).catalogue
        if rec_path is not None:
            rec_path.write_bytes(pickle.dumps((rec, catalogue)))
            # The run's log and its population: any feature can be recomputed at the recorded
            # opportunities (features are point-in-time) and set against the latent traits.
            data_path = rec_path.with_name(rec_path.name.replace("rec_", "data_"))
            data_path.write_bytes(pickle.dumps((dataset(sims[0]), sims[0].population)))
        runs.append(run_uplift_policy("oracle", config, args.seed, policy, world))
    if args.hybrids:
        for h in HYBRIDS:
            runs.append(run_uplift_policy("uplift", config, args.seed, policy, world, label=h,
                                          wrap=lambda sim, s, h=h: hybrid_scorer(h, s)))
    if runs:
        table = pd.DataFrame([r.row() for r in runs]).set_index("name")
        oracle = table.loc["oracle", "incremental_value"] if "oracle" in table.index else np.nan
        table["pct_oracle"] = table["incremental_value"] / oracle
        print(f"\nclosed loop, seed {args.seed} ({time.process_time() - c0:.0f} CPU s, {time.perf_counter() - t0:.0f} s wall):")
        print(table.to_string(float_format=lambda v: f"{v:,.3f}"), flush=True)
        out["closed_loop"] = table.reset_index().to_dict("records")
    X = rec["X"].reshape(-1, rec["X"].shape[-1])
    n, m = rec["p"].shape
    p_m, tau_m = world.uplift.predict_accept(X).reshape(n, m), world.uplift.predict_uplift(X).reshape(n, m)
    truth = (rec["p"], rec["tau"])
    one = out["one_step"]
    one["oracle_truth"] = report("truth (check: 100 %)", summary(one_step(rec, *truth, catalogue)))  # type: ignore[index]
    one["uplift"] = report(f"uplift, {args.train_customers} customers", summary(one_step(rec, p_m, tau_m, catalogue)))  # type: ignore[index]
    for h in HYBRIDS:
        one[h] = report(h, summary(one_step(rec, *mix(h, (p_m, tau_m), truth), catalogue)))  # type: ignore[index]
    for size in args.curve:
        w, _ = world_of(config, args.seed, args, size, args.cache)
        p_s, tau_s = w.uplift.predict_accept(X).reshape(n, m), w.uplift.predict_uplift(X).reshape(n, m)
        one[f"uplift_{size}"] = report(f"uplift, {size} customers ({w.uplift_rows:,} uplift rows)",  # type: ignore[index]
                                       summary(one_step(rec, p_s, tau_s, catalogue)))
    # Estimation error by variant and price sensitivity (eligible cells).
    ok = rec["eligible"]
    variant = np.broadcast_to(catalogue.variant[None, :], ok.shape)
    ps = np.broadcast_to(pd.qcut(rec["price_sensitivity"], 3, labels=False)[:, None], ok.shape)
    err = pd.DataFrame({"variant": variant[ok], "price_tercile": ps[ok], "tau_model": tau_m[ok], "tau_true": rec["tau"][ok],
                        "p_model": p_m[ok], "p_true": rec["p"][ok]})
    bias = err.groupby(["variant", "price_tercile"]).mean()
    print("\nmean tau and P(accept), model vs truth, by variant (-1 plain) and price-sensitivity tercile:")
    print(bias.to_string(float_format=lambda v: f"{v:.4f}"))
    out["bias"] = bias.reset_index().to_dict("records")
    out["timing"] = f"{time.process_time() - c0:.0f} CPU s, {time.perf_counter() - t0:.0f} s wall"
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print("wrote", args.out, out["timing"])


if __name__ == "__main__":
    main()

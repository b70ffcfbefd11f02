"""In-process `DecisionEngine.decide` (reserve on) on a built world, for A/B runs across commits.

    python benchmarks/bench_decide.py --world /tmp/nbo-bench-world --store /tmp/x.db --n 3000
    # instruction counts, repeatable under load (only the measured loop is instrumented):
    valgrind --tool=callgrind --instr-atstart=no python benchmarks/bench_decide.py \
        --world /tmp/nbo-bench-world --store /tmp/x.db --n 300 --warm 100 --callgrind
    # another commit: a detached worktree on PYTHONPATH, this venv (the script prints what it imported)
    PYTHONPATH=/tmp/old python benchmarks/bench_decide.py ...

The world is `bench_service.py`'s (`--world`; build it once with that script; 300 days: the clock
is its as_of + 10 h, as there). The same customers, channels, contexts, clocks and decision ids
for every checkout, a fresh contact store per run; prints user+system CPU ms per decide (`os.times`), and with `--callgrind` switches callgrind's
instrumentation on after the warm-up and off after the loop (`callgrind_control -i`), so the
"Collected" total divided by `--n` is instructions per decision. `--service MIB` opens the store
as `nbo serve` does (0.5 s busy timeout, WAL checkpoints from a thread, MIB of page cache).
`--digest`: a SHA-256 of the decisions, to check two commits answer the same.
"""
import argparse
import gc
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ap = argparse.ArgumentParser()
ap.add_argument("--world", type=Path, required=True)
ap.add_argument("--store", type=Path, required=True)
ap.add_argument("--n", type=int, default=400)
ap.add_argument("--warm", type=int, default=200)
ap.add_argument("--callgrind", action="store_true")
ap.add_argument("--digest", action="store_true", help="print a SHA-256 of the decisions")
ap.add_argument("--service", type=int, default=0, help="service's store settings: timeout 0.5 s, WAL checkpoint thread 0.5 s, this many MiB of page cache (where the checkout has the setting)")
ap.add_argument("--reps", type=int, default=1, help="repeat the measured loop (fresh calls each rep)")
ap.add_argument("--block", type=int, default=0,
                help="decide in blocks of this many distinct customers (`decide_many`, the service's micro-batch); "
                     "--n and --warm count decisions, per decision figures; 0: `decide` one by one")
args = ap.parse_args()

import nbo  # noqa: E402
import serving  # noqa: E402

print("nbo from", nbo.__file__, "serving from", serving.__file__, flush=True)
from features import read_materialised  # noqa: E402
from serving.engine import DecisionEngine  # noqa: E402
from serving.settings import EngineSettings  # noqa: E402

W = args.world
data, features, uri = W / "data", W / "features.parquet", f"sqlite:///{W / 'mlflow.db'}"
as_of = pd.Timestamp("2025-01-01") + pd.Timedelta(days=300)
clock = as_of + pd.Timedelta(hours=10)
for p in (args.store, Path(str(args.store) + "-wal"), Path(str(args.store) + "-shm")):
    if p.exists():
        p.unlink()
extra = {}
if args.service:
    extra = {"store_timeout_s": 0.5, "store_checkpoint_s": 0.5}
    if "store_cache_mib" in EngineSettings.model_fields:
        extra["store_cache_mib"] = args.service
print("settings", extra, flush=True)
engine = DecisionEngine.from_settings(EngineSettings(data_dir=data, features_path=features, tracking_uri=uri,
                                                     store=str(args.store), **extra))
customers = read_materialised(features)[0].index.tolist()
rng = random.Random(1)
now = clock.to_pydatetime()
total = args.warm + args.n * args.reps
if args.block:  # blocks of distinct customers, one channel each (the Guard's blocks are per channel)
    calls = []
    while len(calls) < total:
        ch = rng.choice(["web", "app"])
        calls += [(c, ch, rng.choice(["travel", "books", None])) for c in rng.sample(customers, args.block)]
else:
    calls = [(rng.choice(customers), rng.choice(["web", "app"]), rng.choice(["travel", "books", None])) for _ in range(total)]
decisions = []


def run(lo: int, hi: int) -> None:
    if args.block:
        for b in range(lo, hi, args.block):
            part = calls[b : min(b + args.block, hi)]
            got = engine.decide_many([(cid, {"page_category": page, "device": "mobile"} if page else None)
                                      for cid, _, page in part], part[0][1], now + pd.Timedelta(milliseconds=b),
                                     k=3, reserve=True)
            if args.digest:  # decision ids are random here: the answers without them
                decisions.extend(d.model_copy(update={"decision_id": ""}) for d in got)
        return
    for i in range(lo, hi):
        cid, ch, page = calls[i]
        d = engine.decide(cid, ch, {"page_category": page, "device": "mobile"} if page else None,
                          now + pd.Timedelta(milliseconds=i), k=3, reserve=True, decision_id=f"d{i}")
        if args.digest:
            decisions.append(d)


run(0, args.warm)
gc.collect()
gc.freeze()
if args.callgrind:
    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
    time.sleep(0.5)
results = []
for r in range(args.reps):
    lo = args.warm + r * args.n
    t0 = os.times()
    run(lo, lo + args.n)
    t1 = os.times()
    results.append(((t1.user - t0.user) / args.n * 1000, (t1.system - t0.system) / args.n * 1000))
if args.callgrind:
    subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
print("cpu_ms_per_decide user+sys", " ".join(f"{u + s:.3f} ({u:.3f}+{s:.3f})" for u, s in results), "load", f"{os.getloadavg()[0]:.2f}", flush=True)
if args.digest:
    import hashlib

    h = hashlib.sha256()
    for d in decisions:
        h.update(repr(d).encode())
    print("digest", h.hexdigest())
engine.close()

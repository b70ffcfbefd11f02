"""Benchmark batch scoring (`nbo score`): customers/s, wall time and peak memory.

    python benchmarks/bench_batch.py                       # 1,000,000 customers x 50 offers, + Spark on 200,000
    python benchmarks/bench_batch.py --customers 100000 --spark-customers 50000
    python benchmarks/bench_batch.py --skip-spark

Set-up (not timed): a small simulated world (1,000 customers x 180 days) gives a small trained
propensity and churn champion (LightGBM, 50 rounds) in a temporary SQLite MLflow. The materialised
features of N customers are synthesised by resampling the world's rows under new ids (so the model
sees realistic inputs), the catalogue has 50 offers (the world's offers repeated under new ids,
every fifth with an eligibility rule) and 90% of the customers opted in to e-mail.

Timed: `nbo score --channel email --k 1` as a subprocess, the pandas engine with `--workers`
processes (default 2), reservations into a fresh SQLite contact store (a real campaign run), then
the Spark engine (`local[*]`, dry run) on `--spark-customers`. Peak memory is the largest sum of
RSS over the whole process tree (driver, workers, Spark JVM), sampled every 0.2 s.
Targets (pandas engine, 1 M customers, 2 cores): under 120 s and under 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hardware import cpu_model as _cpu_model  # noqa: E402


import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_S = 120.0
TARGET_GB = 4.0
START = date(2025, 1, 1)
DAYS = 180
AS_OF = pd.Timestamp(START) + pd.Timedelta(days=DAYS)
CAMPAIGN_TIME = (AS_OF + pd.Timedelta(hours=10)).isoformat()


def hardware() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = psutil.virtual_memory().total / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"cpu: {_cpu_model()} x {cores} | RAM {mem:.0f} GB | load average {load} | python "
            f"{platform.python_version()} | {platform.system()} {platform.release()}")


def build_world(root: Path) -> tuple[Path, str]:
    """Simulate, train and promote small champions; returns (world data dir, tracking URI)."""
    from features import build_customer_features, write_materialised
    from nbo.data import load_dataset
    from nbo.simulator import SimConfig, Simulator, write_simulation
    from training.registry import promote
    from training.tracking import MODEL_NAMES, resolve_tracking
    from training.train import TrainConfig, fit_and_log

    sim = Simulator(SimConfig(customers=1000, days=DAYS, start=START), seed=3)
    sim.run(progress=False)
    write_simulation(sim, root / "world")
    data = load_dataset(root / "world")
    tracking = resolve_tracking(f"sqlite:///{root / 'mlflow.db'}")
    client = tracking.activate()
    for which in ("propensity", "churn"):
        fit_and_log(which, data, TrainConfig(as_of=AS_OF, num_boost_round=50), tracking, data_dir=root / "world",
                    progress=False)
        promote(client, MODEL_NAMES[which])
    write_materialised(build_customer_features(data, AS_OF), root / "world-features.parquet", AS_OF)
    return root / "world", tracking.uri


def synthesise(root: Path, world: Path, n: int, n_offers: int, seed: int = 0) -> tuple[Path, Path]:
    """A data dir (offers, consents, empty contacts) and a materialised file for `n` customers."""
    from features import read_materialised
    from nbo.data import empty_table, load_table, write_table

    rng = np.random.default_rng(seed)
    data = root / f"data-{n}"
    data.mkdir(exist_ok=True)
    offers = load_table(world, "offers").reset_index(drop=True)
    rows = offers.iloc[np.arange(n_offers) % len(offers)].reset_index(drop=True).copy()
    rows["offer_id"] = [f"o-bench-{i:03d}" for i in range(n_offers)]
    rows["channels"] = [("web", "app", "email", "sms", "push", "mail")] * n_offers
    rules = ["tenure_days > 30", 'lifecycle in ["at_risk", "lapsed"]', "spend_90d >= 20", None, None]
    rows["eligibility"] = [rules[(i // 5) % len(rules)] if i % 5 == 0 else None for i in range(n_offers)]
    rows["valid_from"] = pd.Timestamp("2020-01-01")
    rows["valid_to"] = pd.Timestamp("2030-01-01")
    write_table(rows, data / "offers.parquet")
    write_table(empty_table("contacts"), data / "contacts.parquet")
    ids = np.array([f"b{i:08d}" for i in range(n)], dtype=object)
    opted = rng.random(n) < 0.9
    consents = empty_table("consents")
    consents = pd.DataFrame({
        "customer_id": pd.array(ids[opted], dtype=consents["customer_id"].dtype),
        "channel": pd.array(["email"] * int(opted.sum()), dtype=consents["channel"].dtype),
        "granted": True,
        "ts": pd.Timestamp(START) - pd.Timedelta(days=1),
    })
    write_table(consents, data / "consents.parquet")
    del consents

    frame, meta = read_materialised(root / "world-features.parquet")
    path = root / f"features-{n}.parquet"
    writer = None
    step = 100_000
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        chunk = frame.iloc[rng.integers(0, len(frame), hi - lo)].copy()
        chunk.index = pd.Index(ids[lo:hi].astype(str), name="customer_id", dtype="str")
        table = pa.Table.from_pandas(chunk, preserve_index=True)
        if writer is None:
            schema_meta = dict(table.schema.metadata or {})
            schema_meta.update({b"nbo.feature_set": str(meta["feature_set"]).encode(),
                                b"nbo.feature_set_version": str(meta["feature_set_version"]).encode(),
                                b"nbo.as_of": pd.Timestamp(meta["as_of"]).isoformat().encode()})
            schema = table.schema.with_metadata(schema_meta)
            writer = pq.ParquetWriter(path, schema, compression="zstd")
        writer.write_table(table.cast(schema), row_group_size=step)
    assert writer is not None
    writer.close()
    return data, path


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS of the process tree in GB, exit status, last stdout line)."""
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=None, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    wall = time.perf_counter() - began
    out = proc.stdout.read() if proc.stdout else ""
    lines = [line for line in out.splitlines() if line.strip()]
    return wall, peak / 2**30, proc.returncode, lines[-2] if len(lines) >= 2 else (lines[-1] if lines else "")


def score_cmd(data: Path, features: Path, tracking: str, out: Path, store: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "nbo", "score", "--data", str(data), "--features", str(features),
            "--tracking-uri", tracking, "--as-of", CAMPAIGN_TIME, "--channel", "email", "--k", "1",
            "--out", str(out), "--store", str(store), *extra]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--offers", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=2_000)
    parser.add_argument("--spark-customers", type=int, default=200_000)
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="pandas engine without reservations")
    args = parser.parse_args(argv)

    print(hardware(), flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYSPARK_PYTHON=sys.executable)
    results: dict[str, object] = {"hardware": hardware()}
    with tempfile.TemporaryDirectory(prefix="nbo-bench-batch-") as tmp:
        root = Path(tmp)
        began = time.perf_counter()
        world, tracking = build_world(root)
        data, features = synthesise(root, world, args.customers, args.offers)
        print(f"set-up (world, training, {args.customers:,} synthetic customers x {args.offers} offers): "
              f"{time.perf_counter() - began:.0f} s", flush=True)

        extra = ["--workers", str(args.workers), "--chunk-size", str(args.chunk_size)]
        extra += ["--dry-run"] if args.dry_run else ["--campaign", "bench"]
        wall, peak, code, summary = run_measured(
            score_cmd(data, features, tracking, root / "offers.parquet", root / "contacts.db", extra), env)
        rate = args.customers / wall
        ok = code == 0 and wall < TARGET_S and peak < TARGET_GB
        if code != 0:
            print(f"\npandas engine FAILED (exit {code}) after {wall:.1f} s", flush=True)
        print(f"\npandas engine, {args.workers} worker(s), {'dry run' if args.dry_run else 'with reservations'}: "
              f"{args.customers:,} customers x {args.offers} offers in {wall:.1f} s = {rate:,.0f} customers/s, "
              f"peak RSS {peak:.2f} GB (targets {TARGET_S:.0f} s, {TARGET_GB:.0f} GB): {'OK' if ok else 'MISSED'}"
              f"{'' if code == 0 else f' (exit {code})'}", flush=True)
        print(f"   {summary}", flush=True)
        results["pandas"] = {"customers": args.customers, "seconds": wall, "customers_per_s": rate,
                             "peak_rss_gb": peak, "exit": code, "workers": args.workers}

        if not args.skip_spark:
            n = min(args.spark_customers, args.customers)
            spark_features = features
            if n < args.customers:
                spark_features = root / f"features-{n}.parquet"
                pq.write_table(pq.read_table(features).slice(0, n), spark_features)
            wall, peak, code, summary = run_measured(
                score_cmd(data, spark_features, tracking, root / "offers-spark.parquet", root / "contacts-spark.db",
                          ["--engine", "spark", "--dry-run", "--chunk-size", str(args.chunk_size)]), env)
            if code == 0:
                print(f"\nspark engine (local[*], dry run): {n:,} customers in {wall:.1f} s = {n / wall:,.0f} customers/s "
                      f"(session start and Python workers included), peak RSS {peak:.2f} GB", flush=True)
            else:
                print(f"\nspark engine FAILED (exit {code}) after {wall:.1f} s", flush=True)
            print(f"   {summary}", flush=True)
            results["spark"] = {"customers": n, "seconds": wall, "customers_per_s": n / wall, "peak_rss_gb": peak,
                                "exit": code}
    print("\n" + json.dumps(results, indent=2))
    return 0 if results["pandas"]["exit"] == 0 else 1  # type: ignore[index]


if __name__ == "__main__":
    sys.exit(main())

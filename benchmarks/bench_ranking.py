"""Benchmark arbitration and the contact stores.

    python benchmarks/bench_ranking.py            # 2,000 timed calls per case
    python benchmarks/bench_ranking.py --n 5000

Cases (median and p99 per call, one thread):
  - arbitration of 100 candidate offers for one customer, scores given (the store's history read
    included, no reservation): target < 1 ms median;
  - the same with the reservation (full `decide`);
  - check-and-reserve of 3 offers on SQLite (WAL, file in a temp dir) and on Redis (a private
    redis-server started here on a free port): target < 1 ms median each.
Customers are drawn from 5,000 ids, so histories are small but not empty.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hardware import cpu_model as _cpu_model  # noqa: E402


import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving.contact_store import OfferRef, RedisContactStore, SQLiteContactStore  # noqa: E402
from serving.policy import load_policy  # noqa: E402
from serving.catalogue import compile_offer_rules  # noqa: E402
from serving.ranking import Arbiter  # noqa: E402
from serving.reservation import ContactDesk  # noqa: E402

TARGET_MS = 1.0


def _catalogue(n: int = 100) -> pd.DataFrame:
    rules = [None, "tenure_days > 30", 'lifecycle in ["at_risk", "lapsed"] and tenure_days > 30', "spend_90d >= 50"]
    return pd.DataFrame(
        {
            "offer_id": [f"o{i:03d}" for i in range(n)],
            "name": "offer",
            "category": [f"cat{i % 12}" for i in range(n)],
            "kind": [("retention", "cross_sell", "upsell", "loyalty")[i % 4] for i in range(n)],
            "channels": [("web", "app", "email")] * n,
            "value": np.linspace(5, 60, n),
            "cost": 0.05,
            "valid_from": pd.Timestamp("2025-01-01"),
            "valid_to": pd.Timestamp("2027-12-31"),
            "eligibility": [rules[i % len(rules)] for i in range(n)],
        }
    )


def _time(fn: Callable[[int], object], n: int, warmup: int = 200) -> dict[str, float]:
    for i in range(warmup):
        fn(i)
    samples = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn(warmup + i)
        samples[i] = time.perf_counter() - t0
    return {"median_ms": float(np.median(samples) * 1e3), "p99_ms": float(np.percentile(samples, 99) * 1e3)}


def _start_redis(workdir: str) -> tuple[subprocess.Popen | None, int]:
    exe = shutil.which("redis-server")
    if exe is None:
        return None, 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return proc, port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="timed calls per case")
    args = ap.parse_args()
    import redis

    policy = load_policy(ROOT / "policy.toml")
    offers = _catalogue()
    rules = compile_offer_rules(offers, {"tenure_days", "lifecycle", "spend_90d"})
    rng = np.random.default_rng(0)
    scores = {o: float(p) for o, p in zip(offers["offer_id"], rng.uniform(0.01, 0.4, len(offers)), strict=True)}
    features = {"tenure_days": 120, "lifecycle": "at_risk", "spend_90d": 80.0}
    t0 = datetime(2026, 6, 1, 9, 0)
    refs = [OfferRef("o001", "cat1"), OfferRef("o002", "cat2"), OfferRef("o003", "cat3")]
    props = {r.offer_id: 0.9 for r in refs}

    redis_version = "n/a"
    if shutil.which("redis-server"):
        redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    print(f"cpu: {_cpu_model()} x {os.cpu_count()} | python {platform.python_version()} | "
          f"sqlite {sqlite3.sqlite_version} | {redis_version} | numpy {np.__version__} | pandas {pd.__version__}")
    print(f"{args.n} timed calls per case (after 200 warm-up calls); target < {TARGET_MS} ms median\n")
    results: list[tuple[str, dict[str, float], bool]] = []

    with tempfile.TemporaryDirectory() as tmp:
        proc, port = _start_redis(tmp)
        try:
            stores = {"sqlite": SQLiteContactStore(Path(tmp) / "contacts.db")}
            if proc is not None:
                stores["redis"] = RedisContactStore(redis.Redis(port=port, decode_responses=True), prefix="bench")
            for name, store in stores.items():
                arb = ContactDesk(Arbiter(policy, offers, rules), store)

                def decide(i: int, arb: ContactDesk = arb, reserve: bool = False) -> object:
                    return arb.decide(f"c{i % 5000}", "web", t0 + timedelta(seconds=30 * i), scores, features,
                                      churn_probability=0.3, customer_value=200.0, k=3, rng=rng, reserve=reserve)

                results.append((f"arbitrate 100 offers, k=3 ({name} history, no reserve)", _time(decide, args.n), True))
                results.append((f"decide + reserve, 100 offers, k=3 ({name})",
                                _time(lambda i, d=decide: d(i, reserve=True), args.n), False))

                def reserve(i: int, store=store, name=name) -> object:
                    return store.check_and_reserve(f"r{i % 5000}", "web", refs, t0 + timedelta(seconds=30 * i),
                                                   policy, f"{name}-res-{i}", props)

                results.append((f"check_and_reserve 3 offers ({name})", _time(reserve, args.n), True))
            for s in stores.values():
                s.close()
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)

    width = max(len(r[0]) for r in results)
    for label, m, targeted in results:
        verdict = ("OK " if m["median_ms"] < TARGET_MS else "SLOW") if targeted else "   "
        print(f"{label:<{width}}  median {m['median_ms']:.3f} ms   p99 {m['p99_ms']:.3f} ms  {verdict}")
    if proc is None:
        print("redis-server not found: Redis cases skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

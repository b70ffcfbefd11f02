"""Benchmark the relationship simulator: time, peak memory and events, and how they grow with N.

    python benchmarks/bench_simulator.py                 # 10k, 30k, 100k customers x 365 days
    python benchmarks/bench_simulator.py --customers 20000 --days 120

Each size runs in a fresh subprocess so its peak RSS is its own; files are written to a temporary
directory (Parquet) and removed. Target: 100,000 x 365 (~10M events) in < 60 s, < 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hardware import cpu_model as _cpu_model  # noqa: E402


ROOT = Path(__file__).resolve().parents[1]


def _one(customers: int, days: int, seed: int) -> dict:
    """Run one size in this process and return its measurements."""
    from simulator import SimConfig, Simulator, write_simulation

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        sim = Simulator(SimConfig(customers=customers, days=days), seed=seed)
        sim.run(progress=sys.stderr.isatty())
        t1 = time.perf_counter()
        write_simulation(sim, Path(tmp) / "data")
        t2 = time.perf_counter()
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    daily = sim.daily()
    return {
        "customers": customers,
        "days": days,
        "simulate_s": round(t1 - t0, 2),
        "write_s": round(t2 - t1, 2),
        "total_s": round(t2 - t0, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "events": int(daily["events"].sum()),
        "contacts": int(daily["contacts"].sum()),
        "accepted": int(daily["accepted"].sum()),
        "churned": int(daily["churned_today"].sum()),
        "files_mb": round(size / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, nargs="*", default=[10_000, 30_000, 100_000])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.customers[0], args.days, args.seed)))
        return

    print(f"cpu: {_cpu_model()} x {os.cpu_count()} (python {platform.python_version()}, {platform.system()})")
    rows = []
    for n in args.customers:
        cmd = [sys.executable, __file__, "--one", "--customers", str(n), "--days", str(args.days), "--seed", str(args.seed)]
        done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{row['customers']:>8,} x {row['days']} days: total {row['total_s']:6.1f} s "
            f"(simulate {row['simulate_s']:.1f}, write {row['write_s']:.1f}), peak RSS {row['peak_rss_mb']:,} MB, "
            f"{row['events']:,} events, {row['contacts']:,} contacts, {row['files_mb']} MB on disk",
            flush=True,
        )
    if len(rows) > 1:
        base = rows[0]
        print("growth vs the smallest size (time ratio / size ratio; 1.0 = linear):")
        for row in rows[1:]:
            ratio = row["customers"] / base["customers"]
            print(f"  {row['customers']:>8,}: x{ratio:.1f} customers -> x{row['total_s'] / base['total_s']:.2f} time "
                  f"({row['total_s'] / base['total_s'] / ratio:.2f})")


if __name__ == "__main__":
    main()

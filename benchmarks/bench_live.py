"""Live features over HTTP (issue 22 item 6): freshness, ingestion throughput, memory vs events.

    python benchmarks/bench_live.py                        # builds the demo world (~5 min on 2 busy cores)
    python benchmarks/bench_live.py --world .scratch/demo  # a world built by `nbo demo --no-serve --dir ...`
    python benchmarks/bench_live.py --world W --freshness 300 --ingest-s 30 --memory 100000 500000 1000000
    python benchmarks/bench_live.py --world W --quick      # < 3 min: 2 x 150 pairs, 1 x 10 s, memory to 300k

World: what `nbo demo` builds (5,000 customers x 365 days, both champions, features materialised).
A real `nbo serve` (2 workers, SQLite store in a new state directory, the real clock) is started;
every figure is over HTTP on 127.0.0.1 with keep-alive connections (httpx):

1. Freshness: `POST /events` (one purchase, now) for a random customer, then at once
   `POST /recommend` for that customer; freshness = from sending the event to the decision's
   answer. Every tenth round also asks `POST /customer` (outside the timing) that the row is
   `live` and its `recency_days` the event's (< 1 h): the decision reflected the event. Three
   rounds of `--freshness` pairs; p50/p99 per round and the median of the three.
2. Ingestion, sustained for `--ingest-s` seconds each: `POST /events` with 1,000 events per body
   (one client, as a stream consumer would post), and `nbo ingest FILE` on files of `--file-events`
   events run one after the other into the same store; events/s = recorded / wall time; three
   rounds, median.
3. Memory: the server's RSS (the supervisor and both workers, psutil), its heap (the anonymous
   memory of /proc/PID/smaps_rollup: what grows when something is kept; RSS also counts the pages
   of the store's file each worker has memory-mapped, up to SQLite's mmap_size of 256 MB each) and
   the store's file size, after 0 and after each `--memory` total of posted events, each after 500
   decisions on the SAME 500 customers (each with a posted event from the first point on: the
   live-row caches hold them at every point). The customers are fixed, so any growth is growth
   with events; the bar: the heap grows by less than `HEAP_SLACK_MB` from the first to the last
   point. The points are minutes apart: a worker's heap step at a given time after its start
   (as the periodic champion check's MLflow import was, docs/service.md) falls between them.

Ends with the bars' verdicts (met / NOT met), one line each.

Prints the hardware and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import hardware  # noqa: E402
from bench_startup import build_world, free_port  # noqa: E402

KEY = "bench-live-key-not-a-secret"
NBO = [sys.executable, "-m", "cli"]
FRESHNESS_P99_MS = 50.0
INGEST_TARGET = 5_000.0
#: Heap growth (MB, all processes) from the first to the last memory point still called flat:
#: allocator noise, and SQLite's page caches filling to their 8 MB each.
HEAP_SLACK_MB = 40.0
TYPES = ("page_view", "search", "product_view", "add_to_cart", "purchase")
CATEGORIES = ("travel", "books", "home", "fashion", "electronics", "grocery")


def _customers_and_horizon(world: Path) -> tuple[list[str], datetime]:
    import pandas as pd
    import pyarrow.parquet as pq

    files = sorted((world / "features").glob("*.parquet"))
    ids = [str(c) for c in pq.read_table(files[-1], columns=["customer_id"]).column("customer_id").to_pylist()]
    events = pd.read_parquet(world / "data" / "events.parquet", columns=["ts"])
    return ids, pd.Timestamp(events["ts"].max()).to_pydatetime()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Server:
    """`nbo serve` on a free port, 2 workers, stopped by `stop`."""

    def __init__(self, world: Path, state: Path, workers: int) -> None:
        self.port = free_port()
        self.store = state / "contacts.db"
        cmd = [*NBO, "serve", "--data", str(world / "data"), "--features", str(world / "features"),
               "--tracking-uri", f"sqlite:///{world / 'mlflow.db'}", "--store", str(self.store),
               "--state-dir", str(state), "--port", str(self.port), "--workers", str(workers)]
        self.log = open(state / "serve.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "NBO_API_KEYS": KEY},
                                     stdout=self.log, stderr=subprocess.STDOUT)
        import httpx

        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30.0,
                                 headers={"Authorization": f"Bearer {KEY}"})

    def wait_ready(self, customer: str, workers: int) -> None:
        import httpx

        began = time.perf_counter()
        while time.perf_counter() - began < 300:
            if self.proc.poll() is not None:
                raise SystemExit(f"nbo serve exited; see {self.log.name}")
            try:
                if self.recommend(customer).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit("nbo serve did not become ready in 300 s")
        for _ in range(20 * workers):  # both workers warm
            self.recommend(customer)
        # Each worker compiles the champions (lleaves/LLVM) in a thread once it answers: ~15 s of a
        # core each. Measured before it ends, the figures include it (py-spy, 2026-12-07: 38 % of the
        # answering worker's samples; server CPU per freshness pair 30-51 ms instead of ~13).
        began = time.perf_counter()
        while time.perf_counter() - began < 300:
            self.log.flush()
            if Path(self.log.name).read_text(errors="replace").count("now score with compiled") >= workers:
                break
            time.sleep(0.5)
        else:
            print("   (warning: the workers did not report compiled champions in 300 s; measuring anyway)")

    def recommend(self, customer: str):  # noqa: ANN201
        return self.http.post("/recommend", json={"customer_id": customer, "channel": "web", "k": 3})

    def events(self, events: list[dict]):  # noqa: ANN201
        return self.http.post("/events", json={"events": events})

    def rss_mb(self) -> float:
        import psutil

        root = psutil.Process(self.proc.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20

    def heap_mb(self) -> float:
        """Anonymous memory of the server's processes (/proc/PID/smaps_rollup): the heap, without
        the pages of memory-mapped files (the store, libraries)."""
        import psutil

        root = psutil.Process(self.proc.pid)
        total = 0
        for p in [root, *root.children(recursive=True)]:
            with open(f"/proc/{p.pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Anonymous:"))
        return total / 1024

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server's processes so far (less sensitive to the load)."""
        import psutil

        root = psutil.Process(self.proc.pid)
        return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class EventMaker:
    """Unique events for the world's customers, timed between the data's horizon and now."""

    def __init__(self, ids: list[str], horizon: datetime, seed: int) -> None:
        self.ids, self.horizon, self.rng, self.n = ids, horizon, random.Random(seed), 0
        self.run = f"r{seed}-{os.getpid()}"

    def one(self, customer: str | None = None, kind: str | None = None, ts: datetime | None = None) -> dict:
        self.n += 1
        kind = kind or self.rng.choice(TYPES)
        if ts is None:
            span = max((_now() - self.horizon).total_seconds() - 60, 1.0)
            ts = self.horizon + timedelta(seconds=1 + self.rng.uniform(0, span))
        return {"event_id": f"{self.run}-{self.n}", "customer_id": customer or self.rng.choice(self.ids),
                "ts": ts.isoformat(), "type": kind, "channel": self.rng.choice(("web", "app", "store")),
                "category": self.rng.choice(CATEGORIES),
                "amount": round(self.rng.uniform(5, 300), 2) if kind == "purchase" else None}


def freshness(server: Server, maker: EventMaker, n: int) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, rounds checked live) of event -> decision."""
    lat, checked = [], 0
    for i in range(n):
        cid = maker.rng.choice(maker.ids)
        event = maker.one(cid, "purchase", _now() - timedelta(seconds=1))
        t0 = time.perf_counter()
        r1 = server.events([event])
        r2 = server.recommend(cid)
        lat.append((time.perf_counter() - t0) * 1000)
        if r1.status_code != 200 or r1.json()["recorded"] != 1 or r2.status_code != 200:
            raise SystemExit(f"freshness round {i}: /events {r1.status_code} {r1.text[:200]}, /recommend {r2.status_code}")
        if i % 10 == 0:
            view = server.http.post("/customer", json={"customer_id": cid}).json()
            if view["source"] != "live" or view["features"]["recency_days"] > 1 / 24:
                raise SystemExit(f"the decision after the event did not see it: {view['source']}, "
                                 f"recency {view['features']['recency_days']}")
            checked += 1
    return float(np.median(lat)), float(np.percentile(lat, 99)), checked


def ingest_http(server: Server, maker: EventMaker, seconds: float, batch: int = 1000) -> tuple[float, int]:
    total, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        r = server.events([maker.one() for _ in range(batch)])
        if r.status_code != 200:
            raise SystemExit(f"/events {r.status_code}: {r.text[:300]}")
        total += r.json()["recorded"]
    return total / (time.perf_counter() - began), total


def ingest_cli(world: Path, store: Path, maker: EventMaker, seconds: float, per_file: int, tmp: Path) -> tuple[float, int]:
    import pandas as pd

    total, wall = 0, 0.0
    while wall < seconds:
        rows = [maker.one() for _ in range(per_file)]
        path = tmp / f"events-{maker.n}.parquet"
        pd.DataFrame(rows).to_parquet(path, index=False)
        t0 = time.perf_counter()
        done = subprocess.run([*NBO, "ingest", str(path), "--data", str(world / "data"), "--store", str(store)],
                              cwd=ROOT, capture_output=True, text=True)
        wall += time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"nbo ingest failed: {done.stdout}{done.stderr}")
        total += per_file
        path.unlink()
    return total / wall, total


def memory(server: Server, maker: EventMaker, ids: list[str], targets: list[int], fixed: list[str]) -> tuple[float, float]:
    """Part 3: RSS, heap and store size at 0 and at the posted totals `targets`, each after 500
    decisions on the same customers (`fixed`); returns (heap at the first point, at the last)."""
    print(f"\n3. memory vs posted events ({len(ids):,} customers; 500 decisions on the same {len(fixed)} at each point)")
    print(f"   {'events posted':>14} {'server RSS MB':>14} {'heap MB':>8} {'store MB':>9}")
    # One event for each fixed customer first: their live rows are then cached at the first point
    # too, so the first point already holds what grows with customers (~100 kB a cached row).
    r = server.events([maker.one(cid) for cid in fixed])
    if r.status_code != 200:
        raise SystemExit(f"/events {r.status_code}: {r.text[:300]}")
    posted, heaps = maker.n, []
    for target in [maker.n, *targets]:
        while posted < target:
            r = server.events([maker.one() for _ in range(min(1000, target - posted))])
            if r.status_code != 200:
                raise SystemExit(f"/events {r.status_code}: {r.text[:300]}")
            posted = maker.n
        for cid in fixed:
            server.recommend(cid)
        wal = server.store.with_name(server.store.name + "-wal")
        size = server.store.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        heaps.append(server.heap_mb())
        print(f"   {posted:>14,} {server.rss_mb():>14.0f} {heaps[-1]:>8.0f} {size / 2**20:>9.1f}"
              f"  load {os.getloadavg()[0]:.1f}")
    return heaps[0], heaps[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, help="a demo world (nbo demo --no-serve --dir DIR); default: build one")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--freshness", type=int, default=300, help="event -> decision pairs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ingest-s", type=float, default=30.0, help="seconds of sustained ingestion per round and path")
    parser.add_argument("--file-events", type=int, default=100_000, help="events per `nbo ingest` file")
    parser.add_argument("--memory", type=int, nargs="*", default=[100_000, 500_000, 1_000_000],
                        help="total posted events after which RSS is measured")
    parser.add_argument("--memory-first", action="store_true",
                        help="measure memory (part 3) before the ingestion rounds, which post ~1M events")
    parser.add_argument("--quick", action="store_true",
                        help="< 3 min: 2 rounds of 150 pairs, 1 round of 10 s ingestion (20,000 events a file), "
                             "memory first at 50k, 150k, 300k events")
    args = parser.parse_args()
    if args.quick:
        args.freshness, args.rounds, args.ingest_s, args.file_events = 150, 2, 10.0, 20_000
        args.memory, args.memory_first = [50_000, 150_000, 300_000], True
    print(hardware())
    tmp = Path(tempfile.mkdtemp(prefix="nbo-bench-live-"))
    world = args.world or build_world(tmp / "world")
    ids, horizon = _customers_and_horizon(world)
    print(f"world {world}: {len(ids):,} customers, data's last event {horizon:%Y-%m-%d %H:%M}; "
          f"nbo serve --workers {args.workers}, SQLite store")
    state = tmp / "state"
    state.mkdir()
    server = Server(world, state, args.workers)
    try:
        server.wait_ready(ids[0], args.workers)
        maker = EventMaker(ids, horizon, seed=0)
        fixed = random.Random(0).sample(ids, 500)  # the customers every memory point decides for
        print("\n1. freshness: POST /events (1 purchase) then POST /recommend, same customer")
        rounds = []
        for r in range(args.rounds):
            cpu = server.cpu_s()
            p50, p99, checked = freshness(server, maker, args.freshness)
            cpu = (server.cpu_s() - cpu) / args.freshness * 1000
            rounds.append((p50, p99))
            print(f"   round {r + 1}: p50 {p50:.1f} ms, p99 {p99:.1f} ms, server CPU {cpu:.1f} ms per pair "
                  f"({args.freshness} pairs, {checked} checked live)"
                  f"  load {os.getloadavg()[0]:.1f}")
        p50 = statistics.median(r[0] for r in rounds)
        p99 = statistics.median(r[1] for r in rounds)
        print(f"   median of {args.rounds}: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        if args.memory_first:  # part 3 before part 2: the points at the posted totals asked for
            heap = memory(server, maker, ids, args.memory, fixed)
        print(f"\n2. sustained ingestion, {args.ingest_s:.0f} s per round")
        http_rates, cli_rates = [], []
        for r in range(args.rounds):
            rate, n = ingest_http(server, maker, args.ingest_s)
            http_rates.append(rate)
            print(f"   round {r + 1}: POST /events x1,000: {rate:,.0f} events/s ({n:,} events)  load {os.getloadavg()[0]:.1f}")
            rate, n = ingest_cli(world, server.store, maker, args.ingest_s, args.file_events, tmp)
            cli_rates.append(rate)
            print(f"   round {r + 1}: nbo ingest ({args.file_events:,}/file): {rate:,.0f} events/s ({n:,} events)"
                  f"  load {os.getloadavg()[0]:.1f}")
        http_rate, cli_rate = statistics.median(http_rates), statistics.median(cli_rates)
        print(f"   median: POST /events {http_rate:,.0f} events/s, nbo ingest {cli_rate:,.0f} events/s")
        if not args.memory_first:
            heap = memory(server, maker, ids, args.memory, fixed)
        print(f"\n{hardware()}")
        print("bars (issue 22 item 6):")
        for ok, text in (
            (p99 <= FRESHNESS_P99_MS, f"freshness p99 {p99:.1f} ms <= {FRESHNESS_P99_MS:.0f} ms (p50 {p50:.1f} ms)"),
            (min(http_rate, cli_rate) >= INGEST_TARGET,
             f"ingestion >= {INGEST_TARGET:,.0f} events/s: POST /events {http_rate:,.0f}, nbo ingest {cli_rate:,.0f}"),
            (heap[1] - heap[0] < HEAP_SLACK_MB,
             f"memory flat in events: heap {heap[0]:.0f} -> {heap[1]:.0f} MB (+{heap[1] - heap[0]:.0f}, "
             f"slack {HEAP_SLACK_MB:.0f}) at a fixed customer set"),
        ):
            print(f"   {'met    ' if ok else 'NOT met'}  {text}")
    finally:
        server.stop()
        if args.world is None:
            print(f"(world kept in {tmp / 'world'})")
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()

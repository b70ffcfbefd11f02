"""Load and soak (issue 9): a real `nbo serve` on 127.0.0.1 under steady open-loop traffic with
feedback mixed in, watched for errors, broken caps, memory growth and leaked file descriptors.

    python benchmarks/bench_soak.py                         # 10 min at 200 req/s (~12 min with the world)
    python benchmarks/bench_soak.py --duration 30 --bucket 10   # a short check
    python -m benchmarks soak                               # the same, through the runner (not in `make bench`)

World, server and request mix are those of bench_service.py (imported, not copied): simulated
3,000 customers x 300 days, both champions, a 50-offer catalogue, SQLite contact store, the
default policy, 2 workers, the service's clock simulated from the world's as_of and advancing in
real time. Load: `/recommend` on a fixed timetable at `--rate` req/s (latency from the scheduled
send time: no coordinated omission), and for `--feedback-share` of the answered decisions that
carry offers, one `/feedback` on the first offer as soon as the answer arrives (outcomes mixed:
accepted, declined, clicked, ignored). Each request has a `--timeout`; what is not answered in time
is a timeout.

Reported: hardware and load average; errors (any non-2xx, connection errors, timeouts) by
endpoint; p50/p99 per `--bucket` seconds (default a minute); RSS of every process of the service
(the BentoML arbiter and its workers) sampled every `--sample-every` s, at start and end, with the
trend (least-squares MiB/min after the first bucket); open file descriptors per process at start
and end; the SQLite store and WAL sizes; and, after the run, every customer's contact history in
the store checked against the policy's caps (per channel, outbound, per offer, in any window).
Exit status 1 if a request failed or a cap was exceeded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_service as svc  # noqa: E402 - the world, the server and the request mix

OUTCOMES = ("accepted", "declined", "clicked", "ignored")
DAY = 86_400.0
#: Descriptors a process may hold more when idle after the load than before it (a SQLite WAL or
#: shared-memory file opened lazily); more is reported as a leak.
FD_TOLERANCE = 3


# ----------------------------------------------------------------------------- process watch
def service_pids(root_pid: int) -> list[int]:
    """The server process and all its descendants (BentoML's arbiter and workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return sorted(out)


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def _name(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(c.decode(errors="replace") for c in cmd if c)
    if "worker" in text:
        return "worker"
    if "bentoml serve" in text or "nbo serve" in text:
        return "arbiter"
    return Path(cmd[0].decode(errors="replace")).name[:8] if cmd and cmd[0] else "?"


@dataclass
class Snapshot:
    t: float
    rss: dict[int, float]
    fds: dict[int, int]
    names: dict[int, str] = field(default_factory=dict)

    @property
    def total_rss(self) -> float:
        return float(np.nansum(list(self.rss.values())))


def snapshot(root_pid: int, t0: float) -> Snapshot:
    pids = service_pids(root_pid)
    return Snapshot(time.monotonic() - t0, {p: _rss_mib(p) for p in pids}, {p: _fds(p) for p in pids},
                    {p: _name(p) for p in pids})


def idle_snapshot(root_pid: int, t0: float, settle_s: float = 120.0) -> tuple[Snapshot, float]:
    """A snapshot once the service is idle (under 2 % of a core over a second, descriptor counts
    unchanged): a backlog still being answered holds the sockets of requests the client gave up
    on. Returns the snapshot and the seconds waited for it."""
    began = time.monotonic()
    last, cpu = snapshot(root_pid, t0), svc._cpu_seconds(root_pid)
    while time.monotonic() - began < settle_s:
        time.sleep(1.0)
        now, used = snapshot(root_pid, t0), svc._cpu_seconds(root_pid)
        if now.fds == last.fds and used - cpu < 0.02:
            return now, time.monotonic() - began
        last, cpu = now, used
    return last, time.monotonic() - began


# ----------------------------------------------------------------------------- load
@dataclass
class Record:
    kind: str  # "recommend" | "feedback"
    sent: float  # scheduled (recommend) or actual (feedback) send time, seconds since start
    latency: float = float("nan")  # seconds; nan = no answer
    status: int = 0  # 0 = connection error or timeout


@dataclass
class LoadResult:
    records: list[Record] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    elapsed: float = 0.0


def _request(port: int, path: str, body: bytes) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
            % (path.encode(), port, svc.KEY.encode(), len(body), body))


async def _read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, (await reader.readexactly(length) if length else b"")


async def soak(port: int, root_pid: int, customers: list[str], rate: float, duration: float, share: float,
               timeout: float, sample_every: float, clock0: float, seed: int = 0, connections: int = 64) -> LoadResult:
    """Open-loop load; RSS/fd snapshots every `sample_every` s, timed from `clock0` (monotonic)."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    payloads = svc._requests(customers, int(rate * duration), port, seed)  # the bench_service request mix
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    result = LoadResult()
    t0 = loop.time() + 0.2
    tasks: list[asyncio.Task] = []

    async def call(record: Record, payload: bytes) -> bytes | None:
        reader, writer = await pool.get()
        try:
            writer.write(payload)
            status, body = await asyncio.wait_for(_read(reader), timeout)
            record.status = status
            record.latency = loop.time() - (t0 + record.sent)
            pool.put_nowait((reader, writer))
            return body
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            writer.close()  # the connection's state is unknown: replace it
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
            return None

    async def feedback(decision_id: str, offer_id: str) -> None:
        record = Record("feedback", loop.time() - t0)
        result.records.append(record)
        body = json.dumps({"decision_id": decision_id, "offer_id": offer_id,
                           "outcome": rng.choice(OUTCOMES)}).encode()
        await call(record, _request(port, "/feedback", body))

    async def recommend(i: int) -> None:
        record = Record("recommend", i / rate)
        result.records.append(record)
        delay = t0 + record.sent - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        body = await call(record, payloads[i % len(payloads)])
        if body is not None and record.status == 200 and rng.random() < share:
            answer = json.loads(body)
            if answer.get("offers"):
                tasks.append(asyncio.ensure_future(feedback(answer["decision_id"], answer["offers"][0]["offer_id"])))

    async def sampler() -> None:
        while True:
            result.snapshots.append(snapshot(root_pid, clock0))
            await asyncio.sleep(sample_every)

    watch = asyncio.ensure_future(sampler())
    n = int(rate * duration)
    tasks += [asyncio.ensure_future(recommend(i)) for i in range(n)]
    await asyncio.sleep(duration + 0.2)
    # Bounded: every request has its own timeout; feedback started late gets the same bound.
    deadline = loop.time() + timeout + 2
    while any(not t.done() for t in tasks) and loop.time() < deadline:
        await asyncio.wait([t for t in tasks if not t.done()], timeout=max(0.0, deadline - loop.time()))
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    watch.cancel()
    await asyncio.gather(watch, return_exceptions=True)
    result.elapsed = loop.time() - t0
    while not pool.empty():
        pool.get_nowait()[1].close()
    return result


# ----------------------------------------------------------------------------- caps
def _windows_exceeded(frame: pd.DataFrame, keys: list[str], days: float, cap: int) -> int:
    """Groups (by `keys`) where one of the service's own contacts (`own`) made a window
    (t - days, t] hold more than `cap` events; `frame` has one row per counted event (column `ts`,
    epoch seconds). Imported history (the data's contacts, seeded into the store) counts toward
    the window but is not itself a violation: the company made those contacts, not nbo."""
    bad = 0
    for _, group in frame.groupby(keys, sort=False):
        order = np.argsort(group["ts"].to_numpy(), kind="stable")
        times, own = group["ts"].to_numpy()[order], group["own"].to_numpy()[order]
        if len(times) <= cap or not own.any():
            continue
        first = np.searchsorted(times, times - days * DAY, side="right")
        counts = np.arange(len(times)) - first + 1
        if int(counts[own].max()) > cap:
            bad += 1
    return bad


def check_caps(store: Path) -> dict[str, object]:
    """Every customer's reservations in the SQLite store against the default policy's caps.

    The store holds the service's own reservations and the data's contact history it was seeded
    with (rank 0, `import_history`); both count toward a window, and a window over its cap is a
    violation when one of the service's own contacts is in it at its end."""
    from serving.policy import ContactPolicy

    policy = ContactPolicy()
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        contacts = pd.read_sql_query("SELECT decision_id, offer_id, customer_id, channel, ts, rank > 0 AS own "
                                     "FROM contacts", conn)
        contacts["own"] = contacts["own"].astype(bool)
        decisions = int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])
    per_decision = contacts.drop_duplicates("decision_id")
    exceeded: dict[str, int] = {}
    for channel, cap in policy.caps.items():
        rows = per_decision[per_decision["channel"] == channel]
        exceeded[f"{channel} {cap.max}/{cap.days}d"] = _windows_exceeded(rows, ["customer_id"], cap.days, cap.max)
    outbound = per_decision[per_decision["channel"].isin(policy.outbound.channels)]
    exceeded[f"outbound {policy.outbound.max}/{policy.outbound.days}d"] = _windows_exceeded(
        outbound, ["customer_id"], policy.outbound.days, policy.outbound.max)
    exceeded[f"offer {policy.offer_cap.max}/{policy.offer_cap.days}d"] = _windows_exceeded(
        contacts, ["customer_id", "offer_id"], policy.offer_cap.days, policy.offer_cap.max)
    mine = contacts[contacts["own"]]
    return {"decisions": decisions, "contacts": len(mine), "customers": int(mine["customer_id"].nunique()),
            "imported": int((~contacts["own"]).sum()),
            "exceeded": exceeded, "total_exceeded": sum(exceeded.values())}


# ----------------------------------------------------------------------------- report
def _pct(ms: np.ndarray, q: float) -> float:
    return float(np.percentile(ms, q, method="higher")) if len(ms) else float("nan")


def report_latency(result: LoadResult, bucket: float) -> tuple[dict[str, int], list[str]]:
    frame = pd.DataFrame([r.__dict__ for r in result.records])
    lines = []
    counts: dict[str, int] = {}
    for kind in ("recommend", "feedback"):
        part = frame[frame["kind"] == kind]
        answered = part["latency"].notna()
        errors = int((answered & ((part["status"] < 200) | (part["status"] >= 300))).sum())
        timeouts = int((~answered).sum())
        counts[f"{kind}_sent"], counts[f"{kind}_errors"], counts[f"{kind}_timeouts"] = len(part), errors, timeouts
        if len(part):
            codes = part.loc[answered, "status"].value_counts().sort_index()
            lines.append(f"{kind}: {len(part):,} sent, {errors} non-2xx, {timeouts} timeouts or connection errors; "
                         f"status codes {({int(k): int(v) for k, v in codes.items()})}")
    lines.append(f"latency per {bucket:g} s (ms; a timeout counts as slower than any answer):")
    lines.append(f"  {'from s':>6}  {'recommend n':>11} {'p50':>7} {'p99':>8} {'max':>8}   {'feedback n':>10} {'p50':>7} {'p99':>8}")
    frame["bucket"] = (frame["sent"] // bucket).astype(int)
    for b, part in frame.groupby("bucket"):
        rec = part[part["kind"] == "recommend"]["latency"].fillna(np.inf).to_numpy() * 1000
        fb = part[part["kind"] == "feedback"]["latency"].fillna(np.inf).to_numpy() * 1000
        lines.append(f"  {b * bucket:>6.0f}  {len(rec):>11,} {_pct(rec, 50):>7.2f} {_pct(rec, 99):>8.2f} "
                     f"{(rec.max() if len(rec) else float('nan')):>8.1f}   {len(fb):>10,} {_pct(fb, 50):>7.2f} {_pct(fb, 99):>8.2f}")
    return counts, lines


def report_processes(first: Snapshot, last: Snapshot, snapshots: list[Snapshot], bucket: float) -> tuple[float, bool, list[str]]:
    lines = ["processes (RSS MiB and open file descriptors, idle before the load -> idle after it):"]
    leak = False
    for pid in sorted(set(first.rss) | set(last.rss)):
        a_rss, b_rss = first.rss.get(pid, float("nan")), last.rss.get(pid, float("nan"))
        a_fd, b_fd = first.fds.get(pid, -1), last.fds.get(pid, -1)
        grew = a_fd >= 0 and b_fd >= 0 and b_fd - a_fd > FD_TOLERANCE
        leak |= grew
        name = first.names.get(pid) or last.names.get(pid, "?")
        lines.append(f"  pid {pid:>7} {name:<8} RSS {a_rss:7.1f} -> {b_rss:7.1f}   fds {a_fd:>4} -> {b_fd:>4}"
                     + ("   <- fds grew" if grew else ""))
    t = np.array([s.t for s in snapshots])
    rss = np.array([s.total_rss for s in snapshots])
    keep = t >= min(bucket, t.max() / 2) if len(t) else t
    slope = float(np.polyfit(t[keep] / 60, rss[keep], 1)[0]) if keep.sum() >= 3 else float("nan")
    lines.append(f"  total RSS {first.total_rss:.1f} -> {last.total_rss:.1f} MiB ({last.total_rss - first.total_rss:+.1f}); "
                 f"trend {slope:+.2f} MiB/min over {keep.sum()} samples after the first {min(bucket, t.max() / 2 if len(t) else 0):.0f} s")
    lines.append("  RSS samples (s: MiB): " + ", ".join(f"{s.t:.0f}: {s.total_rss:.0f}" for s in snapshots))
    return slope, leak, lines


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MiB" if path.exists() else "absent"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=None, help="Directory of a built world to reuse (built if absent).")
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--days", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=float, default=600.0, help="Seconds of load (default 10 minutes).")
    ap.add_argument("--rate", type=float, default=200.0, help="/recommend requests per second.")
    ap.add_argument("--feedback-share", type=float, default=0.2, help="Share of answered decisions with offers that get feedback.")
    ap.add_argument("--timeout", type=float, default=5.0, help="Seconds before a request counts as a timeout.")
    ap.add_argument("--bucket", type=float, default=60.0, help="Seconds per latency line (default a minute).")
    ap.add_argument("--sample-every", type=float, default=10.0, help="Seconds between RSS/fd samples.")
    args = ap.parse_args()

    print(f"hardware: {svc._hardware()}; {svc._load()} at start", flush=True)
    world = (args.world or Path(tempfile.gettempdir()) / f"nbo-bench-world-{args.customers}x{args.days}").resolve()
    data, features, uri, as_of = svc.build_world(world, args.customers, args.days)
    clock = as_of + pd.Timedelta(hours=10)
    from features import read_materialised

    customers = read_materialised(features)[0].index.tolist()
    work = Path(tempfile.mkdtemp(prefix="nbo-bench-soak-"))
    store = work / f"contacts-{args.workers}.db"
    failed = False
    try:
        proc, port = svc.start_server(data, features, uri, clock, args.workers, work)
        try:
            svc.run_load(port, customers, 50, 3, seed=99)  # warm-up (not reported; its reservations are checked too)
            print(f"nbo serve pid {proc.pid}, {args.workers} worker(s), port {port}; {args.rate:g} req/s for "
                  f"{args.duration:g} s, feedback on {args.feedback_share:.0%} of answered decisions with offers; "
                  f"{svc._load()}", flush=True)
            began = time.monotonic()
            first, _ = idle_snapshot(proc.pid, began)
            result = asyncio.run(soak(port, proc.pid, customers, args.rate, args.duration, args.feedback_share,
                                      args.timeout, args.sample_every, began))
            last, drained = idle_snapshot(proc.pid, began)
            print(f"service idle {drained:.0f} s after the last request", flush=True)
            wal = store.with_name(store.name + "-wal")
            store_line = f"store {_size(store)}, WAL {_size(wal)} at the end"
        finally:
            svc.stop_server(proc)
        counts, latency_lines = report_latency(result, args.bucket)
        slope, leak, process_lines = report_processes(first, last, [first, *result.snapshots, last], args.bucket)
        caps = check_caps(store)
        print("\n".join(latency_lines), flush=True)
        print("\n".join(process_lines), flush=True)
        print(f"{store_line}; {caps['decisions']:,} decisions, {caps['contacts']:,} contacts reserved for "
              f"{caps['customers']:,} customers", flush=True)
        print("caps exceeded (customers or customer x offer with a window over the cap): "
              + ", ".join(f"{k}: {v}" for k, v in caps["exceeded"].items()), flush=True)  # type: ignore[union-attr]
        errors = counts["recommend_errors"] + counts["feedback_errors"]
        timeouts = counts["recommend_timeouts"] + counts["feedback_timeouts"]
        failed = bool(errors or timeouts or caps["total_exceeded"])
        print(f"\nverdict: errors {errors}, timeouts {timeouts}, caps exceeded {caps['total_exceeded']}, "
              f"RSS trend {slope:+.2f} MiB/min, fd growth {'YES' if leak else 'none'} -> "
              f"{'FAIL' if failed else 'ok'}; {svc._load()} at the end", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

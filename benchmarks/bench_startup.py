"""How long `nbo serve` takes to become ready on the demo world, and where the time goes.

    python benchmarks/bench_startup.py                        # builds the demo world (~2 min), 2 starts
    python benchmarks/bench_startup.py --world .scratch/demo  # a world built by `nbo demo --no-serve --dir ...`
    python benchmarks/bench_startup.py --runs 5 --workers 2

World: what `nbo demo` builds (5,000 customers x 365 days, both champions trained and promoted,
features materialised), built here with `nbo demo --no-serve` unless `--world` names one.

Each start runs the real command (`nbo serve`, 2 workers, SQLite store, the console mounted) and
stamps every line it prints with the time since the command started; `POST /recommend` (a known
customer, with the key) is sent every 50 ms until it answers 200 with a decision: that moment is
"ready". Phases: the CLI's checks (until `nbo serve` hands over to BentoML), BentoML's start (until
a worker logs its first line), the worker's engine (policy, catalogue, features, store, champions)
and warm-up, then the first answer. "CPU" is the processor time the server's processes (the CLI,
which becomes BentoML's supervisor, and its workers) had used when the first answer came: less
sensitive to the machine's load than the wall time. The first start uses a new state directory (the
workers compile the champions with lleaves in the background, after readiness); the next ones
reuse it (the compiled forests are loaded from `STATE_DIR/compiled`). The medians are over all
starts. Target: ready in under 10 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import hardware  # noqa: E402

TARGET_S = 10.0
KEY = "bench-startup-key-not-a-secret"
NBO = [sys.executable, "-m", "cli"]


def build_world(root: Path) -> Path:
    began = time.perf_counter()
    subprocess.run([*NBO, "demo", "--no-serve", "--dir", str(root)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"demo world built in {time.perf_counter() - began:.0f} s -> {root}")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def a_customer(world: Path) -> str:
    """A customer of the world's materialised features (the first row of the latest file)."""
    import pyarrow.parquet as pq

    files = sorted((world / "features").glob("*.parquet"))
    table = pq.read_table(files[-1], columns=["customer_id"]) if files else None
    if table is None or table.num_rows == 0:
        raise SystemExit(f"no materialised features under {world / 'features'}")
    return str(table.column("customer_id")[0])


def _answered(port: int, customer: str) -> bool:
    """True once POST /recommend answers 200 with a decision for `customer`."""
    import httpx

    body = {"customer_id": customer, "channel": "web", "k": 3, "context": {"page_category": "travel", "device": "mobile"}}
    try:
        answer = httpx.post(f"http://127.0.0.1:{port}/recommend", json=body, timeout=0.5,
                            headers={"Authorization": f"Bearer {KEY}"})
        return answer.status_code == 200 and answer.json().get("customer_id") == customer
    except (httpx.HTTPError, ValueError):
        return False


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and all its descendants now (the CLI's own time before it
    exec'd BentoML is counted in the same process)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
    except psutil.Error:
        return float("nan")
    return total


def one_start(world: Path, state_dir: Path, workers: int, compiled_wait_s: float, customer: str) -> dict[str, float | str]:
    """Start `nbo serve`, time its phases, stop it (SIGTERM to its process, which is BentoML's)."""
    port = free_port()
    env = {**os.environ, "NBO_API_KEYS": KEY}
    cmd = [*NBO, "serve", "--data", str(world / "data"), "--features", str(world / "features"),
           "--tracking-uri", f"sqlite:///{world / 'mlflow.db'}", "--store", str(state_dir / "contacts.db"),
           "--state-dir", str(state_dir), "--port", str(port), "--workers", str(workers)]
    lines: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready = None
    cpu = float("nan")
    try:
        while time.perf_counter() - t0 < 180 and proc.poll() is None:
            if _answered(port, customer):
                ready = time.perf_counter() - t0
                cpu = _cpu_seconds(proc.pid)
                break
            time.sleep(0.05)
        compiled = None
        deadline = time.perf_counter() + compiled_wait_s
        while ready is not None and time.perf_counter() < deadline:
            done = [t for t, line in lines if "now score with" in line or "compiled; " in line]
            if len(done) >= workers:
                compiled = max(done[:workers])
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)

    def first(pattern: str) -> float | None:
        return next((t for t, line in lines if re.search(pattern, line)), None)

    handed = first(r"nbo service on http")
    worker = first(r"start: loading")
    engines = [t for t, line in lines if re.search(r"ready in [0-9.]+ s \(engine", line)]
    worker_said = [m.group(0) for _, line in lines if (m := re.search(r"ready in [0-9.]+ s \(engine.*", line))]
    if ready is None:
        tail = "\n".join(line for _, line in lines[-15:])
        raise SystemExit(f"the service did not become ready:\n{tail}")
    return {
        "cli_checks_s": handed or float("nan"),
        "bentoml_start_s": (worker - handed) if worker and handed else float("nan"),
        "worker_init_s": (min(engines) - worker) if engines and worker else float("nan"),
        "ready_s": ready,
        "cpu_s": cpu,
        "compiled_s": compiled if compiled is not None else float("nan"),
        "worker": worker_said[0] if worker_said else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, help="a demo world (nbo demo --no-serve --dir DIR); default: build one")
    parser.add_argument("--runs", type=int, default=3, help="starts: the first with a new state directory")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compiled-wait", type=float, default=120.0,
                        help="seconds to wait after readiness for the background compilation (first start)")
    args = parser.parse_args()
    print(f"hardware: {hardware()}")
    scratch = Path(tempfile.mkdtemp(prefix="nbo-bench-startup-"))
    try:
        world = args.world.resolve() if args.world else build_world(scratch / "world")
        state = scratch / "state"
        customer = a_customer(world)
        print(f"{'start':<28} {'CLI checks':>10} {'BentoML':>8} {'worker':>7} {'ready':>7} {'CPU':>7} {'compiled':>9} {'load':>5}")
        results = []
        for run in range(args.runs):
            label = "1st (new state dir)" if run == 0 else f"{run + 1}. (compiled forests cached)"
            load = os.getloadavg()[0]
            r = one_start(world, state, args.workers, args.compiled_wait if run == 0 else 10.0, customer)
            results.append(r)
            print(f"{label:<28} {r['cli_checks_s']:>9.1f}s {r['bentoml_start_s']:>7.1f}s {r['worker_init_s']:>6.1f}s "
                  f"{r['ready_s']:>6.1f}s {r['cpu_s']:>6.1f}s {r['compiled_s']:>8.1f}s {load:>5.1f}   worker: {r['worker']}")
        med = {k: statistics.median(float(r[k]) for r in results)
               for k in ("cli_checks_s", "bentoml_start_s", "worker_init_s", "ready_s", "cpu_s")}
        print(f"{'median of ' + str(len(results)):<28} {med['cli_checks_s']:>9.1f}s {med['bentoml_start_s']:>7.1f}s "
              f"{med['worker_init_s']:>6.1f}s {med['ready_s']:>6.1f}s {med['cpu_s']:>6.1f}s")
        print(f"first /recommend answered in {med['ready_s']:.1f} s (median of {len(results)}; target < {TARGET_S:.0f} s: "
              f"{'met' if med['ready_s'] < TARGET_S else 'NOT met'}), {med['cpu_s']:.1f} CPU s; "
              f"load average now {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Small seeded builders shared by the serving tests."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

DAY = 86_400.0


def make_offers(rows: Sequence[dict]) -> pd.DataFrame:
    """An offers frame like `nbo.data` produces; missing columns get harmless defaults."""
    defaults = {
        "name": "offer",
        "category": "cat",
        "kind": "cross_sell",
        "channels": ("web", "app", "email", "sms", "push", "mail"),
        "value": 10.0,
        "cost": 0.0,
        "valid_from": pd.Timestamp("2020-01-01"),
        "valid_to": pd.Timestamp("2030-01-01"),
        "eligibility": None,
    }
    frame = pd.DataFrame([{**defaults, **r} for r in rows])
    frame["valid_from"] = pd.to_datetime(frame["valid_from"])
    frame["valid_to"] = pd.to_datetime(frame["valid_to"])
    return frame


def max_in_window(times: Sequence[float], days: float) -> int:
    """The largest number of events (epoch seconds) in any window (t - days, t]: what a cap bounds."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - days * DAY:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def kill_process_tree(pid: int) -> list[int]:
    """SIGKILL a process and every descendant, all at once; returns the pids killed.

    BentoML's supervisor starts each worker in a session of its own, so `killpg` on the
    supervisor's group leaves the workers running (orphaned, still serving on the inherited
    socket). "kill -9 of the service" means all of them.
    """
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)
    return [p.pid for p in procs]


# ------------------------------------------------------------------------------ real servers
#: How long a test waits for `nbo serve` to answer /readyz. A quiet 2-core machine needs 30-45 s;
#: at load average 6-8 it took 2-3 times that. The deadline only bounds a hung start.
READY_TIMEOUT_S = 300.0


#: Where test servers' ports are drawn: below Linux's usual ephemeral range (32768-60999), so no
#: outgoing connection of the tests (HTTP clients, Redis, Spark) takes a port between the moment it
#: is chosen and the moment the server binds it.
TEST_PORTS = (10000, 32767)


def free_port() -> int:
    """A port of 127.0.0.1 free now, for a server a test starts. Drawn from `TEST_PORTS`, in a
    slice of its own for each pytest-xdist worker (`make test` runs two), so two workers starting
    servers at once never pick the same port; the kernel's choice (bind to 0) if the machine's
    ephemeral range overlaps it or nothing in the slice is free."""
    import os
    import random
    import socket

    lo, hi = TEST_PORTS
    try:
        ephemeral_lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])  # noqa: SIM115
    except (OSError, ValueError, IndexError):
        ephemeral_lo = hi + 1
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    me = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % workers
    span = (hi - lo + 1) // workers
    start = lo + me * span
    if start + span <= ephemeral_lo:
        for port in random.sample(range(start, start + span), min(50, span)):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, every: float = 0.05):  # noqa: ANN001, ANN201
    """Poll `predicate` until it returns a true value (returned); fail the test after `timeout` s.

    For conditions, not for pacing: the deadline is generous on purpose (a loaded machine is
    slow, not wrong); where a deadline is itself the promise, the test asserts it separately.
    """
    import time

    import pytest

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def start_nbo_serve(world, work, store: str, *extra: str, env: dict[str, str], workers: int = 2,  # noqa: ANN001
                    name: str = "server", cwd=None):  # noqa: ANN001, ANN201
    """`nbo serve` in a subprocess on a free port of 127.0.0.1, simulated clock at the test NOW.

    Returns `(url, proc, log, port)` once /readyz answers 200. The supervisor runs in a session
    of its own (`kill_process_tree` stops it and its workers).
    """
    import subprocess
    import sys
    import time

    import httpx
    import pandas as pd
    import pytest

    from tests.serving.test_engine import NOW

    port = free_port()
    log = work / f"{name}-{port}.log"
    _seed_compiled(world, work / "state" / "compiled")
    cmd = [sys.executable, "-m", "cli", "serve", "--data", str(world.data), "--features", str(world.features),
           "--tracking-uri", world.tracking_uri, "--store", store, "--port", str(port), "--workers", str(workers),
           "--state-dir", str(work / "state"), "--clock-start", pd.Timestamp(NOW).isoformat(), *extra]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd or work,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return url, proc, log, port
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            kill_process_tree(proc.pid)
            pytest.fail(f"nbo serve did not become ready:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.25)


def _seed_compiled(world, cache) -> None:  # noqa: ANN001
    """Copy the forests an in-process engine compiled for this world (`World.settings`' cache) into
    a server's own cache, so its workers load them instead of each test's server spending seconds
    of LLVM behind the test's back. Files are named by the hash of the model's text: a server of
    other models compiles as before, and a forest from the cache is checked against its booster."""
    import shutil

    shared = getattr(world, "root", None)
    if shared is None or not (shared / "compiled").is_dir() or cache.exists():
        return
    cache.mkdir(parents=True)
    for forest in (shared / "compiled").glob("forest-*.bin"):
        shutil.copyfile(forest, cache / forest.name)


def stop_nbo_serve(proc) -> None:  # noqa: ANN001
    """SIGTERM (BentoML's graceful stop), then SIGKILL of the whole tree if it hangs."""
    import subprocess

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            kill_process_tree(proc.pid)  # still our child (not reaped): the pid is not reused

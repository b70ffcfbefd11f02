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
    psutil.wait_procs(procs, timeout=10)
    return [p.pid for p in procs]

"""The programmes' sweep inside `nbo serve` (`[programme_settings] sweep_every_minutes`): what a
cron would run (`nbo programmes run`, `serving.programmes.sweep`), every so many minutes, in a
thread of each worker, with one worker at a time doing it.

One at a time: before each run the worker takes (or renews) the contact store's lease `LEASE`
for 1.5 periods (`ContactStore.lease`: a row in SQLite, an expiring key in Redis), so every
worker and replica sharing the store tries, and one sweeps; when that worker stops, it gives the
lease up, and when it dies another takes over once the lease has run out. Two sweeps could never
fire a trigger twice anyway (the outbox claims); the lease saves doing the work twice.

Stopping: `stop()` wakes the thread, waits for a sweep in progress to end, and gives the lease
up; the service calls it before closing the engine. The clock and the wait are injected so the
loop is tested with a fake clock (no sleeping).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

log = logging.getLogger(__name__)

#: The name of the sweep's lease in the contact store.
LEASE = "programmes-sweep"


class Sweeper:
    """Calls `run(now)` every `every_s` seconds in a thread while holding the store's lease.

    `run`: the sweep (`serving.programmes.sweep` bound to an engine and its data); `store`: the
    contact store holding the lease; `now`: the service's clock (naive UTC) handed to `run`;
    `monotonic`, `wait(timeout) -> stopped?` and `wake()`: the loop's timer (default: the real
    ones; a test passes a fake clock's, whose `wake` ends a wait when stopping). `runs` counts the sweeps this worker did, `skipped` the periods
    another worker held the lease."""

    def __init__(self, run: Callable[[datetime], Sequence[object]], store: object, every_s: float,
                 now: Callable[[], datetime], *, monotonic: Callable[[], float] = time.monotonic,
                 wait: Callable[[float], bool] | None = None, wake: Callable[[], None] | None = None) -> None:
        if every_s <= 0:
            raise ValueError(f"every_s must be > 0, got {every_s}")
        self.run, self.store, self.every_s, self.now = run, store, every_s, now
        self.monotonic = monotonic
        self._stop = threading.Event()
        self.wait = wait if wait is not None else self._stop.wait
        self.wake = wake  # wakes an injected `wait` when stopping (the default wait is the stop event's)
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.runs = 0
        self.skipped = 0
        self.failures = 0
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run_once(self) -> Sequence[object] | None:
        """One period: the sweep if this worker holds the lease (the rows it wrote), else None."""
        try:
            if not self.store.lease(LEASE, self.owner, 1.5 * self.every_s):  # type: ignore[attr-defined]
                self.skipped += 1
                return None
            self.runs += 1
            rows = self.run(self.now())
        except Exception:  # noqa: BLE001 - the loop survives; the next period retries (claims: nothing twice)
            self.failures += 1
            log.exception("programmes sweep failed; the next one retries")
            return None
        if rows:
            log.info("programmes sweep: %d outbox row(s)", len(rows))
        return rows

    def _loop(self) -> None:
        due = self.monotonic() + self.every_s
        while not self._stop.is_set():
            if self.wait(max(0.0, due - self.monotonic())) or self._stop.is_set():
                break
            if self.monotonic() < due:
                continue
            due = self.monotonic() + self.every_s
            self.run_once()

    def start(self) -> Sweeper:
        """Start the thread (daemon: it never holds a process up); returns self."""
        self._thread = threading.Thread(target=self._loop, name="nbo-programmes-sweep", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the loop, wait up to `timeout` s for a sweep in progress, give the lease up.
        Returns True when the thread has ended."""
        self._stop.set()
        if self.wake is not None:
            self.wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        ended = thread is None or not thread.is_alive()
        if ended:
            try:
                self.store.release(LEASE, self.owner)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a store down at shutdown: the lease runs out by itself
                log.warning("programmes sweep: the lease could not be given up (it expires by itself)")
        return ended

"""What a worker knows about its own health: the contact store's last known state for `/readyz`
(`StoreHealth`), and the watch that stops a worker whose supervisor died. See docs/service.md §2.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable

log = logging.getLogger("nbo.service")

#: How often a worker checks that its supervisor (BentoML's arbiter) still lives, and how long it
#: waits for its own graceful shutdown before it exits regardless (docs/service.md §2).
SUPERVISOR_CHECK_S = 0.5
ORPHAN_GRACE_S = 5.0
#: What /readyz trusts without asking the store again: the outcome of a store call this recent.
STORE_FRESH_S = 1.0
#: The customer id /readyz reads from the store when it has to ask (never a real id: nothing found).
PROBE_ID = "__nbo_readiness_probe__"


class StoreHealth:
    """What this worker last learned about the contact store, from its own calls or from a probe.

    `/readyz` trusts the outcome of a store call made in the last `fresh_s` seconds (the answers
    under traffic say it already); otherwise it asks the store (`probe`, a read bounded by
    `--store-timeout`) in a thread, one probe at a time, so an idle worker also tells the truth.
    """

    def __init__(self, probe: Callable[[], object], errors: tuple[type[BaseException], ...], fresh_s: float = STORE_FRESH_S) -> None:
        self.probe = probe
        self.errors = errors
        self.fresh_s = fresh_s
        self.ok_at = time.monotonic()
        self.failed_at = 0.0
        self.cause = ""
        self._lock = asyncio.Lock()

    def ok(self) -> None:
        self.ok_at = time.monotonic()

    def failed(self, cause: str) -> None:
        self.failed_at = time.monotonic()
        if cause != "backoff" or not self.cause:  # `backoff` = not tried: keep the real cause
            self.cause = cause

    def _known(self) -> tuple[bool, str | None]:
        now = time.monotonic()
        if self.failed_at > self.ok_at:
            return now - self.failed_at < self.fresh_s, f"contact store unavailable ({self.cause}): decisions are answered degraded, without offers"
        return now - self.ok_at < self.fresh_s, None

    async def unready_cause(self) -> str | None:
        fresh, cause = self._known()
        if fresh:
            return cause
        async with self._lock:
            fresh, cause = self._known()  # another probe may have just answered
            if fresh:
                return cause
            try:
                await asyncio.to_thread(self.probe)
            except self.errors as exc:
                self.failed(f"probe: {type(exc).__name__}")
            else:
                self.ok()
        return self._known()[1]


def watch_supervisor(parent: int, check_s: float = SUPERVISOR_CHECK_S, grace_s: float = ORPHAN_GRACE_S) -> None:
    """Exit this worker when its supervisor is gone (`kill -9` of BentoML's arbiter).

    The supervisor starts each worker in a session of its own, so its death does not reach the
    workers: orphans would keep answering on the inherited socket while a new `nbo serve` on the
    port fails. The worker asks itself to stop (SIGTERM: uvicorn's graceful shutdown finishes the
    requests in flight, the store is closed), and exits after `grace_s` if that did not happen.
    """
    while os.getppid() == parent:
        time.sleep(check_s)
    log.error("supervisor (pid %d) is gone: this worker (pid %d) stops", parent, os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    os._exit(3)

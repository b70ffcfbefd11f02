"""The in-service sweep (serving/sweeper.py): once per period on a fake clock (no sleeping: the
test waits on the loop's own conditions), one worker at a time through the store's lease (SQLite
file and a real redis-server), surviving a failing sweep, stopping cleanly."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from serving.sweeper import LEASE, Sweeper

T0 = datetime(2025, 9, 1, 10, 0)


class FakeClock:
    """A monotonic clock the test advances; `wait` blocks until the clock passes its deadline or
    the sweeper stops (`wake`). `waits` counts the waits begun (the loop is idle when it grows)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.waits = 0
        self.woken = False
        self.cond = threading.Condition()

    def monotonic(self) -> float:
        with self.cond:
            return self.t

    def wait(self, timeout: float) -> bool:
        with self.cond:
            deadline = self.t + timeout
            self.waits += 1
            self.cond.notify_all()
            assert self.cond.wait_for(lambda: self.t >= deadline or self.woken, timeout=30), "never woken"
            return self.woken

    def wake(self) -> None:
        with self.cond:
            self.woken = True
            self.cond.notify_all()

    def advance(self, seconds: float) -> None:
        with self.cond:
            self.t += seconds
            self.cond.notify_all()

    def idle(self, waits: int) -> None:
        """Wait until the loop has begun its `waits`-th wait."""
        with self.cond:
            assert self.cond.wait_for(lambda: self.waits >= waits, timeout=30), f"the loop did not reach wait {waits}"


def _sweeper(store, clock: FakeClock, run, every_s: float = 60.0) -> Sweeper:  # noqa: ANN001
    moments = iter(T0 + timedelta(minutes=i) for i in range(1000))
    return Sweeper(run, store, every_s, lambda: next(moments), monotonic=clock.monotonic, wait=clock.wait,
                   wake=clock.wake)


def test_the_loop_sweeps_once_per_period_and_stops_cleanly(make_store) -> None:  # noqa: ANN001
    store = make_store()
    clock = FakeClock()
    seen: list[datetime] = []
    sweeper = _sweeper(store, clock, lambda now: seen.append(now) or ["row"]).start()
    clock.idle(1)
    clock.advance(59.0)  # not due yet: the wait goes on, nothing runs
    assert seen == [] and clock.waits == 1
    clock.advance(1.0)
    clock.idle(2)
    assert seen == [T0] and sweeper.runs == 1
    clock.advance(60.0)
    clock.idle(3)
    assert seen == [T0, T0 + timedelta(minutes=1)]
    # the lease is this worker's while it runs: another owner is refused
    assert not store.lease(LEASE, "someone-else", 60.0)
    assert sweeper.stop(timeout=10)
    assert sweeper.runs == 2 and len(seen) == 2
    # given up on stopping: another worker takes it at once
    assert store.lease(LEASE, "someone-else", 60.0)


def test_one_worker_at_a_time_through_the_lease(make_store) -> None:  # noqa: ANN001
    store = make_store()
    ran: list[str] = []
    a = _sweeper(store, FakeClock(), lambda now: ran.append("a") or [])
    b = _sweeper(store, FakeClock(), lambda now: ran.append("b") or [])
    assert a.run_once() == [] and b.run_once() is None and a.run_once() == []
    assert ran == ["a", "a"] and (a.runs, b.runs, b.skipped) == (2, 0, 1)
    a.stop()  # never started: gives the lease up all the same
    assert b.run_once() == [] and ran == ["a", "a", "b"]
    assert a.run_once() is None  # now b's


def test_a_failing_sweep_leaves_the_loop_running(make_store) -> None:  # noqa: ANN001
    store = make_store()
    calls: list[int] = []

    def run(now: datetime) -> list[str]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("store hiccup")
        return ["row"]

    clock = FakeClock()
    sweeper = _sweeper(store, clock, run).start()
    for i in range(2):
        clock.idle(i + 1)
        clock.advance(60.0)
    clock.idle(3)
    assert (sweeper.runs, sweeper.failures, len(calls)) == (2, 1, 2)
    assert sweeper.stop(timeout=10)


def test_a_lease_runs_out(make_store) -> None:  # noqa: ANN001
    store = make_store()
    if make_store.backend == "redis":
        assert store.lease("job", "a", 30.0)
        assert 0 < store.client.pttl(f"{store.prefix}:lease:job") <= 30_000  # expires by itself
        return
    assert store.lease("job", "a", 0.0)  # held until now: run out at once
    assert store.lease("job", "b", 60.0) and not store.lease("job", "a", 60.0)
    store.release("job", "a")  # not a's: b keeps it
    assert not store.lease("job", "a", 60.0)


def test_a_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every_s"):
        Sweeper(lambda now: [], object(), 0.0, datetime.now)

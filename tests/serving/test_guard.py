"""`serving.guard.Batcher`: how the worker's micro-batches of /recommend form (no server: a fake
recommender records each turn)."""

from __future__ import annotations

import asyncio

import pytest

from serving import guard
from serving.api_models import RecommendRequest


class _Recorder:
    """Stands for `Recommender.decide_blocks`: records each turn's blocks, answers the customer id."""

    def __init__(self) -> None:
        self.turns: list[list[list[str]]] = []

    def decide_blocks(self, blocks: list[list[RecommendRequest]]) -> list[list[str]]:
        self.turns.append([[r.customer_id for r in block] for block in blocks])
        return [[r.customer_id for r in block] for block in blocks]


def _request(cid: str, channel: str = "web") -> RecommendRequest:
    return RecommendRequest(customer_id=cid, channel=channel, k=3)


async def _later(turns: int) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    rec = _Recorder()
    monkeypatch.setitem(guard.WORKER, "recommender", rec)
    return rec


def test_at_low_load_a_request_is_decided_on_the_next_turn(recorder: _Recorder) -> None:
    async def run() -> None:
        batcher = guard.Batcher(32, defer_turns=3)
        first = batcher.submit(_request("a"))
        await _later(1)  # the next turn of the loop decides it: nothing waited for
        assert first.done() and first.result() == "a"
        second = batcher.submit(_request("b"))
        await _later(1)
        assert second.done()

    asyncio.run(run())
    assert recorder.turns == [[["a"]], [["b"]]]


def test_under_load_a_turn_waits_for_requests_a_few_loop_turns_behind(recorder: _Recorder) -> None:
    async def run() -> list[str]:
        batcher = guard.Batcher(32, defer_turns=3)
        busy = [batcher.submit(_request(c)) for c in ("a", "b")]  # a turn of two: the worker is under load
        await _later(1)
        assert all(f.done() for f in busy)
        early = batcher.submit(_request("c"))
        await _later(2)  # still in the middlewares when `c` arrived: joins c's turn
        late = batcher.submit(_request("d", "app"))
        await _later(3)
        await asyncio.wait_for(asyncio.gather(early, late), 1)  # bounded: answered without more requests
        return [early.result(), late.result()]

    assert asyncio.run(run()) == ["c", "d"]
    assert recorder.turns == [[["a", "b"]], [["c"], ["d"]]]  # one turn, a block per channel


def test_without_deferral_the_late_request_makes_a_turn_of_its_own(recorder: _Recorder) -> None:
    async def run() -> None:
        batcher = guard.Batcher(32, defer_turns=0)
        busy = [batcher.submit(_request(c)) for c in ("a", "b")]
        await _later(1)
        early = batcher.submit(_request("c"))
        await _later(2)
        late = batcher.submit(_request("d"))
        await asyncio.wait_for(asyncio.gather(*busy, early, late), 1)

    asyncio.run(run())
    assert recorder.turns == [[["a", "b"]], [["c"]], [["d"]]]


def test_a_full_turn_is_not_deferred(recorder: _Recorder) -> None:
    async def run() -> None:
        batcher = guard.Batcher(2, defer_turns=3)
        await asyncio.gather(*(batcher.submit(_request(c)) for c in ("a", "b")))
        futures = [batcher.submit(_request(c)) for c in ("c", "d")]  # max_size already pending
        await _later(1)
        assert all(f.done() for f in futures)

    asyncio.run(run())
    assert recorder.turns == [[["a", "b"]], [["c", "d"]]]

"""serving/heap.py: freed memory the allocator kept goes back to the OS (glibc's malloc_trim)."""

from __future__ import annotations

import gc
import platform

import pytest

from serving.heap import release_freed_memory, settle_heap


def _anonymous_mb() -> float:
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Anonymous:")) / 1024


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_freed_memory_kept_by_the_allocator_goes_back_to_the_os() -> None:
    # ~160 MB in 2 kB blocks (malloc, not Python's small-object allocator), then all but every
    # 64th freed: the holes stay inside the heap, which glibc does not shrink by itself.
    blocks = [bytes(2048) for _ in range(80_000)]
    kept = blocks[::64]
    del blocks
    gc.collect()
    held = _anonymous_mb()
    assert release_freed_memory()
    assert held - _anonymous_mb() > 80, "malloc_trim(0) gave back less than half of what was freed"
    assert len(kept) == 1_250


def test_settle_heap_freezes_what_is_alive() -> None:
    gc.unfreeze()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()

"""A worker's heap after a phase that allocated a lot and freed most of it (start-up, a model swap).

`settle_heap` freezes what is alive (`gc.freeze`: garbage-collector passes then skip the loaded
tables and models, which keeps the latency tail short: docs/service.md) and hands the pages of
freed memory back to the operating system (`malloc_trim(0)`, glibc).

Why the second step: glibc's allocator keeps freed memory for later allocations, and a start-up
frees much of what it allocated (reading the data, loading the champions, compiling them with
LLVM). Measured on the demo world (issue 22 item 6, 2026-12-07): the worker that compiled the
champions held ~115 MB of freed pages that nothing would reuse (anonymous memory 668 -> 553 MB
after one `malloc_trim(0)`); the other worker ~5 MB. One call costs milliseconds and runs at the
start and at each model swap, never per request. On a C library without `malloc_trim` (musl,
macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc


@functools.cache
def _malloc_trim() -> object | None:
    """glibc's `malloc_trim`, or None when the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Return the freed pages the allocator keeps to the OS (`malloc_trim(0)`); False when it cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)  # type: ignore[operator]
    return True


def settle_heap() -> None:
    """`gc.freeze()` what is alive, then `release_freed_memory()`: once a start-up or a model swap is done."""
    gc.freeze()
    release_freed_memory()

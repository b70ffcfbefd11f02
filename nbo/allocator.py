"""How glibc's allocator treats the large arrays of a batch job (scoring chunks, training-set pieces).

`keep_freed_memory` lets glibc keep freed blocks up to 256 MB in the heap for the next allocation
instead of unmapping them: a chunk or a piece makes many arrays of tens of MB, and glibc serves
blocks over 32 MB with mmap and unmaps them when freed, so every chunk page-faults and zeroes its
arrays again (system CPU). Called at the start of a batch process (`nbo score`'s driver and pool
workers, Spark's Python workers, `nbo train`), never at import.
"""

from __future__ import annotations

import ctypes
import functools

#: Freed blocks up to this size stay in the process's heap for the next chunk.
REUSE_BYTES = 256 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc keep freed chunk-sized blocks for reuse instead of unmapping them at once.

    Measured: scoring 200,000 customers (one process) took 42.3 s CPU of which 11.0 s system, and
    33.8 s (4.3 s system) with freed blocks up to 256 MB kept in the heap (docs/batch.md); the
    propensity training set of a 10,000-customer world 31.3 s CPU (7.7 s system) and 26.4 s (3.0 s)
    (docs/training.md). Other C libraries: nothing changes. Returns whether the setting was applied.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, REUSE_BYTES)) and bool(libc.mallopt(m_trim_threshold, REUSE_BYTES))
    except (OSError, AttributeError):
        return False

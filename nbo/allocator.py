"""How glibc's allocator treats the large arrays of a batch job (scoring chunks, training-set pieces).

`keep_freed_memory` lets glibc keep freed blocks up to 256 MB in the heap for the next allocation
instead of unmapping them: a chunk or a piece makes many arrays of tens of MB, and glibc serves
blocks over 32 MB with mmap and unmaps them when freed, so every chunk page-faults and zeroes its
arrays again (system CPU). Called at the start of a batch process (`nbo score`'s driver and pool
workers, Spark's Python workers, `nbo train`), never at import.

`freeze_startup_objects` takes what a batch process built at its start (modules, the engine) out
of Python's cyclic garbage collector, which otherwise walks them again at every full collection.
"""

from __future__ import annotations

import ctypes
import functools
import gc

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


@functools.cache
def freeze_startup_objects() -> int:
    """Move every object alive now (imported modules, MLflow's and scikit-learn's, the engine, its
    catalogue and consents book) to the collector's permanent generation (`gc.freeze`).

    A batch process allocates millions of short-lived containers per run (reservation requests,
    plan rows), so the collector runs often, and each full collection walked the whole start-up
    heap again: measured, reserving 40 chunks of 2,000 customers took 29.4-30.6 us of CPU per
    customer with the collector as it was, 21.3-21.8 us after this call (19.4-20.9 us with the
    collector off), and planning chunks in a worker 72-75 -> 66-67 us (docs/batch.md, session 13).
    The collector stays on for everything made afterwards; frozen objects are still freed by
    reference counting. Called once per process (later calls return the first count), once it has built its engine.
    """
    gc.collect()  # what start-up left as garbage goes now, not never
    gc.freeze()
    return gc.get_freeze_count()

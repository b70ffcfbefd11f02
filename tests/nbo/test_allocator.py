"""nbo/allocator.py: with `keep_freed_memory`, a 64 MB array comes from the heap (where a freed one
stays for reuse), not from a mapping of its own that is unmapped when it is freed."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CODE = """
import ctypes, sys
import numpy as np
from nbo.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
block = np.ones(8 << 20)  # 64 MB
print(applied, libc.mallinfo2().hblkhd)  # bytes in blocks mapped on their own
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt and mallinfo2")
def test_large_arrays_come_from_the_heap() -> None:
    def mapped(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True, check=True).stdout.split()
        return out[0], int(out[1])

    applied, kept = mapped("keep")
    _, default = mapped("default")
    assert applied == "True"
    assert default >= 64 << 20  # glibc's default: a block of its own, unmapped when freed
    assert kept < 64 << 20


FREEZE = """
import gc
from nbo.allocator import freeze_startup_objects
held = [[i] for i in range(50_000)]  # containers alive at start-up
before = len(gc.get_objects())
count = freeze_startup_objects()
print(before, count, len(gc.get_objects()), gc.isenabled(), freeze_startup_objects() == count)
"""


def test_startup_objects_leave_the_collector() -> None:
    """What was alive at the call is no longer walked by the collector, which stays on."""
    before, frozen, tracked, enabled, once = subprocess.run(
        [sys.executable, "-c", FREEZE], capture_output=True, text=True, check=True).stdout.split()
    assert int(frozen) >= 50_000 and int(before) >= 50_000
    assert int(tracked) < 1_000  # the collector tracks (almost) nothing made before the call
    assert enabled == "True" and once == "True"

"""One worker at a time loads at start-up, so the first answers as soon as it can.

Why: on a start, each BentoML worker imports pandas, scikit-learn and LightGBM, reads the data and
the features and loads the champions: ~4 s of CPU each on the demo world. Run side by side on a
busy 2-core machine, the two workers share the processor and both are ready late; one after the
other, the first is ready in about half the time and the second follows (benchmarks/bench_startup.py,
docs/service.md "Start-up time"). The turn is a lock on a file of the state directory, which the
kernel releases when its holder exits (a worker that dies while loading does not block the next).
A worker waits at most `wait_s`, then loads anyway (the turn only orders work, it guards nothing).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: The lock file under the service's state directory.
TURN_FILE = "startup.lock"
#: Longest wait for the turn (s): a worker that is slower than this does not hold the others back.
DEFAULT_WAIT_S = 60.0


@contextlib.contextmanager
def loading_turn(state_dir: Path, wait_s: float = DEFAULT_WAIT_S, poll_s: float = 0.05) -> Iterator[bool]:
    """Hold the start-up turn of `state_dir` for the body; yields whether the turn was had (False:
    waited `wait_s` in vain, or the lock file cannot be opened: the body runs anyway)."""
    try:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(Path(state_dir) / TURN_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        log.warning("start-up turn unavailable (%s): loading without it", exc.strerror or exc)
        yield False
        return
    try:
        deadline = time.monotonic() + wait_s
        had = False
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                had = True
                break
            except BlockingIOError:
                if not waited:
                    log.info("start: waiting for another worker to finish loading")
                    waited = True
                if time.monotonic() >= deadline:
                    log.warning("start: another worker still loading after %.0f s; loading now", wait_s)
                    break
                time.sleep(poll_s)
        yield had
    finally:
        os.close(fd)  # releases the lock

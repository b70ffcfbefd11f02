"""Run every `benchmarks/bench_*.py` in turn, each in its own process, and report failures.

    python -m benchmarks                 # all of them, default sizes (except the opt-in ones)
    python -m benchmarks simulator ranking   # a selection, by name
    python -m benchmarks soak            # opt-in: 10 minutes of load (docs/reliability.md §8)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Run only when named: the soak holds the machine for 10 minutes of load, too long for `make bench`.
OPT_IN = {"soak"}


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    else:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") not in OPT_IN]
    failed = []
    for script in scripts:
        print(f"\n===== {script.stem} =====", flush=True)
        began = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        print(f"===== {script.stem}: exit {code} in {time.perf_counter() - began:.0f} s", flush=True)
        if code:
            failed.append(script.stem)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What every benchmark prints first: the hardware its figures were measured on."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> str:
    """One line: CPU model, cores, Python version, and the load average when known."""
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}{load}"

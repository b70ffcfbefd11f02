"""What-if: a draft of `policy.toml` against the policy in force, in the closed-loop simulator.

The draft is read by the one typed loader (`serving.policy.parse_policy`): a bad draft is its
error line and nothing runs. A good one runs as a job in a process of its own
(`python -m console.whatif_job DIR`, lower CPU priority), so a simulation never holds a worker of
the service: the page shows the job's phase and refreshes itself until the comparison is there.

Bounded: at most `MAX_CUSTOMERS` simulated customers for `MAX_DAYS` days, one job at a time per
service (a lock file under the work directory, shared by the workers), killed after `TIMEOUT_S`.
Jobs live under `<state dir>/console/whatif/<job id>/`; the newest `KEEP_JOBS` are kept.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nbo.errors import ConfigError
from serving.policy import ContactPolicy, parse_policy
from serving.service_config import KEYS_ENV, KEYS_FILE_ENV

MAX_CUSTOMERS = 400
MAX_DAYS = 60
TIMEOUT_S = 300.0
KEEP_JOBS = 20
MAX_DRAFT_CHARS = 12_000
JOB_ID = re.compile(r"[0-9a-f]{16}")


class WhatIfRequest(BaseModel):
    """What the what-if form sends (validated: a wrong field is named, nothing runs)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    draft: str = Field(min_length=1, max_length=MAX_DRAFT_CHARS)
    #: `simulate`: the closed loop on simulated customers; `ope`: off-policy estimates of both
    #: policies with the champion on the service's own logged decisions (the last `OPE_DAYS` days).
    method: Literal["simulate", "ope"] = "simulate"
    scorer: Literal["oracle", "nbo"] = "oracle"
    customers: int = Field(200, ge=50, le=MAX_CUSTOMERS)
    days: int = Field(30, ge=7, le=MAX_DAYS)
    seed: int = Field(0, ge=0, le=1_000_000)


def check_draft(text: str) -> ContactPolicy:
    """The draft as a `ContactPolicy`, or `ConfigError` with the loader's message (key or line)."""
    return parse_policy(text, "draft")


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: Literal["running", "done", "failed", "unknown"]
    phase: str
    elapsed_s: float
    error: str | None = None
    result: dict | None = None
    chart: str | None = None  # SVG data URI


class WhatIfJobs:
    """Start what-if jobs and read their state from their directories (any worker can read any job)."""

    def __init__(self, root: Path, timeout_s: float = TIMEOUT_S, python: str = sys.executable) -> None:
        self.root = Path(root)
        self.timeout_s = timeout_s
        self.python = python

    def _dir(self, job_id: str) -> Path:
        if not JOB_ID.fullmatch(job_id):
            raise KeyError(job_id)
        return self.root / job_id

    def start(self, request: WhatIfRequest, current_toml: str, data_dir: Path | None = None,
              tracking_uri: str | None = None) -> str:
        """Check the draft, then start its job; raises ConfigError (bad draft) or RuntimeError (busy).
        `data_dir` and `tracking_uri` (the service's) are where an `ope` job reads logged decisions
        and the champion."""
        check_draft(request.draft)
        parse_policy(current_toml, "the policy in force")
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            running = [j for j in self._job_ids() if self.status(j).state == "running"]
            if running:
                raise RuntimeError(f"a what-if is already running ({running[0]}): wait for it to finish")
            job_id = secrets.token_hex(8)
            work = self.root / job_id
            work.mkdir()
            (work / "draft.toml").write_text(request.draft, encoding="utf-8")
            (work / "current.toml").write_text(current_toml, encoding="utf-8")
            (work / "request.json").write_text(request.model_dump_json(exclude={"draft"}), encoding="utf-8")
            (work / "service.json").write_text(json.dumps({"data_dir": str(data_dir) if data_dir else None,
                                                           "tracking_uri": tracking_uri}), encoding="utf-8")
            log = open(work / "job.log", "wb")  # noqa: SIM115 - handed to the child
            env = {k: v for k, v in os.environ.items() if k not in (KEYS_ENV, KEYS_FILE_ENV)}  # a job needs no key
            proc = subprocess.Popen(
                [self.python, "-m", "console.whatif_job", str(work)], stdout=log, stderr=subprocess.STDOUT, env=env,
                stdin=subprocess.DEVNULL, start_new_session=True, cwd=Path(__file__).resolve().parents[1],
                preexec_fn=lambda: os.nice(10),  # noqa: PLW1509 - no threads of ours touch it
            )
            log.close()
            (work / "pid").write_text(f"{proc.pid} {time.time():.3f}", encoding="utf-8")
        self._prune()
        return job_id

    def _job_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if p.is_dir() and JOB_ID.fullmatch(p.name)]

    def _prune(self) -> None:
        jobs = sorted(self._job_ids(), key=lambda j: (self.root / j).stat().st_mtime, reverse=True)
        for job_id in jobs[KEEP_JOBS:]:
            if self.status(job_id).state != "running":
                shutil.rmtree(self.root / job_id, ignore_errors=True)

    def status(self, job_id: str) -> JobStatus:
        """The job's state; a job past its time limit is stopped here and reported failed."""
        work = self._dir(job_id)
        if not (work / "pid").exists():
            raise KeyError(job_id)
        pid_text, _, started = (work / "pid").read_text(encoding="utf-8").partition(" ")
        elapsed = time.time() - float(started or time.time())
        if (work / "result.json").exists():
            result = json.loads((work / "result.json").read_text(encoding="utf-8"))
            chart = (work / "chart.txt").read_text(encoding="ascii") if (work / "chart.txt").exists() else None
            return JobStatus(job_id, "done", "done", result.get("elapsed_s", elapsed), result=result, chart=chart)
        if (work / "error.txt").exists():
            return JobStatus(job_id, "failed", "failed", elapsed, error=(work / "error.txt").read_text(encoding="utf-8"))
        phase = (work / "phase.txt").read_text(encoding="utf-8") if (work / "phase.txt").exists() else "starting"
        alive = _alive(int(pid_text))
        if alive and elapsed > self.timeout_s:
            _stop(int(pid_text))
            (work / "error.txt").write_text(f"stopped after {self.timeout_s:.0f} s (limit)", encoding="utf-8")
            return JobStatus(job_id, "failed", phase, elapsed, error=f"stopped after {self.timeout_s:.0f} s (limit)")
        if not alive:
            # The process ended without a result or an error file: it was killed or crashed.
            return JobStatus(job_id, "failed", phase, elapsed, error="the what-if process ended without a result")
        return JobStatus(job_id, "running", phase, elapsed)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap our own child, if it is ours
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of another worker's child counts as ended
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _stop(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the job runs in a session (and group) of its own
    except (ProcessLookupError, PermissionError):
        pass


__all__ = ["MAX_CUSTOMERS", "MAX_DAYS", "ConfigError", "JobStatus", "WhatIfJobs", "WhatIfRequest", "check_draft"]

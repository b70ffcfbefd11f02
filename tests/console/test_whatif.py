"""What-if jobs without the simulator: the time limit, a crashed job, job ids, one job at a time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from console.whatif import WhatIfJobs, WhatIfRequest
from nbo.errors import ConfigError

POLICY = "[caps]\nemail = { max = 2, days = 7 }\n"


def _fake_python(tmp_path: Path, body: str) -> str:
    """A stand-in for `python -m console.whatif_job DIR` (the arguments are ignored)."""
    script = tmp_path / "fake-python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def _wait(jobs: WhatIfJobs, job_id: str, timeout: float = 20.0):  # noqa: ANN202
    deadline = time.monotonic() + timeout
    while (status := jobs.status(job_id)).state == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return status


def test_a_job_past_its_limit_is_stopped(tmp_path: Path) -> None:
    jobs = WhatIfJobs(tmp_path / "jobs", timeout_s=0.5, python=_fake_python(tmp_path, "sleep 60"))
    job_id = jobs.start(WhatIfRequest(draft=POLICY), POLICY)
    assert jobs.status(job_id).state == "running"
    with pytest.raises(RuntimeError, match="already running"):
        jobs.start(WhatIfRequest(draft=POLICY), POLICY)
    time.sleep(0.8)
    status = _wait(jobs, job_id)
    assert status.state == "failed" and "stopped after" in (status.error or "")
    pid = int((tmp_path / "jobs" / job_id / "pid").read_text().split()[0])
    time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
    # the slot is free again
    assert jobs.start(WhatIfRequest(draft=POLICY), POLICY)


def test_a_job_that_dies_is_reported(tmp_path: Path) -> None:
    jobs = WhatIfJobs(tmp_path / "jobs", python=_fake_python(tmp_path, "exit 3"))
    status = _wait(jobs, jobs.start(WhatIfRequest(draft=POLICY), POLICY))
    assert status.state == "failed" and "without a result" in (status.error or "")


def test_a_bad_draft_starts_nothing(tmp_path: Path) -> None:
    jobs = WhatIfJobs(tmp_path / "jobs", python=_fake_python(tmp_path, "exit 0"))
    with pytest.raises(ConfigError, match="draft"):
        jobs.start(WhatIfRequest(draft="[caps\n"), POLICY)
    assert not (tmp_path / "jobs").exists() or not list((tmp_path / "jobs").iterdir())


@pytest.mark.parametrize("job_id", ["", "../x", "0" * 15, "0" * 17, "ABCDEF0123456789", "0" * 16])
def test_unknown_or_malformed_job_ids(tmp_path: Path, job_id: str) -> None:
    jobs = WhatIfJobs(tmp_path / "jobs")
    with pytest.raises(KeyError):
        jobs.status(job_id)


def test_a_job_gets_no_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBO_API_KEYS", "secret-key-000000000000")
    jobs = WhatIfJobs(tmp_path / "jobs", python=_fake_python(tmp_path, 'env > "$3/env.txt"'))
    job_id = jobs.start(WhatIfRequest(draft=POLICY), POLICY)
    _wait(jobs, job_id)
    env = (tmp_path / "jobs" / job_id / "env.txt").read_text()
    assert "NBO_API_KEYS" not in env and "secret-key" not in env

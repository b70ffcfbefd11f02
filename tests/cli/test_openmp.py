"""`nbo train` sets OpenMP's passive wait policy before LightGBM or scikit-learn loads its OpenMP."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli._app import passive_openmp


def test_passive_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    passive_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a user's choice is kept
    passive_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_cli_loads_no_openmp_library_before_the_command_runs() -> None:
    """libgomp reads the variable when it is loaded: importing the CLI must not load LightGBM or
    scikit-learn (both bring one), or the train command would set it too late."""
    code = ("import sys, cli; "
            "print(sorted(m for m in ('lightgbm', 'sklearn') if m in sys.modules)); "
            "print(sum('libgomp' in line for line in open('/proc/self/maps')))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "0"

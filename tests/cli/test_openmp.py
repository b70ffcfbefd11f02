"""`nbo train` shortens OpenMP's spin before LightGBM or scikit-learn loads its OpenMP."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli._app import OPENMP_SPIN_COUNT, short_openmp_spin


def test_short_spin_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    short_openmp_spin()
    assert os.environ["GOMP_SPINCOUNT"] == OPENMP_SPIN_COUNT
    monkeypatch.setenv("GOMP_SPINCOUNT", "1000")  # a user's choice is kept
    short_openmp_spin()
    assert os.environ["GOMP_SPINCOUNT"] == "1000"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # so is a wait policy (it sets its own spin)
    short_openmp_spin()
    assert "GOMP_SPINCOUNT" not in os.environ


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

"""`nbo score` and `nbo serve` check the Redis store's persistence at start (issue 19 item 12).

Against the session's private redis-server, which runs with `--save "" --appendonly no` (the
`redis_port` fixture): a restart of it would forget every cap counter. Through the real command
(`python -m cli`, a subprocess): exit status 2 and one `error:` line without the flag; with
`--accept-volatile-redis` a warning line, and the command proceeds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.serving.test_engine import NOW, World, build_world

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory)


@pytest.fixture
def volatile_url(redis_port: int) -> str:
    client = redis.Redis(port=redis_port, decode_responses=True)
    got = {k: v for name in ("appendonly", "save") for k, v in client.config_get(name).items()}
    client.close()
    assert got == {"appendonly": "no", "save": ""}, f"the test's redis-server is not volatile: {got}"
    return f"redis://127.0.0.1:{redis_port}/0"


def _nbo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=env)


def _score_args(world: World, out: Path, url: str) -> list[str]:
    return ["score", "--data", str(world.data), "--features", str(world.features), "--tracking-uri", world.tracking_uri,
            "--as-of", NOW.isoformat(), "--channel", "email", "--out", str(out), "--store", url, "--no-progress",
            "--dry-run"]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_score_refuses_a_redis_without_persistence(world: World, volatile_url: str, tmp_path: Path) -> None:
    out = tmp_path / "offers.parquet"
    done = _nbo(*_score_args(world, out, volatile_url))
    assert done.returncode == 2, done.stderr
    lines = _lines(done.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "no persistence" in lines[0] and "--accept-volatile-redis" in lines[0]
    assert not out.exists() and not list(tmp_path.iterdir()), "nothing is written before the refusal"


def test_score_accepts_it_with_the_flag_and_warns(world: World, volatile_url: str, tmp_path: Path) -> None:
    out = tmp_path / "offers.parquet"
    done = _nbo(*_score_args(world, out, volatile_url), "--accept-volatile-redis")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in _lines(done.stderr) if "WARNING" in line and "no persistence" in line]
    assert len(warnings) == 1, done.stderr
    assert "error:" not in done.stderr
    assert out.exists() and "dry run, nothing reserved" in done.stdout


def test_serve_refuses_a_redis_without_persistence(world: World, volatile_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "NBO_API_KEYS": "serve-persistence-test-key-0123"}
    with socket.socket() as taken:  # a port nobody else can bind: should nbo start BentoML, it fails at once
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = _nbo("serve", "--data", str(world.data), "--features", str(world.features), "--tracking-uri",
                    world.tracking_uri, "--store", volatile_url, "--port", str(taken.getsockname()[1]),
                    "--state-dir", str(tmp_path / "state"), env=env)
    assert done.returncode == 2, done.stderr
    lines = _lines(done.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "--accept-volatile-redis" in lines[0]

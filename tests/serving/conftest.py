"""Fixtures for serving tests: a real redis-server on a free port, fresh stores per test."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from serving.contact_store import ContactStore, RedisContactStore, SQLiteContactStore
from tests.serving.helpers import free_port


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A private redis-server (never the system one on 6379), skipped with a reason if missing."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server binary not found on PATH (apt-get install redis-server); Redis tests skipped")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    client.close()
    yield port
    proc.terminate()
    proc.wait(timeout=10)


StoreFactory = Callable[..., ContactStore]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of fresh, isolated stores of one backend (a new file / a new key prefix each call)."""
    made: list[ContactStore] = []
    port = request.getfixturevalue("redis_port") if request.param == "redis" else None

    def factory(horizon_days: int = 90) -> ContactStore:
        if port is None:
            store: ContactStore = SQLiteContactStore(tmp_path / f"{uuid.uuid4().hex}.db", horizon_days=horizon_days)
        else:
            client = redis.Redis(port=port, decode_responses=True)
            store = RedisContactStore(client, prefix=f"t{uuid.uuid4().hex[:12]}", horizon_days=horizon_days)
        made.append(store)
        return store

    factory.backend = request.param  # type: ignore[attr-defined]
    yield factory
    for store in made:
        store.close()

"""The Redis store refuses a server that would lose every cap on a restart (issue 19 item 12).

Against private redis-servers: the suite's one (`redis_port`: `--save "" --appendonly no`) and
one of this module's own, whose settings the tests change with CONFIG SET.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from nbo.errors import ConfigError
from serving.contact_store import RedisContactStore, check_persistence
from tests.serving.helpers import free_port

pytestmark = pytest.mark.redis


def _start(args: list[str], workdir: Path) -> tuple[subprocess.Popen, int]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server binary not found on PATH (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server {args} did not start on port {port}")
            time.sleep(0.05)
    client.close()
    return proc, port


@pytest.fixture(scope="module")
def aof_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A private redis-server with the append-only file on (fsync every second, Redis' default)."""
    proc, port = _start(["--appendonly", "yes", "--save", ""], tmp_path_factory.mktemp("redis-aof"))
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, decode_responses=True)


def test_a_server_without_persistence_is_refused(redis_port: int) -> None:
    client = _client(redis_port)
    with pytest.raises(ConfigError) as info:
        check_persistence(client)
    msg = str(info.value)
    assert "no persistence" in msg and "appendonly yes" in msg and "--accept-volatile-redis" in msg
    with pytest.raises(ConfigError):
        RedisContactStore(client, prefix="p-refused").check_persistence()


def test_accepting_a_volatile_server_warns(redis_port: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="serving.contact_store.redis_store"):
        p = RedisContactStore(_client(redis_port), prefix="p-accepted").check_persistence(accept_volatile=True)
    assert p is not None and p.volatile
    assert any("no persistence" in r.getMessage() for r in caplog.records)


def test_the_append_only_file_passes_quietly(aof_port: int, caplog: pytest.LogCaptureFixture) -> None:
    client = _client(aof_port)
    client.config_set("appendfsync", "everysec")
    with caplog.at_level(logging.WARNING, logger="serving.contact_store.redis_store"):
        p = check_persistence(client)
    assert p is not None and p.appendonly and not p.volatile
    assert "up to the last second" in p.describe()
    assert caplog.records == []
    client.config_set("appendfsync", "always")
    assert "nothing acknowledged" in check_persistence(client).describe()  # type: ignore[union-attr]


def test_weaker_settings_warn_and_none_at_all_is_refused(aof_port: int, caplog: pytest.LogCaptureFixture) -> None:
    client = _client(aof_port)
    try:
        client.config_set("appendfsync", "no")
        with caplog.at_level(logging.WARNING, logger="serving.contact_store.redis_store"):
            assert check_persistence(client) is not None
        assert any("appendfsync no" in r.getMessage() for r in caplog.records)
        caplog.clear()
        client.config_set("appendonly", "no")
        client.config_set("save", "900 1")
        with caplog.at_level(logging.WARNING, logger="serving.contact_store.redis_store"):
            p = check_persistence(client)
        assert p is not None and not p.volatile and not p.appendonly
        assert any("snapshots only" in r.getMessage() for r in caplog.records)
        client.config_set("save", "")
        with pytest.raises(ConfigError, match="no persistence"):
            check_persistence(client)
    finally:
        client.config_set("save", "")
        client.config_set("appendonly", "yes")
        client.config_set("appendfsync", "everysec")


def test_a_server_that_hides_config_cannot_be_checked_and_says_so(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    proc, port = _start(["--save", "", "--appendonly", "no", "--rename-command", "CONFIG", ""], tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="serving.contact_store.redis_store"):
            assert check_persistence(_client(port)) is None
        assert any("cannot read the Redis persistence settings" in r.getMessage() for r in caplog.records)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_server_that_cannot_be_reached_cannot_be_checked_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    client = redis.Redis(port=port, socket_connect_timeout=1, decode_responses=True)
    with caplog.at_level(logging.WARNING, logger="serving.contact_store.redis_store"):
        assert check_persistence(client) is None
    assert any("ConnectionError" in r.getMessage() for r in caplog.records)

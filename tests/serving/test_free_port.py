"""The test servers' ports: free, below the ephemeral range, and a slice of their own for each
pytest-xdist worker, so two workers starting servers at once never collide."""

from __future__ import annotations

import socket

import pytest

from tests.serving.helpers import TEST_PORTS, free_port


def _ephemeral_low() -> int:
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])  # noqa: SIM115
    except OSError:
        pytest.skip("no /proc/sys/net/ipv4/ip_local_port_range: the kernel picks the port")


@pytest.mark.parametrize("worker", [0, 1])
def test_each_worker_draws_from_its_own_half(worker: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if _ephemeral_low() <= TEST_PORTS[1]:
        pytest.skip("this machine's ephemeral range overlaps the test ports: the kernel picks them")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
    lo, hi = TEST_PORTS
    half = (hi - lo + 1) // 2
    for _ in range(20):
        port = free_port()
        assert lo + worker * half <= port < lo + (worker + 1) * half
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free: a server can take it


def test_a_taken_port_is_not_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    if _ephemeral_low() <= TEST_PORTS[1]:
        pytest.skip("this machine's ephemeral range overlaps the test ports: the kernel picks them")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "1000")  # a slice of 22 ports
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    held = []
    try:
        for _ in range(10):
            s = socket.socket()
            s.bind(("127.0.0.1", free_port()))
            s.listen()
            held.append(s)
        ports = {s.getsockname()[1] for s in held}
        assert len(ports) == 10
    finally:
        for s in held:
            s.close()

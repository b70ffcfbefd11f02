"""The composition `nbo serve` starts: the API service with the console mounted once at /console."""

from __future__ import annotations

import importlib

from cli.serve import CONSOLE_TARGET, SERVICE_TARGET, service_command
from serving.session import CONSOLE_PATH, PUBLIC_CONSOLE_PATHS


def test_the_console_is_mounted_once() -> None:
    import console.service

    importlib.reload(console.service)  # BentoML imports the target more than once per process tree
    mounts = [path for _, path, _ in console.service.Recommender.mount_apps]
    assert mounts.count(CONSOLE_PATH) == 1


def test_nbo_serve_starts_the_console_unless_told_not_to() -> None:
    assert CONSOLE_TARGET in service_command("127.0.0.1", 3000)
    assert SERVICE_TARGET in service_command("127.0.0.1", 3000, console=False)
    assert CONSOLE_TARGET == "console.service:Recommender"


def test_the_guard_and_the_console_agree_on_the_public_paths() -> None:
    from console.app import PUBLIC_ROUTES

    assert PUBLIC_CONSOLE_PATHS == {CONSOLE_PATH + route for route in PUBLIC_ROUTES}

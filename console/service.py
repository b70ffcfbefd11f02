"""`nbo serve`'s BentoML service: the API of `serving.service` with the console mounted at `/console`.

The console sits above serving (its what-if runs the closed loop of `evaluation`), so the service
module cannot import it; this module composes the two and is what `nbo serve` starts
(`cli.serve.SERVICE_TARGET`; `--no-console` starts `serving.service:Recommender` alone). Importing
it mounts the console on the service object, once per process (BentoML imports the target in its
supervisor and in every worker).

In a worker, the console decides with that worker's own engine (`bentoml.get_current_service()`
is the `Recommender` instance `/recommend` runs on): one engine, one pipeline.

The console application is built on its first request (`ConsoleOnFirstUse`), not when this module
is imported: BentoML's supervisor imports the module only to read the service's configuration, and
building the console there imported pandas and the data layer for nothing (~0.4 s of CPU on the
way to the first answer, benchmarks/bench_startup.py). In a worker the build takes ~0.05 s (pandas
is loaded by then).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bentoml

from serving.service import Recommender
from serving.service_config import load_api_keys
from serving.session import CONSOLE_PATH

if TYPE_CHECKING:
    from console.backend import ConsoleBackend

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ConsoleOnFirstUse:
    """An ASGI application that builds the console (`console.app.create_app`) when first called."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._app: Any = None

    @property
    def app(self) -> Any:
        """The console's application (built now if it was not yet)."""
        if self._app is None:  # no await between the test and the assignment: one build per process
            self._app = self._make()
        return self._app

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        await self.app(scope, receive, send)


def build_console() -> Any:
    """The console application over this worker's service (`backend_of_this_worker`)."""
    from console.app import create_app

    return create_app(backend_of_this_worker)


def backend_of_this_worker() -> ConsoleBackend:
    """The console's backend over the worker's running service (its engine, clock and state dir)."""
    from console.backend import ConsoleBackend

    service = bentoml.get_current_service()
    settings = service.settings
    return ConsoleBackend.from_engine(service.engine, load_api_keys(), settings.now,
                                      Path(settings.state_dir) / "console")


if not any(path == CONSOLE_PATH for _, path, _ in Recommender.mount_apps):
    # BentoML 1.4's documented way to serve an ASGI application beside a service (`bentoml.asgi_app`,
    # here applied to the service object `serving.service` defines).
    bentoml.asgi_app(ConsoleOnFirstUse(build_console), path=CONSOLE_PATH, name="console")(Recommender)

__all__ = ["Recommender"]

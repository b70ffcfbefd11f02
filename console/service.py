"""`nbo serve`'s BentoML service: the API of `serving.service` with the console mounted at `/console`.

The console sits above serving (its what-if runs the closed loop of `evaluation`), so the service
module cannot import it; this module composes the two and is what `nbo serve` starts
(`cli.serve.SERVICE_TARGET`; `--no-console` starts `serving.service:Recommender` alone). Importing
it mounts the console on the service object, once per process (BentoML imports the target in its
supervisor and in every worker).

In a worker, the console decides with that worker's own engine (`bentoml.get_current_service()`
is the `Recommender` instance `/recommend` runs on): one engine, one pipeline.
"""

from __future__ import annotations

from pathlib import Path

import bentoml

from console.app import create_app
from console.backend import ConsoleBackend
from serving.service import Recommender
from serving.service_config import load_api_keys
from serving.session import CONSOLE_PATH


def backend_of_this_worker() -> ConsoleBackend:
    """The console's backend over the worker's running service (its engine, clock and state dir)."""
    service = bentoml.get_current_service()
    settings = service.settings
    return ConsoleBackend.from_engine(service.engine, load_api_keys(), settings.now,
                                      Path(settings.state_dir) / "console")


if not any(path == CONSOLE_PATH for _, path, _ in Recommender.mount_apps):
    # BentoML 1.4's documented way to serve an ASGI application beside a service (`bentoml.asgi_app`,
    # here applied to the service object `serving.service` defines).
    bentoml.asgi_app(create_app(backend_of_this_worker), path=CONSOLE_PATH, name="console")(Recommender)

__all__ = ["Recommender"]

"""The `nbo` command line: one Typer app, one module per group of subcommands.

Every subcommand turns an `NboError` into a one-line message on stderr and exit status 2: users
see what is wrong with their input, never a traceback.
"""

from __future__ import annotations

from cli._app import app, main

# Importing a module registers its commands on `app`.
from cli import data as _data  # noqa: E402,F401
from cli import training as _training  # noqa: E402,F401
from cli import demo as _demo  # noqa: E402,F401
from cli import simulate as _simulate  # noqa: E402,F401
from cli import features as _features  # noqa: E402,F401
from cli import serve as _serve  # noqa: E402,F401
from cli import score as _score  # noqa: E402,F401
from cli import evaluate as _evaluate, simulate_policies as _simulate_policies  # noqa: E402,F401
from cli import privacy as _privacy  # noqa: E402,F401
from cli import ingest as _ingest  # noqa: E402,F401
from cli import lift as _lift  # noqa: E402,F401
from cli import programmes as _programmes  # noqa: E402,F401

__all__ = ["app", "main"]

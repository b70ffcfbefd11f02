"""The Typer application and the error boundary shared by all subcommands."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from nbo.errors import NboError

app = typer.Typer(
    name="nbo",
    help="nbo - next-best-offer: for this person, now, on this channel, which offer (or none).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

P = ParamSpec("P")
R = TypeVar("R")


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Report `NboError` as one line on stderr with exit status 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except NboError as exc:
            # One line whatever the message holds (a library's text may carry newlines).
            typer.echo("error: " + " ".join(str(exc).split()), err=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(code=130) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"nbo {version('nbo')}")
        raise typer.Exit()


@app.callback()
def _configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug detail."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print nbo's version and exit."),
) -> None:
    """Configure logging once, at the edge (never at import time).

    Exit status of every command: 0 done; 1 ran, but its verdict is negative (a challenger not
    promoted because it is worse, an off-policy gate that failed); 2 bad input or configuration
    (one line on stderr); 130 interrupted."""
    configure_logging(verbose)


#: One log format for every line nbo, MLflow and Python's warnings write in a CLI run, the shape of
#: BentoML's (what `nbo serve` writes): `2026-12-07T10:34:01+0000 [INFO] [training.train] ...`.
LOG_FORMAT = "%(asctime)s [%(levelname)s] [%(name)s] %(message)s"
LOG_DATEFMT = "%Y-%m-%dT%H:%M:%S%z"
#: Third-party loggers that MLflow gives a handler of their own (their own format): routed to ours
#: instead, at WARNING (MLflow's INFO lines are about its own database tables); MLflow's at DEBUG
#: with --verbose.
ROUTED_LOGGERS = ("mlflow", "alembic", "sqlalchemy", "huey")


def configure_logging(verbose: bool = False) -> None:
    """One format for the whole run (docs: README "Logs"). MLflow configures its loggers when it is
    imported unless `MLFLOW_CONFIGURE_LOGGING=false`; set for this process and the ones it starts
    (`nbo serve`'s workers), and undone for loggers configured already. MLflow's usage telemetry
    (an HTTPS request to mlflow-telemetry.io from every run) is off unless the user turned it on."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT,
                        stream=sys.stderr)
    for name in ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        routed.handlers.clear()
        routed.propagate = True
        # --verbose shows MLflow's detail, never the database's (SQL statements, migrations).
        routed.setLevel(logging.DEBUG if verbose and name == "mlflow" else logging.WARNING)
    logging.captureWarnings(True)  # a library's warning is a log line too, in the same format


def passive_openmp() -> None:
    """OpenMP threads that find no work sleep at once instead of spinning first (OMP_WAIT_POLICY=PASSIVE,
    unless set). Call before LightGBM or scikit-learn is imported: each copy of libgomp reads the
    variable when it is loaded.

    LightGBM's fit crosses an OpenMP barrier in every parallel loop; with the default policy a
    thread that arrives first spins there, burning a core, while the other thread waits for one
    on a busy machine. A 305k-row propensity fit on 2 threads took 52.7 s CPU / 107 s wall with
    the default and 15.7 s / 33 s passive (1 thread: 14.5 s / 30.5 s), same trees (load average
    ~8 on 2 cores; docs/training.md)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    """Entry point for `python -m cli`."""
    app()

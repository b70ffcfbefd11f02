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


#: Iterations an idle OpenMP thread spins before it sleeps (libgomp's default: 300,000).
OPENMP_SPIN_COUNT = "30000"


def short_openmp_spin() -> None:
    """Idle OpenMP threads spin 30,000 iterations before sleeping instead of libgomp's 300,000
    (GOMP_SPINCOUNT, unless the user set it or OMP_WAIT_POLICY). Call before LightGBM or
    scikit-learn is imported: each copy of libgomp reads the variable when it is loaded.

    LightGBM's fit crosses an OpenMP barrier in every parallel loop; a thread that arrives first
    spins there. On a busy machine the other thread is often descheduled and every barrier burns a
    core: a 305k-row fit on 2 threads at load ~8 took 52.7 s CPU / 107 s wall with the default and
    15.7 s / 33 s with OMP_WAIT_POLICY=PASSIVE. But passive costs a quiet machine: 300k x 100
    synthetic rows, 150 rounds, 2 threads, load ~1.5: default 8.3-8.8 s wall, passive 9.8-10.6 s,
    30,000 spins 8.8 s; with three busy processes beside it: default 50.9 s, 30,000 spins 33.3 s,
    passive 26.2 s (docs/training.md). 30,000 keeps the quiet speed and most of the busy gain;
    libomp (macOS) ignores the variable."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)


def main() -> None:
    """Entry point for `python -m cli`."""
    app()

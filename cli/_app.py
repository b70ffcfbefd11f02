"""The Typer application and the error boundary shared by all subcommands."""

from __future__ import annotations

import functools
import logging
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
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main() -> None:
    """Entry point for `python -m cli`."""
    app()

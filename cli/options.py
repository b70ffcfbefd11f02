"""Parsing of options shared by several commands."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import typer

from nbo.errors import NboError
from nbo.ledger import DEFAULT_LEDGER

#: `--ledger`: where commands record the files they write that hold personal data (`nbo.ledger`),
#: and where `nbo export` / `nbo forget` look for them.
LEDGER_OPTION = typer.Option(
    DEFAULT_LEDGER, "--ledger", envvar="NBO_LEDGER",
    help="Ledger of files nbo wrote with personal data (nbo forget reaches them through it).",
)


def parse_as_of(text: str, option: str = "--as-of") -> pd.Timestamp:
    """An ISO-8601 date or timestamp; a timezone is converted to UTC, a naive value is UTC."""
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        raise NboError(f"{option} {text!r} is not an ISO-8601 date or timestamp") from None
    if ts is pd.NaT:
        raise NboError(f"{option} is empty")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("ns")


def check_out(path: Path, suffixes: tuple[str, ...] | None, option: str = "--out") -> Path:
    """An output file that can be written: the right suffix, not a directory, in a writable
    directory. Checked before any work, so a bad `--out` costs nothing and leaves nothing."""
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise NboError(f"{option} {path.name!r} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise NboError(f"{option} {path} is a directory; give a file name")
    parent = path.parent
    if not parent.exists():  # a typo in a folder name must not silently create a new tree
        raise NboError(f"{option}: directory {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise NboError(f"{option}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NboError(f"{option}: directory {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise NboError(f"{option} {path} exists and is not writable")
    return path


def check_engine(engine: str, master: str | None, remote: str | None) -> None:
    """`--engine pandas|spark` with its Spark options (`--master` or `--remote`, for spark only)."""
    if engine not in ("pandas", "spark"):
        raise NboError(f"--engine {engine!r} is not pandas or spark")
    if engine == "pandas" and (master or remote):
        raise NboError("--master and --remote are for --engine spark")
    if master and remote:
        raise NboError("give --master or --remote, not both")

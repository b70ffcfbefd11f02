"""Errors that nbo reports to a user, as opposed to bugs.

The CLI turns any `NboError` into one clear line on stderr and exit status 2, with no traceback;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class NboError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class DataError(NboError):
    """A data file breaks the data contract (see docs/data.md)."""

    def __init__(self, table: str, message: str, column: str | None = None) -> None:
        self.table = table
        self.column = column
        where = f"{table}.{column}" if column else table
        super().__init__(f"{where}: {message}")


class ConfigError(NboError):
    """A configuration or policy file is invalid; the message names the key or line."""

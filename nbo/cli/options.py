"""Parsing of options shared by several commands."""

from __future__ import annotations

import pandas as pd

from nbo.errors import NboError


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

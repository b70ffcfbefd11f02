"""Live input: what callers tell the service while it runs (issue 22): consent changes
(`POST /consents`) and, later, events (`POST /events`, `nbo ingest`).

Checked here, before anything is written: the time of a change must lie within
[now - `max_past_days`, now + `max_skew_s`] (a clock a few minutes ahead is tolerated; a change
from the future, or years old, is a caller's mistake), and the customer must be one of the data's
customers and not erased. A refusal is a `LiveInputError` naming the field, answered as a 4xx.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nbo.errors import NboError


class LiveInputError(NboError):
    """Live input refused (nothing written): `field` names what was wrong; `status` the HTTP answer."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.status = status


@dataclass(frozen=True)
class LiveLimits:
    """How far from the service's clock a live change's time may lie."""

    max_past_days: float = 365.0
    max_skew_s: float = 300.0


def check_time(field: str, ts: datetime, now: datetime, limits: LiveLimits) -> None:
    """Refuse (`LiveInputError`, 422) a naive-UTC `ts` after `now + max_skew_s` or before
    `now - max_past_days`."""
    if ts > now + timedelta(seconds=limits.max_skew_s):
        raise LiveInputError(field, f"in the future (more than {limits.max_skew_s:g} s after the service's clock)")
    if ts < now - timedelta(days=limits.max_past_days):
        raise LiveInputError(field, f"more than {limits.max_past_days:g} days in the past")


def utc_time(field: str, ts: datetime) -> datetime:
    """`ts` as naive UTC (naive = UTC already); `LiveInputError` when the conversion leaves the
    calendar (`9999-12-31T23:00-05:00`)."""
    if ts.tzinfo is None:
        return ts
    try:
        return ts.astimezone(UTC).replace(tzinfo=None)
    except (OverflowError, ValueError):
        raise LiveInputError(field, "out of range once converted to UTC") from None

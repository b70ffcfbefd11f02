"""Quiet hours at minute precision (issue 19 item 13): `start` inclusive, `end` exclusive, UTC."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from serving.policy import QuietHours


def _at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2026, 3, 2, hh, mm, ss)


WRAPPING = QuietHours(channels=("sms",), start="21:30", end="08:15")


@pytest.mark.parametrize(("t", "quiet"), [
    (_at(21, 0), False), (_at(21, 15), False), (_at(21, 29), False), (_at(21, 29, 59), False),
    (_at(21, 30), True), (_at(21, 31), True), (_at(23, 59, 59), True), (_at(0, 0), True),
    (_at(8, 0), True), (_at(8, 14), True), (_at(8, 14, 59), True), (_at(8, 15), False), (_at(8, 16), False),
    (_at(12, 0), False),
])
def test_a_window_that_wraps_midnight(t: datetime, quiet: bool) -> None:
    assert WRAPPING.is_quiet("sms", t) is quiet
    assert WRAPPING.is_quiet("email", t) is False  # channels not listed are never quiet


DAYTIME = QuietHours(channels=("push",), start="13:30", end="14:45")


@pytest.mark.parametrize(("t", "quiet"), [
    (_at(13, 0), False), (_at(13, 29), False), (_at(13, 30), True), (_at(14, 0), True), (_at(14, 44), True),
    (_at(14, 44, 59), True), (_at(14, 45), False), (_at(14, 46), False), (_at(15, 30), False), (_at(0, 0), False),
])
def test_a_window_within_one_day(t: datetime, quiet: bool) -> None:
    assert DAYTIME.is_quiet("push", t) is quiet


@pytest.mark.parametrize("t", [_at(0, 0), _at(9, 30), _at(9, 31), _at(23, 59)])
def test_start_equal_to_end_is_never_quiet(t: datetime) -> None:
    assert QuietHours(start="09:30", end="09:30").is_quiet("sms", t) is False


def test_one_minute_windows() -> None:
    q = QuietHours(start="23:59", end="00:00")
    assert [q.is_quiet("sms", _at(23, m)) for m in (58, 59)] == [False, True]
    assert q.is_quiet("sms", _at(0, 0)) is False
    q = QuietHours(start="00:00", end="00:01")
    assert [q.is_quiet("sms", _at(0, 0)), q.is_quiet("sms", _at(0, 1)), q.is_quiet("sms", _at(23, 59))] == [True, False, False]


@pytest.mark.parametrize("text", ["00:00", "23:59", "9:05", "07:00"])
def test_valid_times(text: str) -> None:
    QuietHours(start=text)


@pytest.mark.parametrize("text", ["24:00", "23:60", "21:5", "21:055", "2130", "21-30", ":30", "21:", "-1:30",
                                  "21:3a", "ab:cd", ""])
def test_invalid_times_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="HH:MM"):
        QuietHours(start=text)
    with pytest.raises(ValidationError, match="HH:MM"):
        QuietHours(end=text)

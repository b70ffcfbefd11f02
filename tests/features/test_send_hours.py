"""Engagement hours (features/send_hours.py): exact counts, local hours, point in time."""

from __future__ import annotations

import pandas as pd
import pytest

from features.send_hours import HOUR_COLUMNS, engagement_hours

AS_OF = pd.Timestamp("2026-03-30 00:00")


def _events(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [r[0] for r in rows], "ts": pd.to_datetime([r[1] for r in rows]),
                         "type": [r[2] for r in rows]})


EVENTS = _events([
    ("a", "2026-03-01 19:05", "page_view"), ("a", "2026-03-01 19:40", "purchase"),  # one slot
    ("a", "2026-03-02 19:10", "search"), ("a", "2026-03-03 08:00", "store_visit"),
    ("a", "2026-03-04 20:00", "complaint"),  # not engagement
    ("b", "2026-03-28 18:30", "page_view"),  # 19:30 in Paris (CET), 20:30 after the change... see below
    ("b", "2026-03-29 18:30", "page_view"),  # CEST from 29 March 01:00 UTC: 20:30 local
    ("c", "2025-06-01 12:00", "page_view"),  # outside the 180-day window
])


def test_exact_counts_of_distinct_day_hour_slots() -> None:
    out = engagement_hours(EVENTS, AS_OF)
    assert list(out.columns) == list(HOUR_COLUMNS)
    assert sorted(out.index) == ["a", "b"]
    assert out.loc["a", "engaged_h19"] == 2 and out.loc["a", "engaged_h08"] == 1 and out.loc["a"].sum() == 3
    assert out.loc["b", "engaged_h18"] == 2


def test_local_hours_follow_daylight_saving() -> None:
    out = engagement_hours(EVENTS, AS_OF, timezones={"b": "Europe/Paris"})
    assert out.loc["b", "engaged_h19"] == 1 and out.loc["b", "engaged_h20"] == 1
    assert out.loc["a", "engaged_h19"] == 2  # customers without a zone stay in UTC


def test_point_in_time_events_at_or_after_as_of_change_nothing() -> None:
    before = engagement_hours(EVENTS, AS_OF)
    later = pd.concat([EVENTS, _events([("a", "2026-03-30 00:00", "purchase"), ("a", "2026-04-02 03:00", "page_view"),
                                        ("d", "2026-03-30 10:00", "page_view")])], ignore_index=True)
    pd.testing.assert_frame_equal(engagement_hours(later, AS_OF), before)


def test_online_one_customer_equals_batch() -> None:
    batch = engagement_hours(EVENTS, AS_OF, timezones={"b": "Europe/Paris"})
    one = engagement_hours(EVENTS[EVENTS["customer_id"] == "b"], AS_OF, timezones={"b": "Europe/Paris"})
    pd.testing.assert_frame_equal(one, batch.loc[["b"]])


def test_no_events_and_bad_window() -> None:
    assert engagement_hours(EVENTS.iloc[:0], AS_OF).shape == (0, 24)
    with pytest.raises(ValueError, match="window_days"):
        engagement_hours(EVENTS, AS_OF, window_days=0)

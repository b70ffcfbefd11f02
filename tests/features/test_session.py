"""The page and session of logged web/app exposures, rebuilt from the events just before them."""

from __future__ import annotations

import pandas as pd

from features.session import exposure_sessions
from tests.features.conftest import AS_OF, table

T = AS_OF + pd.Timedelta(hours=12)


def _ev(cid: str, minutes_before: float, category: str | None, channel: str = "web", etype: str = "page_view") -> dict:
    return {"customer_id": cid, "ts": T - pd.Timedelta(minutes=minutes_before), "type": etype,
            "category": category, "channel": channel}


def _exposures(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [c for c, _ in rows], "channel": [ch for _, ch in rows],
                         "ts": [T] * len(rows), "offer_id": ["o"] * len(rows)})


def test_page_and_session_categories_of_on_site_exposures() -> None:
    events = table("events", [
        _ev("a", 40, "home"),  # more than 30 minutes before: another session
        _ev("a", 20, "books"),
        _ev("a", 10, "travel", etype="search"),
        _ev("a", 5, "books", etype="product_view"),
        _ev("a", 1, None, etype="page_view"),  # no category: the page has none
        _ev("a", 2, "sports", channel="app"),  # another channel
        _ev("a", 0, "beauty"),  # at the exposure: not before it
        _ev("a", -1, "grocery"),  # after it
        _ev("b", 3, "fashion", channel="app"),
    ])
    exposures = _exposures([("a", "web"), ("a", "app"), ("a", "email"), ("b", "web"), ("b", "app"), ("z", "web")])
    out = exposure_sessions(events, exposures)
    assert list(out.index) == list(exposures.index)
    assert list(out["page_category"]) == [None, "sports", None, None, "fashion", None]
    assert list(out["session_categories"]) == [("books", "travel"), ("sports",), (), (), ("fashion",), ()]


def test_no_events_or_no_on_site_exposures() -> None:
    empty = table("events", [])
    exposures = _exposures([("a", "web"), ("a", "sms")])
    out = exposure_sessions(empty, exposures)
    assert list(out["page_category"]) == [None, None]
    assert list(out["session_categories"]) == [(), ()]

"""Request-context columns and the Context model (features/context.py, features/config.py)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from features import Context, build_candidate_features, build_customer_features
from tests.features.conftest import AS_OF
from tests.features.conftest import candidate_data as _data
from tests.features.conftest import candidate_rows as _candidates


def test_channel_habit_fits_the_channel_to_where_the_customer_shows_up() -> None:
    data = _data()
    customers = build_customer_features(data, AS_OF)
    share = customers.loc["a", "online_visit_share_365d"]
    for channel, expected in (("web", share), ("app", share), ("mail", 1 - share)):
        out = build_candidate_features(customers, data.offers, data.contacts, Context(channel=channel), AS_OF)
        assert out["ctx_channel_habit"].iloc[0] == pytest.approx(expected)
    email = build_candidate_features(customers, data.offers, data.contacts, Context(channel="email"), AS_OF)
    assert email["ctx_channel_habit"].isna().all()


def test_context_features() -> None:
    ctx = Context(channel="web", page_category="travel", session_categories=["books", "garden"], device="mobile")
    out = _candidates(ctx)
    trip, book, seed = out.loc[("a", "trip")], out.loc[("a", "book")], out.loc[("a", "seed")]
    assert trip["ctx_channel_code"] == 0 and trip["ctx_device_code"] == 1
    assert (trip["ctx_hour_of_day"], trip["ctx_day_of_week"]) == (0, 6)  # from as_of: Sunday midnight
    assert trip["ctx_session_length"] == 2
    assert (trip["ctx_page_category_match"], book["ctx_page_category_match"]) == (1, 0)
    assert (trip["ctx_session_category_match"], book["ctx_session_category_match"], seed["ctx_session_category_match"]) == (0, 1, 1)
    assert (trip["ctx_offer_on_channel"], book["ctx_offer_on_channel"], seed["ctx_offer_on_channel"]) == (1, 0, 1)
    given = _candidates(Context(channel="app", hour_of_day=13, day_of_week=2)).loc[("a", "book")]
    assert (given["ctx_hour_of_day"], given["ctx_day_of_week"], given["ctx_device_code"]) == (13, 2, 3)
    assert given["ctx_offer_on_channel"] == 1


def test_context_per_customer_and_none() -> None:
    out = _candidates({"a": Context(channel="email")})
    assert out.loc[("a", "trip2"), "ctx_channel_code"] == 2
    assert np.isnan(out.loc[("b", "trip2"), "ctx_channel_code"])  # no context for b
    none = _candidates(None)
    assert none[[c for c in none.columns if c.startswith("ctx_")]].isna().all().all()


def test_context_validation() -> None:
    with pytest.raises(ValidationError, match="channel"):
        Context(channel="fax")
    with pytest.raises(ValidationError):
        Context()  # channel is required
    with pytest.raises(ValidationError, match="session_categories"):
        Context(channel="web", session_categories=["x"] * 51)
    with pytest.raises(ValidationError, match="session_categories"):
        Context(channel="web", session_categories=["x" * 65])
    with pytest.raises(ValidationError, match="page_category"):
        Context(channel="web", page_category="x" * 65)
    with pytest.raises(ValidationError, match="hour_of_day"):
        Context(channel="web", hour_of_day=24)
    with pytest.raises(ValidationError, match="device"):
        Context(channel="web", device="watch")
    assert Context.model_validate({"channel": "sms"}).session_categories == []

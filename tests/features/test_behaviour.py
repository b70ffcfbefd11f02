"""Behaviour (features/behaviour.py): browsing, interest per category, visits and their rhythm, exact values."""

from __future__ import annotations

import numpy as np
import pytest

from features import NEVER_DAYS, build_customer_features
from tests.features.conftest import AS_OF, ago, dataset
from tests.features.conftest import buy_row as _buy
from tests.features.conftest import event_row as _ev


def test_behaviour_exact_values() -> None:
    c = "a"
    data = dataset(
        customers=[{"customer_id": c, "signup_ts": ago(200)}],
        events=[
            _ev(c, 3, "page_view", "travel"),
            _ev(c, 20, "page_view", "travel"),
            _ev(c, 2, "page_view", "garden"),  # undeclared: totals only
            _ev(c, 5, "product_view", None),  # empty: totals only
            _ev(c, 8, "search", "books"),
            _ev(c, 25, "add_to_cart", "fashion"),
            _buy(c, 20, 30.0, "fashion", "web"),  # after the fashion add: not abandoned
            _ev(c, 10, "add_to_cart", "home"),
            _buy(c, 15, 70.0, "home", "store"),  # before the home add: abandoned
            _ev(c, 5, "add_to_cart", "garden"),  # no purchase: abandoned
            _ev(c, 40, "add_to_cart", "travel"),  # outside 30 days
            _ev(c, 7, "add_to_cart", "sports"),
            _buy(c, 7, 0.0, "sports"),  # at the same moment as the add, not after it: abandoned
            _ev(c, 20, "store_visit", None, "store"),
            _ev(c, 60, "store_visit", None, "store"),
            _ev(c, 80, "complaint", None, "call_center"),
            _ev(c, 100, "call", None, "call_center"),  # outside 90 days
            _ev(c, 12, "page_view", "books", "app"),
        ],
    )
    f = build_customer_features(data, AS_OF).loc[c]
    expected = {
        "page_views_7d": 2,
        "page_views_30d": 4,
        "travel_page_views_7d": 1,
        "travel_page_views_30d": 2,
        "books_page_views_30d": 1,
        "product_views_7d": 1,
        "travel_product_views_7d": 0,
        "searches_7d": 0,
        "searches_30d": 1,
        "books_searches_30d": 1,
        "cart_adds_7d": 2,
        "cart_adds_30d": 4,
        "fashion_cart_adds_30d": 1,
        "home_cart_adds_7d": 0,
        "home_cart_adds_30d": 1,
        "travel_cart_adds_30d": 0,
        "abandoned_carts_30d": 3,
        "days_since_web_visit": 2,
        "days_since_app_visit": 12,
        "online_spend_share_365d": 0.3,
        "store_spend_share_365d": 0.7,
        "store_visits_30d": 1,
        "store_visits_90d": 2,
        "complaints_90d": 1,
        "calls_90d": 0,
        "fashion_purchases_30d": 1,
        "home_purchases_365d": 1,
    }
    assert {k: f[k] for k in expected} == pytest.approx(expected)


def test_long_run_views_and_days_since_activity() -> None:
    c, quiet = "a", "q"
    data = dataset(
        customers=[{"customer_id": c, "signup_ts": ago(500)}, {"customer_id": quiet, "signup_ts": ago(500)}],
        events=[
            _ev(c, 300, "page_view", "travel"),
            _ev(c, 200, "product_view", "travel"),
            _ev(c, 400, "page_view", "travel"),  # older than a year
            _ev(c, 100, "page_view", "books"),
            _ev(c, 50, "search", "books"),  # searches are not views
            _ev(c, 12, "store_visit", None, "store"),  # offline activity counts as activity
            _ev(c, -1, "page_view", "books"),  # after as_of: ignored
            _ev(quiet, 90, "complaint", None, "call_center"),
        ],
    )
    f = build_customer_features(data, AS_OF)
    assert f.loc[c, "travel_views_365d"] == 2
    assert f.loc[c, "books_views_365d"] == 1
    assert f.loc[c, "views_365d"] == 3
    assert f.loc[c, "days_since_activity"] == pytest.approx(12)
    assert f.loc[quiet, "days_since_activity"] == pytest.approx(90)
    assert f.loc[quiet, "views_365d"] == 0


def test_decayed_browsing_days_since_and_active_days() -> None:
    from features import build_candidate_features

    c, quiet = "a", "q"
    data = dataset(
        customers=[{"customer_id": c, "signup_ts": ago(500)}, {"customer_id": quiet, "signup_ts": ago(500)}],
        events=[
            _ev(c, 1, "page_view", "travel"),
            _ev(c, 3, "add_to_cart", "travel"),
            _ev(c, 3.5, "search", "travel"),  # same 24-hour period back from as_of as the cart add
            _ev(c, 7, "product_view", "books"),
            _buy(c, 20, 10.0, "books", "store"),
            _ev(c, 400, "page_view", "books"),  # older than a year: decays, not an active day in 365 d
            _ev(c, 6, "complaint", None, "call_center"),  # activity, but no category
            _ev(c, -1, "page_view", "travel"),  # after as_of: ignored
        ],
        offers=[{"offer_id": "t", "category": "travel"}, {"offer_id": "b", "category": "books"},
                {"offer_id": "g", "category": "garden"}],
    )
    f = build_customer_features(data, AS_OF)
    a = f.loc[c]
    assert a["travel_browse_hl1d"] == pytest.approx(0.5 + 0.5**3 + 0.5**3.5)
    assert a["travel_browse_hl3d"] == pytest.approx(0.5 ** (1 / 3) + 0.5 + 0.5 ** (3.5 / 3))
    assert a["books_browse_hl7d"] == pytest.approx(0.5 + 0.5 ** (400 / 7))  # purchases are not browsing
    assert a["travel_days_since_browse"] == pytest.approx(1)
    assert a["books_days_since_browse"] == pytest.approx(7)
    assert a["books_days_since_purchase"] == pytest.approx(20)
    assert a["travel_days_since_purchase"] == NEVER_DAYS
    assert (a["travel_active_days_365d"], a["books_active_days_365d"], a["home_active_days_365d"]) == (2, 2, 0)
    assert (a["active_days_30d"], a["active_days_365d"]) == (5, 5)  # days 1, 3, 6, 7, 20
    assert a["online_visit_share_365d"] == pytest.approx(3 / 4)  # web on days 1, 3, 7; store on day 20
    # silence (1 day) x active days (5) / days since the first event, capped at 365
    assert a["silence_score"] == pytest.approx(1 * 5 / 365)
    q = f.loc[quiet]
    assert (q["active_days_365d"], q["silence_score"], q["travel_browse_hl7d"], q["online_visit_share_365d"]) == (0, 0, 0, 0)
    assert q["travel_days_since_browse"] == NEVER_DAYS

    rows = build_candidate_features(f, data.offers, data.contacts, None, AS_OF)
    rows = rows[rows["customer_id"] == c].set_index("offer_id")
    assert rows.loc["t", "offer_cat_browse_hl1d"] == pytest.approx(a["travel_browse_hl1d"])
    assert rows.loc["b", "offer_cat_days_since_purchase"] == pytest.approx(20)
    assert rows.loc["t", "offer_cat_day_share_365d"] == pytest.approx(0.5)
    assert rows.loc["t", "offer_cat_day_share_smoothed_365d"] == pytest.approx(3 / 12)  # (2 + 1) / (4 + 8)
    assert rows.loc["g", "offer_cat_day_share_smoothed_365d"] == 0
    assert rows.loc["g", "offer_cat_days_since_browse"] == NEVER_DAYS  # undeclared category
    assert rows.loc["g", "offer_cat_browse_hl7d"] == 0
    assert rows.loc["g", "offer_cat_day_share_365d"] == 0


def test_silence_score_against_the_customers_own_rhythm() -> None:
    daily, monthly = "d", "m"
    events = [_ev(daily, 20 + i, "page_view", "books") for i in range(40)]  # 40 days in a row, silent for 20
    events += [_ev(monthly, 20 + 30 * i, "page_view", "books") for i in range(4)]  # monthly, silent for 20
    data = dataset(customers=[{"customer_id": daily, "signup_ts": ago(500)}, {"customer_id": monthly, "signup_ts": ago(500)}],
                   events=events)
    f = build_customer_features(data, AS_OF)
    assert f.loc[daily, "days_since_activity"] == f.loc[monthly, "days_since_activity"] == 20
    assert f.loc[daily, "silence_score"] == pytest.approx(20 * 40 / 59)
    assert f.loc[monthly, "silence_score"] == pytest.approx(20 * 4 / 110)
    # 40 active days, 11 of them in the last 30 days (ages 20-30), first seen 59 days ago
    assert f.loc[daily, "activity_trend_30d"] == pytest.approx((11 / 30) / (40 / 59))
    assert f.loc[monthly, "activity_trend_30d"] == pytest.approx((1 / 30) / (4 / 110))


def test_main_category_days_count_each_day_once_for_its_leading_category() -> None:
    c = "a"
    data = dataset(
        customers=[{"customer_id": c, "signup_ts": ago(500)}],
        events=[
            # day 1 (ages 1.1-1.9): three travel rows and a stray books view -> travel
            _ev(c, 1.1, "page_view", "travel"), _ev(c, 1.2, "product_view", "travel"),
            _ev(c, 1.3, "search", "travel"), _ev(c, 1.4, "product_view", "books"),
            # day 3: one books view, one home view -> tie, books is declared first
            _ev(c, 3.2, "page_view", "home"), _ev(c, 3.3, "page_view", "books"),
            # day 5: a store purchase of home and its visit (no category) -> home
            _ev(c, 5.5, "store_visit", None, "store"), _buy(c, 5.4, 20.0, "home", "store"),
            _ev(c, 7, "page_view", "garden"),  # undeclared: no day for any category
            _ev(c, 400, "page_view", "travel"),  # older than a year
        ],
    )
    a = build_customer_features(data, AS_OF).loc[c]
    assert (a["travel_main_days_365d"], a["books_main_days_365d"], a["home_main_days_365d"]) == (1, 1, 1)
    assert a["books_active_days_365d"] == 2  # the stray view counts a whole active day there


def test_silence_surprise_weighs_silence_against_the_pace_seen() -> None:
    daily, monthly, once = "d", "m", "o"
    events = [_ev(daily, 20 + i, "page_view", "books") for i in range(40)]  # 40 days in a row, silent for 20
    events += [_ev(monthly, 20 + 30 * i, "page_view", "books") for i in range(4)]  # monthly, silent for 20
    events += [_ev(once, 100, "page_view", "books")]  # one visit 100 days ago
    customers = [{"customer_id": x, "signup_ts": ago(500)} for x in (daily, monthly, once, "q")]
    f = build_customer_features(dataset(customers=customers, events=events), AS_OF)
    # (active days + 1/2) * log(1 + silence / (days between first and last event + 5))
    assert f.loc[daily, "silence_surprise"] == pytest.approx(40.5 * np.log1p(20 / (39 + 5)))
    assert f.loc[monthly, "silence_surprise"] == pytest.approx(4.5 * np.log1p(20 / (90 + 5)))
    assert f.loc[once, "silence_surprise"] == pytest.approx(1.5 * np.log1p(100 / 5))
    assert f.loc["q", "silence_surprise"] == 0
    assert f.loc[daily, "silence_surprise"] > f.loc[monthly, "silence_surprise"]

"""Exact values of every customer feature family on hand-built tables, and bad inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import NEVER_DAYS, CUSTOMER_FEATURES, LifecycleRules, build_customer_features, lifecycle_stage
from nbo.data import Dataset, empty_table
from nbo.errors import NboError
from tests.features.conftest import AS_OF, ago, dataset


def _buy(cid: str, days: float, amount: float | None, category: str | None = "travel", channel: str = "web") -> dict:
    return {"customer_id": cid, "ts": ago(days), "type": "purchase", "category": category, "amount": amount, "channel": channel}


def _ev(cid: str, days: float, etype: str, category: str | None = None, channel: str = "web") -> dict:
    return {"customer_id": cid, "ts": ago(days), "type": etype, "category": category, "channel": channel}


def test_rfm_exact_values_and_as_of_boundaries() -> None:
    data = dataset(
        customers=[
            {"customer_id": "a", "signup_ts": ago(400)},
            {"customer_id": "b", "signup_ts": ago(10)},
            {"customer_id": "late", "signup_ts": ago(-1)},
            {"customer_id": "at", "signup_ts": AS_OF},
        ],
        events=[
            _buy("a", 10, 100.0),
            _buy("a", 40, 50.0, "books"),
            _buy("a", 100, None),  # NaN amount: a purchase with no spend
            _buy("a", 300, 200.0, "home"),
            _buy("a", 500, 1000.0),  # outside 365 days, inside the totals
            _buy("a", 0, 999.0),  # at as_of: ignored
            _buy("a", -5, 999.0),  # after as_of: ignored
        ],
    )
    f = build_customer_features(data, AS_OF)
    assert list(f.index) == ["a", "b"]  # signed up before as_of only
    a = f.loc["a"]
    assert a["recency_days"] == 10
    assert (a["purchases_30d"], a["spend_30d"]) == (1, 100)
    assert (a["purchases_90d"], a["spend_90d"]) == (2, 150)
    assert (a["purchases_365d"], a["spend_365d"]) == (4, 350)
    assert (a["purchases_total"], a["spend_total"]) == (5, 1350)
    assert a["avg_basket_365d"] == 87.5
    assert a["tenure_days"] == 400
    assert (a["r_score"], a["f_score"], a["m_score"], a["rfm_score"]) == (5, 3, 3, 11)
    b = f.loc["b"]
    assert b["recency_days"] == NEVER_DAYS
    assert (b["purchases_total"], b["spend_total"], b["avg_basket_365d"]) == (0, 0, 0)
    assert (b["r_score"], b["f_score"], b["m_score"]) == (1, 1, 1)
    assert b["lifecycle"] == "new"


@pytest.mark.parametrize(
    ("recency", "count", "spend", "scores"),
    [
        (30.0, 12, 1000.0, (5, 5, 5)),
        (30.5, 11, 999.0, (4, 4, 4)),
        (90.0, 6, 500.0, (4, 4, 4)),
        (180.0, 3, 200.0, (3, 3, 3)),
        (365.0, 1, 0.5, (2, 2, 2)),
        (366.0, 0, 0.0, (1, 1, 1)),
    ],
)
def test_rfm_score_thresholds_are_fixed(recency: float, count: int, spend: float, scores: tuple[int, int, int]) -> None:
    events = [_buy("a", recency, spend if i == 0 else 0.0) for i in range(max(count, 1))]
    if count == 0:
        events = [_buy("a", recency, None)]  # one purchase > 365 days ago: 0 in the year
    data = dataset(customers=[{"customer_id": "a", "signup_ts": ago(800)}], events=events)
    f = build_customer_features(data, AS_OF).loc["a"]
    got = (f["r_score"], f["f_score"], f["m_score"])
    assert got == pytest.approx(scores)


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


def test_breadth_top_and_next_category() -> None:
    data = dataset(
        customers=[{"customer_id": "a", "signup_ts": ago(900)}, {"customer_id": "tie", "signup_ts": ago(900)}],
        events=[
            *[_buy("a", d, 10.0, "travel") for d in (5, 50, 100)],
            _buy("a", 60, 10.0, "books"),
            _buy("a", 70, 10.0, "home"),
            _buy("a", 80, 10.0, "garden"),  # undeclared: in the total, not a category
            _buy("a", 400, 10.0, "electronics"),  # bought ever, not in 365 days
            *[_ev("a", d, "product_view", "electronics") for d in (1, 2)],
            *[_ev("a", d, "page_view", "fashion") for d in (1,)],
            *[_ev("a", d, "page_view", "travel") for d in (1, 2, 3, 4, 5)],
            _ev("tie", 3, "page_view", "sports"),
            _ev("tie", 3, "search", "beauty"),
        ],
    )
    f = build_customer_features(data, AS_OF)
    a = f.loc["a"]
    assert a["categories_bought_365d"] == 3
    assert a["top_category"] == "travel" and a["top_category_code"] == 0
    assert a["top_category_share_365d"] == pytest.approx(3 / 6)
    assert a["next_category"] == "fashion"  # electronics was bought (400 days ago), travel too
    tie = f.loc["tie"]
    assert tie["next_category"] == "beauty"  # tie: the category declared first wins
    assert tie["top_category"] == "" and tie["top_category_code"] == -1


def _stage(**kw: float) -> str:
    row = {"tenure_days": 400.0, "recency_days": 10.0, "purchases_total": 5.0, "purchases_365d": 5.0,
           "categories_bought_365d": 1.0}
    row.update(kw)
    return str(lifecycle_stage({k: np.array([v]) for k, v in row.items()}, LifecycleRules())[0])


def test_lifecycle_rules_in_order() -> None:
    assert _stage(recency_days=181) == "lapsed"
    assert _stage(recency_days=NEVER_DAYS, tenure_days=200) == "lapsed"
    assert _stage(recency_days=NEVER_DAYS, tenure_days=100) == "at_risk"
    assert _stage(recency_days=91) == "at_risk"
    assert _stage(recency_days=NEVER_DAYS, tenure_days=20, purchases_total=0) == "new"
    assert _stage(tenure_days=25, purchases_total=4) == "new"
    assert _stage(purchases_total=1) == "new"
    assert _stage(purchases_365d=12, categories_bought_365d=4) == "loyal"
    assert _stage(purchases_365d=12, tenure_days=300, categories_bought_365d=4) == "diversified"
    assert _stage(categories_bought_365d=3) == "diversified"
    assert _stage() == "rooted"


def test_lifecycle_rules_are_configurable_and_checked() -> None:
    rules = LifecycleRules(loyal_min_purchases_365d=5)
    row = {"tenure_days": np.array([400.0]), "recency_days": np.array([10.0]), "purchases_total": np.array([5.0]),
           "purchases_365d": np.array([5.0]), "categories_bought_365d": np.array([1.0])}
    assert lifecycle_stage(row, rules)[0] == "loyal"
    with pytest.raises(ValueError, match="lapsed_after_days"):
        LifecycleRules(at_risk_after_days=200, lapsed_after_days=100)
    with pytest.raises(ValueError):
        rules.loyal_min_purchases_365d = 3  # frozen


def test_contact_history_exact_values() -> None:
    c = "a"
    data = dataset(
        customers=[{"customer_id": c, "signup_ts": ago(300)}],
        contacts=[
            {"customer_id": c, "offer_id": "o1", "channel": "email", "ts": ago(2), "outcome": "accepted", "outcome_ts": ago(1)},
            # declined, but the answer came after as_of: still pending
            {"customer_id": c, "offer_id": "o1", "channel": "sms", "ts": ago(5), "outcome": "declined", "outcome_ts": ago(-1)},
            {"customer_id": c, "offer_id": "o1", "channel": "web", "ts": ago(20), "outcome": "ignored", "outcome_ts": ago(19)},
            {"customer_id": c, "offer_id": "o1", "channel": "push", "ts": ago(40), "outcome": "clicked", "outcome_ts": ago(39)},
            {"customer_id": c, "offer_id": "o1", "channel": "mail", "ts": AS_OF, "outcome": "pending"},  # at as_of
        ],
    )
    f = build_customer_features(data, AS_OF).loc[c]
    expected = {
        "contacts_email_7d": 1, "contacts_sms_7d": 1, "contacts_web_7d": 0, "contacts_7d": 2,
        "contacts_web_30d": 1, "contacts_push_30d": 0, "contacts_mail_30d": 0, "contacts_30d": 3,
        "outbound_contacts_7d": 2, "days_since_last_contact": 2, "contacts_total": 4,
        "finalised_total": 3, "accepts_total": 1, "declines_total": 0, "ignores_total": 1,
        "pending_contacts": 1, "acceptance_rate": 1 / 3,
    }
    assert {k: f[k] for k in expected} == pytest.approx(expected)


def test_consents_latest_row_before_as_of() -> None:
    c = "a"
    data = dataset(
        customers=[{"customer_id": c, "signup_ts": ago(300)}],
        consents=[
            {"customer_id": c, "channel": "email", "granted": True, "ts": ago(10)},
            {"customer_id": c, "channel": "email", "granted": False, "ts": ago(5)},
            {"customer_id": c, "channel": "sms", "granted": True, "ts": ago(3)},
            {"customer_id": c, "channel": "push", "granted": True, "ts": AS_OF},
            {"customer_id": c, "channel": "mail", "granted": True, "ts": ago(20)},
            {"customer_id": c, "channel": "mail", "granted": False, "ts": ago(-1)},
        ],
    )
    f = build_customer_features(data, AS_OF).loc[c]
    assert (f["opt_in_email"], f["opt_in_sms"], f["opt_in_push"], f["opt_in_mail"], f["opt_in_web"]) == (0, 1, 0, 1, 0)


def test_empty_tables_give_an_empty_frame_with_all_columns() -> None:
    data = Dataset(**{name: empty_table(name) for name in ("customers", "consents", "events", "offers", "contacts")})
    f = build_customer_features(data, AS_OF)
    assert len(f) == 0
    assert list(f.columns[: len(CUSTOMER_FEATURES)]) == list(CUSTOMER_FEATURES)


def test_customer_without_events_gets_zeros_and_sentinels() -> None:
    data = dataset(customers=[{"customer_id": "a", "signup_ts": ago(50)}])
    f = build_customer_features(data, AS_OF).loc["a"]
    for name in ("recency_days", "days_since_web_visit", "days_since_app_visit", "days_since_last_contact"):
        assert f[name] == NEVER_DAYS
    assert f["purchases_total"] == 0 and f["page_views_30d"] == 0 and f["acceptance_rate"] == 0
    assert f["top_category"] == "" and f["next_category"] == ""
    assert f["lifecycle"] == "new"


def test_events_before_signup_count() -> None:
    data = dataset(customers=[{"customer_id": "a", "signup_ts": ago(10)}], events=[_buy("a", 20, 5.0)])
    f = build_customer_features(data, AS_OF).loc["a"]
    assert f["purchases_total"] == 1 and f["recency_days"] == 20 and f["tenure_days"] == 10


def test_unknown_categories_count_in_totals_only() -> None:
    data = dataset(
        customers=[{"customer_id": "a", "signup_ts": ago(100)}],
        events=[_buy("a", 3, 10.0, "garden"), _buy("a", 3, 10.0, None), _ev("a", 1, "page_view", "Travel")],
    )
    f = build_customer_features(data, AS_OF).loc["a"]
    assert f["purchases_30d"] == 2 and f["spend_30d"] == 20
    assert f["categories_bought_365d"] == 0 and f["top_category"] == ""
    assert f["page_views_7d"] == 1 and f["travel_page_views_7d"] == 0  # categories are case-sensitive


def test_custom_category_list() -> None:
    data = dataset(customers=[{"customer_id": "a", "signup_ts": ago(100)}], events=[_buy("a", 3, 10.0, "garden")])
    f = build_customer_features(data, AS_OF, categories=("garden", "travel")).loc["a"]
    assert f["garden_purchases_30d"] == 1 and f["top_category"] == "garden"


@pytest.mark.parametrize("bad", [None, pd.Timestamp("2025-06-01", tz="UTC"), "2025-06-01T00:00:00+02:00"])
def test_as_of_is_required_and_tz_naive(bad: object) -> None:
    data = dataset(customers=[{"customer_id": "a", "signup_ts": ago(100)}])
    with pytest.raises(NboError, match="as_of"):
        build_customer_features(data, bad)  # type: ignore[arg-type]


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


def test_offer_category_view_share() -> None:
    from features import build_candidate_features

    c = "a"
    data = dataset(
        customers=[{"customer_id": c, "signup_ts": ago(500)}],
        events=[_ev(c, 300, "page_view", "travel"), _ev(c, 3, "product_view", "travel"), _ev(c, 2, "page_view", "books"),
                _ev(c, 1, "page_view", "books"), _ev(c, 1, "search", "books")],
        offers=[{"offer_id": "t", "category": "travel"}, {"offer_id": "b", "category": "books"},
                {"offer_id": "g", "category": "garden"}],
    )
    f = build_customer_features(data, AS_OF)
    rows = build_candidate_features(f, data.offers, data.contacts, None, AS_OF).set_index("offer_id")
    assert rows.loc["t", "offer_cat_view_share_365d"] == pytest.approx(0.5)
    assert rows.loc["b", "offer_cat_view_share_365d"] == pytest.approx(0.5)
    assert rows.loc["g", "offer_cat_view_share_365d"] == 0  # undeclared category
    assert rows.loc["b", "offer_cat_views_7d"] == 2
    assert rows.loc["b", "offer_cat_searches_7d"] == 1
    assert rows.loc["t", "offer_cat_views_7d"] == 1


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


def test_contact_pressure_decays_per_channel() -> None:
    c = "a"
    data = dataset(
        customers=[{"customer_id": c, "signup_ts": ago(300)}],
        contacts=[
            {"customer_id": c, "offer_id": "o1", "channel": "email", "ts": ago(3)},
            {"customer_id": c, "offer_id": "o1", "channel": "email", "ts": ago(6)},
            {"customer_id": c, "offer_id": "o1", "channel": "sms", "ts": ago(1.5)},
            {"customer_id": c, "offer_id": "o1", "channel": "sms", "ts": AS_OF},  # at as_of: not yet
        ],
    )
    f = build_customer_features(data, AS_OF).loc[c]
    assert f["pressure_email"] == pytest.approx(0.5 + 0.25)
    assert f["pressure_sms"] == pytest.approx(0.5**0.5)
    assert f["pressure_web"] == 0
    assert f["pressure_total"] == pytest.approx(0.75 + 0.5**0.5)


def test_contacts_at_each_rows_moment_equal_contacts_as_of_that_moment() -> None:
    from features.contact_history import contact_history, encode_contacts_at
    from tests.features.conftest import synthetic

    data = synthetic(customers=30, contacts=500, seed=5)
    ids = data.customers["customer_id"].to_numpy(dtype=object)
    rng = np.random.default_rng(0)
    rows = rng.choice(ids, 40)  # repeated customers, each row at its own moment
    moments = (AS_OF - pd.to_timedelta(rng.integers(0, 200 * 86_400, 40), unit="s")).to_numpy()
    at = contact_history(encode_contacts_at(data.contacts, rows, moments), pd.Index(rows), AS_OF)
    for i, (cid, moment) in enumerate(zip(rows, moments, strict=True)):
        one = contact_history(data.contacts, pd.Index([cid], dtype=object), pd.Timestamp(moment))
        assert {k: v[i] for k, v in at.items()} == pytest.approx({k: v[0] for k, v in one.items()})


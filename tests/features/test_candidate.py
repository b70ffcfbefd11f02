"""Exact values of customer x offer features, context handling and the Context model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features import CANDIDATE_FEATURES, NEVER_DAYS, Context, build_candidate_features, build_customer_features
from tests.features.conftest import AS_OF, ago, dataset

OFFERS = [
    {"offer_id": "trip", "category": "travel", "kind": "cross_sell", "channels": ("web", "email"), "value": 40.0, "cost": 0.5},
    {"offer_id": "trip2", "category": "travel", "kind": "upsell", "channels": ("email",), "value": 20.0, "cost": 0.1},
    {"offer_id": "book", "category": "books", "kind": "retention", "channels": ("app",), "value": 5.0, "cost": 0.0},
    {"offer_id": "seed", "category": "garden", "kind": "loyalty", "channels": ("web",), "value": 1.0, "cost": 0.0},
]


def _data():
    c = "a"
    return dataset(
        customers=[{"customer_id": c, "signup_ts": ago(400)}, {"customer_id": "b", "signup_ts": ago(30)}],
        events=[
            {"customer_id": c, "ts": ago(3), "type": "page_view", "category": "travel"},
            {"customer_id": c, "ts": ago(4), "type": "product_view", "category": "travel"},
            {"customer_id": c, "ts": ago(40), "type": "product_view", "category": "travel"},  # outside 30d
            {"customer_id": c, "ts": ago(5), "type": "search", "category": "travel"},
            {"customer_id": c, "ts": ago(6), "type": "add_to_cart", "category": "travel"},
            {"customer_id": c, "ts": ago(10), "type": "purchase", "category": "travel", "amount": 10.0},
            {"customer_id": c, "ts": ago(100), "type": "purchase", "category": "travel", "amount": 10.0},
            {"customer_id": c, "ts": ago(200), "type": "purchase", "category": "books", "amount": 10.0},
            {"customer_id": c, "ts": ago(2), "type": "page_view", "category": "garden"},
        ],
        contacts=[
            {"customer_id": c, "offer_id": "trip", "ts": ago(10), "outcome": "declined", "outcome_ts": ago(9)},
            {"customer_id": c, "offer_id": "trip", "ts": ago(3), "outcome": "pending"},
            {"customer_id": c, "offer_id": "trip2", "ts": ago(30), "outcome": "declined", "outcome_ts": ago(29)},
            {"customer_id": c, "offer_id": "book", "ts": ago(20), "outcome": "accepted", "outcome_ts": ago(19)},
            {"customer_id": c, "offer_id": "book", "ts": ago(25), "outcome": "ignored", "outcome_ts": ago(24)},
            {"customer_id": c, "offer_id": "book", "ts": ago(1), "outcome": "declined", "outcome_ts": AS_OF},  # pending
            {"customer_id": c, "offer_id": "seed", "ts": AS_OF, "outcome": "accepted", "outcome_ts": ago(-1)},  # ignored
        ],
        offers=OFFERS,
    )


def _candidates(context=None):
    data = _data()
    customers = build_customer_features(data, AS_OF)
    out = build_candidate_features(customers, data.offers, data.contacts, context, AS_OF)
    return out.set_index(["customer_id", "offer_id"])


def test_shape_order_and_columns() -> None:
    out = build_candidate_features(
        build_customer_features(_data(), AS_OF), _data().offers, _data().contacts, None, AS_OF
    )
    assert list(out.columns) == ["customer_id", "offer_id", *CANDIDATE_FEATURES]
    assert list(zip(out["customer_id"], out["offer_id"])) == [
        (c, o) for c in ("a", "b") for o in ("trip", "trip2", "book", "seed")
    ]
    assert out[list(CANDIDATE_FEATURES)].dtypes.eq(np.float64).all()


def test_affinity_and_exposure_exact_values() -> None:
    out = _candidates()
    trip, book, seed = out.loc[("a", "trip")], out.loc[("a", "book")], out.loc[("a", "seed")]
    assert trip["offer_cat_views_30d"] == 2  # page_view + product_view in 30 days
    assert trip["offer_cat_searches_30d"] == 1 and trip["offer_cat_cart_adds_30d"] == 1
    assert trip["offer_cat_purchases_365d"] == 2
    assert trip["offer_cat_purchase_share_365d"] == pytest.approx(2 / 3)
    assert trip["offer_cat_bought_30d"] == 1 and book["offer_cat_bought_30d"] == 0
    assert trip["offer_cat_is_top"] == 1 and book["offer_cat_is_top"] == 0
    assert (trip["offer_exposures"], trip["offer_declines"], trip["offer_accepts"]) == (2, 1, 0)
    assert trip["offer_days_since_exposure"] == 3
    assert trip["offer_cat_declines"] == 2  # trip + trip2, both travel
    assert out.loc[("a", "trip2"), "offer_cat_declines"] == 2
    assert (book["offer_exposures"], book["offer_accepts"], book["offer_ignores"], book["offer_declines"]) == (3, 1, 1, 0)
    assert book["offer_days_since_exposure"] == 1
    assert seed["offer_exposures"] == 0 and seed["offer_days_since_exposure"] == NEVER_DAYS
    assert seed["offer_cat_views_30d"] == 0  # garden is not a declared category
    assert seed["offer_category_code"] == -1 and trip["offer_category_code"] == 0
    assert trip["declines_total"] == 2 and trip["accepts_total"] == 1 and trip["acceptance_rate"] == pytest.approx(1 / 4)
    b = out.loc[("b", "trip")]
    assert b["offer_exposures"] == 0 and b["offer_cat_views_30d"] == 0 and b["declines_total"] == 0


def test_offer_category_answers_and_main_day_share() -> None:
    out = _candidates()
    trip, trip2, book, seed = (out.loc[("a", o)] for o in ("trip", "trip2", "book", "seed"))
    # travel: trip x2 (a decline, a pending) and trip2 (a decline); books: book x3
    assert (trip["offer_cat_exposures"], trip["offer_cat_accepts"], trip["offer_cat_clicks"]) == (3, 0, 0)
    assert trip2["offer_cat_exposures"] == 3
    assert (book["offer_cat_exposures"], book["offer_cat_accepts"], book["offer_cat_clicks"]) == (3, 1, 0)
    assert seed["offer_cat_exposures"] == 0
    # travel leads days 3, 4, 5, 6, 10, 40 and 100, books day 200, garden is undeclared:
    # (7 + 1/2) / (8 + 8 x 1/2)
    assert trip["offer_cat_main_day_share_365d"] == pytest.approx(7.5 / 12)
    assert book["offer_cat_main_day_share_365d"] == pytest.approx(1.5 / 12)
    assert seed["offer_cat_main_day_share_365d"] == 0
    assert out.loc[("b", "trip"), "offer_cat_main_day_share_365d"] == pytest.approx(1 / 8)  # no history: the prior


def test_stage_kind_code_crosses_recency_and_buying_with_the_offer_kind() -> None:
    out = _candidates()
    # a: last active 2 days ago (<= 14), has bought -> stage 0 + 5; b: never active, never bought -> 4
    kinds = {o: int(out.loc[("a", o), "offer_kind_code"]) for o in ("trip", "book")}
    assert out.loc[("a", "trip"), "stage_kind_code"] == 5 * 5 + kinds["trip"]
    assert out.loc[("a", "book"), "stage_kind_code"] == 5 * 5 + kinds["book"]
    assert out.loc[("b", "trip"), "stage_kind_code"] == 4 * 5 + kinds["trip"]
    from features.stage import stage_kind_code

    got = stage_kind_code(np.array([14.0, 14.5, 30.0, 61.0, 120.0, 121.0, np.nan]), np.array([0, 0, 1, 1, 1, 0, 1]),
                          np.array([2, 2, 0, 0, 4, 1, -1]))
    np.testing.assert_array_equal(got[:6], [0 * 5 + 2, 1 * 5 + 2, 6 * 5 + 0, 8 * 5 + 0, 8 * 5 + 4, 4 * 5 + 1])
    assert np.isnan(got[6])


def test_channel_habit_fits_the_channel_to_where_the_customer_shows_up() -> None:
    data = _data()
    customers = build_customer_features(data, AS_OF)
    share = customers.loc["a", "online_visit_share_365d"]
    for channel, expected in (("web", share), ("app", share), ("mail", 1 - share)):
        out = build_candidate_features(customers, data.offers, data.contacts, Context(channel=channel), AS_OF)
        assert out["ctx_channel_habit"].iloc[0] == pytest.approx(expected)
    email = build_candidate_features(customers, data.offers, data.contacts, Context(channel="email"), AS_OF)
    assert email["ctx_channel_habit"].isna().all()


def test_offer_attributes() -> None:
    out = _candidates()
    trip, seed = out.loc[("a", "trip")], out.loc[("a", "seed")]
    assert (trip["offer_kind_cross_sell"], trip["offer_kind_upsell"], trip["offer_kind_code"]) == (1, 0, 1)
    assert (seed["offer_kind_loyalty"], seed["offer_kind_code"]) == (1, 4)
    assert (trip["offer_value"], trip["offer_cost"]) == (40.0, 0.5)


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


def test_one_customer_no_contacts_no_offers() -> None:
    data = _data()
    customers = build_customer_features(data, AS_OF).loc[["b"]]
    empty = build_candidate_features(customers, data.offers.iloc[:0], data.contacts, None, AS_OF)
    assert len(empty) == 0 and list(empty.columns)[2:] == list(CANDIDATE_FEATURES)
    out = build_candidate_features(customers, data.offers, data.contacts.iloc[:0], Context(channel="web"), AS_OF)
    assert len(out) == 4 and (out["offer_exposures"] == 0).all()


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


def test_missing_customer_columns_are_refused() -> None:
    from nbo.errors import NboError

    data = _data()
    customers = build_customer_features(data, AS_OF).drop(columns=["travel_purchases_365d"])
    with pytest.raises(NboError, match="travel_purchases_365d"):
        build_candidate_features(customers, data.offers, data.contacts, None, pd.Timestamp(AS_OF))


def test_exposure_features_equal_candidates_with_the_exposure_context(synth) -> None:
    from features import build_exposure_features

    as_of = pd.Timestamp("2025-03-01")
    exposures = synth.contacts[(synth.contacts["ts"] >= as_of)].head(40).reset_index(drop=True)
    late = synth.customers.loc[synth.customers["signup_ts"] >= as_of, "customer_id"]
    customers = build_customer_features(synth, as_of, customer_ids=exposures["customer_id"].unique())
    out = build_exposure_features(customers, synth.offers, synth.contacts, exposures, as_of)
    assert list(out.columns) == ["customer_id", "offer_id", *CANDIDATE_FEATURES]
    assert list(out["customer_id"]) == list(exposures["customer_id"])
    checked = 0
    for i, exp in exposures.iterrows():
        if exp["customer_id"] in set(late):
            assert np.isnan(out.loc[i, "recency_days"]) and out.loc[i, "offer_value"] > 0
            continue
        ctx = Context(channel=exp["channel"], hour_of_day=exp["ts"].hour, day_of_week=exp["ts"].day_of_week)
        # the snapshot row with the contact log as of the exposure itself (what the service sees then)
        one = build_candidate_features(customers.loc[[exp["customer_id"]]], synth.offers, synth.contacts, ctx, exp["ts"])
        expected = one[one["offer_id"] == exp["offer_id"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(out.iloc[[i]].reset_index(drop=True), expected)
        checked += 1
    assert checked >= 30


def test_exposure_features_refuse_exposures_before_as_of(synth) -> None:
    from features import build_exposure_features
    from nbo.errors import NboError

    as_of = pd.Timestamp("2025-03-01")
    customers = build_customer_features(synth, as_of)
    early = synth.contacts[synth.contacts["ts"] < as_of].head(3)
    with pytest.raises(NboError, match="before as_of"):
        build_exposure_features(customers, synth.offers, synth.contacts, early, as_of)

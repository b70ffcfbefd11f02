"""Candidate rows as a whole: shape and order, exact values of the affinity and offer-history
columns together, refused inputs (each group's own tests: test_stage, test_context, test_offers,
test_exposure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import CANDIDATE_FEATURES, NEVER_DAYS, Context, build_candidate_features, build_customer_features
from tests.features.conftest import AS_OF
from tests.features.conftest import candidate_data as _data
from tests.features.conftest import candidate_rows as _candidates

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


def test_one_customer_no_contacts_no_offers() -> None:
    data = _data()
    customers = build_customer_features(data, AS_OF).loc[["b"]]
    empty = build_candidate_features(customers, data.offers.iloc[:0], data.contacts, None, AS_OF)
    assert len(empty) == 0 and list(empty.columns)[2:] == list(CANDIDATE_FEATURES)
    out = build_candidate_features(customers, data.offers, data.contacts.iloc[:0], Context(channel="web"), AS_OF)
    assert len(out) == 4 and (out["offer_exposures"] == 0).all()


def test_missing_customer_columns_are_refused() -> None:
    from nbo.errors import NboError

    data = _data()
    customers = build_customer_features(data, AS_OF).drop(columns=["travel_purchases_365d"])
    with pytest.raises(NboError, match="travel_purchases_365d"):
        build_candidate_features(customers, data.offers, data.contacts, None, pd.Timestamp(AS_OF))

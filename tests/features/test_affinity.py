"""Customer x offer-category affinity (features/affinity.py), exact values."""

from __future__ import annotations

import pytest

from features import build_customer_features
from tests.features.conftest import AS_OF, ago, dataset
from tests.features.conftest import event_row as _ev


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

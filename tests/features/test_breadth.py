"""Category breadth (features/breadth.py) and its text labels (features/labels.py)."""

from __future__ import annotations

import pytest

from features import build_customer_features
from tests.features.conftest import AS_OF, ago, dataset
from tests.features.conftest import buy_row as _buy
from tests.features.conftest import event_row as _ev


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

"""RFM (features/rfm.py): exact values, as_of boundaries and fixed score thresholds."""

from __future__ import annotations

import pytest

from features import NEVER_DAYS, build_customer_features
from tests.features.conftest import AS_OF, ago, dataset
from tests.features.conftest import buy_row as _buy


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

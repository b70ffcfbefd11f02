"""Purchase cycle (features/purchase_cycle.py): exact gaps, the BG/NBD summary and P(alive)."""

from __future__ import annotations

import numpy as np
import pytest

from features import NEVER_DAYS, build_customer_features
from features.bgnbd import BetaGeoParams, p_alive
from features.config import BGNBD_PRIOR
from tests.features.conftest import AS_OF, ago, dataset
from tests.features.conftest import buy_row as _buy


def _world(extra: list | None = None):
    return dataset(
        customers=[{"customer_id": c, "signup_ts": ago(400)} for c in ("a", "one", "same_day", "none")],
        events=[
            _buy("a", 10.5, 10.0), _buy("a", 30.5, 10.0), _buy("a", 60.5, 10.0), _buy("a", 70.5, 10.0),
            _buy("one", 50.5, 10.0),
            _buy("same_day", 20.2, 5.0), _buy("same_day", 20.7, 5.0),  # one purchase day
            *(extra or []),
        ],
    )


def test_gaps_ratio_and_summary_exact_values() -> None:
    f = build_customer_features(_world(), AS_OF)
    a = f.loc["a"]
    # purchase days 70, 60, 30, 10 days ago: gaps 10, 30, 20
    assert a["repeat_purchase_days"] == 3
    assert a["first_purchase_days"] == pytest.approx(70.5)
    assert a["purchase_gap_mean_days"] == pytest.approx(20.0)
    assert a["purchase_gap_std_days"] == pytest.approx(np.std([10, 30, 20]))
    assert a["purchase_gap_cv"] == pytest.approx(np.std([10, 30, 20]) / 20)
    assert a["recency_gap_ratio"] == pytest.approx(10.5 / 20)
    expected = p_alive(BetaGeoParams(*BGNBD_PRIOR), np.array([3.0]), np.array([60.0]), np.array([70.5]))[0]
    assert a["p_alive_bgnbd"] == pytest.approx(expected)
    assert 0 < a["p_alive_bgnbd"] < 1
    for cid in ("one", "same_day"):  # no repeat purchase day: no gap, and alive for BG/NBD
        row = f.loc[cid]
        assert row["repeat_purchase_days"] == 0 and row["p_alive_bgnbd"] == 1.0
        assert np.isnan(row["purchase_gap_mean_days"]) and np.isnan(row["recency_gap_ratio"])
    none = f.loc["none"]
    assert none["first_purchase_days"] == NEVER_DAYS and np.isnan(none["p_alive_bgnbd"])


def test_a_later_silence_lowers_p_alive_and_raises_the_ratio() -> None:
    early = build_customer_features(_world(), AS_OF - np.timedelta64(0, "D")).loc["a"]
    later = build_customer_features(_world(), AS_OF + np.timedelta64(40, "D")).loc["a"]
    assert later["p_alive_bgnbd"] < early["p_alive_bgnbd"]
    assert later["recency_gap_ratio"] > early["recency_gap_ratio"]


def test_purchases_at_or_after_as_of_change_nothing() -> None:
    before = build_customer_features(_world(), AS_OF)
    after = build_customer_features(_world([_buy("a", 0, 1.0), _buy("one", -3, 1.0)]), AS_OF)
    cols = ["repeat_purchase_days", "first_purchase_days", "purchase_gap_mean_days", "purchase_gap_std_days",
            "purchase_gap_cv", "recency_gap_ratio", "p_alive_bgnbd"]
    np.testing.assert_array_equal(before[cols].to_numpy(), after[cols].to_numpy())

"""The customer's own choices per offer (features.choice_history): exact values on a hand-built
log, and nothing at or after the row's moment counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.choice_history import CHOICE_HISTORY, choice_history
from features.config import LOYALTY_CARRYOVER, NEVER_DAYS
from features.contact_history import encode_contacts
from features.offers import prepare_offers
from tests.serving.helpers import make_offers

AS_OF = pd.Timestamp("2025-03-01")


def _contacts(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """(customer, offer, day, outcome) -> a contacts frame answered at contact time."""
    frame = pd.DataFrame(rows, columns=["customer_id", "offer_id", "ts", "outcome"])
    frame["ts"] = pd.to_datetime(frame["ts"])
    frame["outcome_ts"] = frame["ts"]
    frame["channel"] = "web"
    frame["decision_id"] = [f"d{i}" for i in range(len(frame))]
    return frame


OFFERS = make_offers([
    {"offer_id": "a", "category": "ketchup"}, {"offer_id": "b", "category": "ketchup"},
    {"offer_id": "c", "category": "tuna"},
])


def _features(contacts: pd.DataFrame, customers: list[str], as_of: pd.Timestamp = AS_OF) -> dict[str, np.ndarray]:
    index = pd.Index(customers, dtype=object)
    out = choice_history(encode_contacts(contacts, index, as_of), len(customers), prepare_offers(OFFERS))
    assert set(out) == set(CHOICE_HISTORY.columns())
    return {k: v.reshape(len(customers), len(OFFERS)) for k, v in out.items()}


def test_exact_values() -> None:
    log = _contacts([
        ("x", "a", "2025-01-01", "accepted"),
        ("x", "b", "2025-01-08", "ignored"),
        ("x", "a", "2025-01-15", "accepted"),
        ("x", "c", "2025-01-22", "accepted"),
        ("x", "b", "2025-02-19", "accepted"),  # the latest choice, 10 days before AS_OF
    ])
    f = _features(log, ["x", "y"])
    x, y = {k: v[0] for k, v in f.items()}, {k: v[1] for k, v in f.items()}
    assert x["offer_last_chosen"].tolist() == [0, 1, 0]
    assert x["offer_cat_last_chosen"].tolist() == [0, 1, 1]  # b latest in ketchup, c the only tuna
    assert x["offer_days_since_choice"].tolist() == [45, 10, 38]
    assert x["offer_choice_share"].tolist() == [0.5, 0.25, 0.25]
    assert x["offer_cat_choice_share"].tolist() == pytest.approx([2 / 3, 1 / 3, 1.0])
    a = LOYALTY_CARRYOVER
    assert x["offer_loyalty"].tolist() == pytest.approx([(1 - a) * (a**2 + a**3), (1 - a), (1 - a) * a])
    assert x["customer_switch_rate"].tolist() == [2 / 3] * 3  # a->a, a->c, c->b
    assert y["offer_days_since_choice"].tolist() == [NEVER_DAYS] * 3
    assert y["offer_choice_share"].tolist() == [0.0] * 3
    assert np.isnan(y["customer_switch_rate"]).all()


def test_nothing_at_or_after_as_of_counts() -> None:
    before = _contacts([("x", "a", "2025-01-01", "accepted"), ("x", "b", "2025-02-01", "accepted")])
    later = _contacts([("x", "a", "2025-01-01", "accepted"), ("x", "b", "2025-02-01", "accepted"),
                       ("x", "c", "2025-03-01", "accepted"), ("x", "a", "2025-04-01", "accepted")])
    one, two = _features(before, ["x"]), _features(later, ["x"])
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    # An answer observed only at as_of is not final yet: the choice does not count.
    pending = before.copy()
    pending.loc[1, "outcome_ts"] = AS_OF
    assert _features(pending, ["x"])["offer_last_chosen"][0].tolist() == [1, 0, 0]

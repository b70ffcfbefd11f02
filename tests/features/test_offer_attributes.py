"""Decision-time offer attributes (features.offer_attributes): the value, and where it stands
among the decision's candidates; the same through the request path and the training path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import Context, build_candidate_features, build_customer_features, build_exposure_features
from features.offer_attributes import attribute_columns, check_offer_attributes, decision_attribute_features
from nbo.errors import NboError
from tests.features.conftest import AS_OF


def test_values_relative_to_the_decision() -> None:
    values = np.array([[2.0], [1.0], [3.0], [1.0], [np.nan], [5.0], [5.0]])
    decision = np.array([0, 0, 0, 0, 1, 1, 1])
    out = decision_attribute_features(values, decision, ["price"])
    assert list(out) == list(attribute_columns(["price"]))
    np.testing.assert_allclose(out["attr_price"], [2, 1, 3, 1, np.nan, 5, 5])
    np.testing.assert_allclose(out["attr_price_over_mean"], [2 / 1.75, 1 / 1.75, 3 / 1.75, 1 / 1.75, np.nan, 1, 1])
    np.testing.assert_allclose(out["attr_price_minus_min"], [1, 0, 2, 0, np.nan, 0, 0])
    np.testing.assert_allclose(out["attr_price_rank"], [2, 0, 3, 0, np.nan, 0, 0])


def test_request_and_training_rows_agree(synth) -> None:
    """A decision's candidates with prices: the request's `offer_attributes` and the contact log's
    `attr_price` give the same columns."""
    customers = build_customer_features(synth, AS_OF).iloc[:1]
    cid = customers.index[0]
    offers = synth.offers["offer_id"].tolist()
    prices = {o: float(1 + i % 3) for i, o in enumerate(offers)}
    ctx = Context(channel="web", hour_of_day=10, day_of_week=AS_OF.day_of_week,
                  offer_attributes={o: {"price": p} for o, p in prices.items()})
    online = build_candidate_features(customers, synth.offers, synth.contacts, ctx, AS_OF + pd.Timedelta(hours=10))
    online_x = build_candidate_features(customers, synth.offers, synth.contacts, ctx, AS_OF + pd.Timedelta(hours=10))
    assert online.equals(online_x)
    from features.candidate import candidate_matrix

    block = candidate_matrix(customers, synth.offers, synth.contacts, ctx, AS_OF + pd.Timedelta(hours=10),
                             attributes=("price",))
    exposures = pd.DataFrame({"decision_id": "d", "customer_id": cid, "offer_id": offers, "channel": "web",
                              "ts": AS_OF + pd.Timedelta(hours=10), "attr_price": [prices[o] for o in offers]})
    rows = build_exposure_features(customers, synth.offers, synth.contacts, exposures, AS_OF, attributes=("price",))
    names = list(attribute_columns(["price"]))
    np.testing.assert_allclose(block[:, -len(names):], rows[names].to_numpy(), equal_nan=True)
    assert rows["attr_price_rank"].min() == 0 and rows["attr_price_minus_min"].min() == 0


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"o1": {"price": -1}}, "o1.price: negative"),
        ({"o1": {"price": float("nan")}}, "o1.price: not a finite number"),
        ({"o1": {"price": "cheap"}}, "o1.price: not a number"),
        ({"o1": {"price": 1}, "o2": {"display": 1}}, "given for some candidates only"),
        ({"o9": {"price": 1}}, "offer 'o9' is not in the catalogue"),
    ],
)
def test_bad_request_attributes_are_named(given: dict, message: str) -> None:
    with pytest.raises(NboError, match=message):
        check_offer_attributes(given, ["o1", "o2"])

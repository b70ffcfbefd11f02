"""Training rows (one per logged exposure) equal the request path's features in the same context."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbo.errors import NboError
from features import Context, build_candidate_features, build_customer_features, build_exposure_features
from tests.features.conftest import AS_OF, synthetic


def test_exposure_rows_equal_request_path_with_their_context() -> None:
    data = synthetic(seed=3)
    snapshot = AS_OF.normalize()
    customers = build_customer_features(data, snapshot)
    rng = np.random.default_rng(1)
    n = 25
    exposures = pd.DataFrame(
        {
            "customer_id": rng.choice(customers.index.to_numpy(), n),
            "offer_id": rng.choice(data.offers["offer_id"].to_numpy(), n),
            "channel": rng.choice(["web", "email", "sms", "app"], n),
            "ts": snapshot + pd.to_timedelta(rng.integers(0, 86_399, n), unit="s"),
        }
    )
    rows = build_exposure_features(customers, data.offers, data.contacts, exposures, snapshot)
    assert list(rows["customer_id"]) == list(exposures["customer_id"])
    for i, exp in exposures.iterrows():
        ctx = Context(channel=exp["channel"], hour_of_day=exp["ts"].hour, day_of_week=exp["ts"].day_of_week)
        one = build_candidate_features(customers.loc[[exp["customer_id"]]], data.offers, data.contacts, ctx, snapshot)
        expected = one[one["offer_id"] == exp["offer_id"]].iloc[0]
        pd.testing.assert_series_equal(
            rows.iloc[i].drop(["customer_id", "offer_id"]).astype(float),
            expected.drop(["customer_id", "offer_id"]).astype(float),
            check_names=False,
        )


def test_exposure_before_snapshot_is_refused() -> None:
    data = synthetic(seed=4)
    customers = build_customer_features(data, AS_OF)
    exposures = pd.DataFrame(
        {"customer_id": [customers.index[0]], "offer_id": ["o00"], "channel": ["web"],
         "ts": [AS_OF - pd.Timedelta(hours=1)]}
    )
    with pytest.raises(NboError, match="before as_of"):
        build_exposure_features(customers, data.offers, data.contacts, exposures, AS_OF)

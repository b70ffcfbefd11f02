"""Training rows (features/exposure.py): one per logged exposure, equal to the request path's
features in the same context."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbo.errors import NboError
from features import CANDIDATE_FEATURES, Context, build_candidate_features, build_customer_features, build_exposure_features
from tests.features.conftest import AS_OF, dataset, synthetic


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
    pages = [None, "travel", "books", "garden"]
    exposures["page_category"] = pd.Series([pages[i % 4] for i in range(n)], dtype=object)
    exposures["session_categories"] = pd.Series([tuple(pages[1 : 1 + i % 4]) for i in range(n)], dtype=object)
    rows = build_exposure_features(customers, data.offers, data.contacts, exposures, snapshot)
    assert list(rows["customer_id"]) == list(exposures["customer_id"])
    assert rows["ctx_page_category_match"].sum() > 0 and rows["ctx_session_category_match"].sum() > 0
    for i, exp in exposures.iterrows():
        ctx = Context(channel=exp["channel"], hour_of_day=exp["ts"].hour, day_of_week=exp["ts"].day_of_week,
                      page_category=exp["page_category"], session_categories=list(exp["session_categories"]))
        # the service's view at the exposure: the snapshot row plus the contact log up to that moment
        one = build_candidate_features(customers.loc[[exp["customer_id"]]], data.offers, data.contacts, ctx, exp["ts"])
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


def test_contacts_earlier_on_the_exposure_day_are_seen_later_ones_are_not() -> None:
    snapshot = AS_OF.normalize()
    data = dataset(
        customers=[{"customer_id": "a", "signup_ts": snapshot - pd.Timedelta(days=100)}],
        contacts=[
            {"customer_id": "a", "offer_id": "o1", "channel": "web", "ts": snapshot + pd.Timedelta(hours=1),
             "outcome": "declined", "outcome_ts": snapshot + pd.Timedelta(hours=1, minutes=1)},
            {"customer_id": "a", "offer_id": "o1", "channel": "email", "ts": snapshot - pd.Timedelta(days=2),
             "outcome": "accepted", "outcome_ts": snapshot + pd.Timedelta(hours=3)},  # answered later that day
        ],
        offers=[{"offer_id": "o1", "category": "travel"}, {"offer_id": "o2", "category": "books"}],
    )
    customers = build_customer_features(data, snapshot)
    exposures = pd.DataFrame({"customer_id": ["a"] * 3, "offer_id": ["o1", "o1", "o2"], "channel": ["sms"] * 3,
                              "ts": [snapshot + pd.Timedelta(minutes=30), snapshot + pd.Timedelta(hours=2),
                                     snapshot + pd.Timedelta(hours=4)]})
    rows = build_exposure_features(customers, data.offers, data.contacts, exposures, snapshot)
    assert list(rows["contacts_7d"]) == [1, 2, 2]
    assert list(rows["offer_exposures"]) == [1, 2, 0]
    assert list(rows["offer_declines"]) == [0, 1, 0]
    assert list(rows["offer_cat_declines"]) == [0, 1, 0]
    assert list(rows["accepts_total"]) == [0, 0, 1]
    assert rows["days_since_last_contact"].tolist() == pytest.approx([2 + 1 / 48, 1 / 24, 3 / 24])



def test_every_offer_of_one_opportunity_equals_the_request_path() -> None:
    """The closed-loop simulation scores all offers at each opportunity: exposures sharing a
    (customer, moment) share one candidate block, and must still equal the request path's rows;
    two customers at the same moment, and an unknown customer, must not be mixed up."""
    data = synthetic(seed=5)
    snapshot = AS_OF.normalize()
    customers = build_customer_features(data, snapshot)
    offer_ids = data.offers["offer_id"].to_numpy()
    known = customers.index.to_numpy()
    moment = snapshot + pd.Timedelta(hours=9)
    opportunities = [(known[0], "web", moment), (known[1], "email", moment),
                     (known[0], "sms", moment + pd.Timedelta(hours=5)), ("nobody", "web", moment)]
    exposures = pd.DataFrame(
        [{"customer_id": c, "offer_id": o, "channel": ch, "ts": ts} for c, ch, ts in opportunities for o in offer_ids]
    )
    rows = build_exposure_features(customers, data.offers, data.contacts, exposures, snapshot)
    n_o = len(offer_ids)
    for j, (cid, channel, ts) in enumerate(opportunities[:3]):
        ctx = Context(channel=channel, hour_of_day=ts.hour, day_of_week=ts.day_of_week)
        expected = build_candidate_features(customers.loc[[cid]], data.offers, data.contacts, ctx, ts)
        got = rows.iloc[j * n_o:(j + 1) * n_o].reset_index(drop=True)
        pd.testing.assert_frame_equal(got.drop(columns=["customer_id", "offer_id"]).astype(float),
                                      expected.drop(columns=["customer_id", "offer_id"]).astype(float),
                                      check_dtype=False)
    unknown = rows.iloc[3 * n_o:]
    assert unknown["contacts_7d"].isna().all() and unknown["offer_exposures"].isna().all()


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

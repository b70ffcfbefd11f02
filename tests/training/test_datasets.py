"""The propensity training set built from snapshots of many days at once equals the per-day
builder it replaced (issue 24), value for value, and stays point in time.

`propensity_set_per_day` is the builder as it was before: one customer-feature computation per
exposure day. It is kept here, in the tests only, as the reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import training.datasets as datasets
from features import FEATURE_SET, build_customer_features, build_exposure_features
from features.customer import build_customer_features_at
from features.offer_attributes import attribute_columns
from features.offers import offer_vocabulary, prepare_offers
from features.session import exposure_sessions
from nbo.contract import ATTRIBUTE_PREFIX, CONTACTS
from nbo.data import Dataset
from simulator import SimConfig, Simulator
from simulator.io import dataset
from training.datasets import TrainingSet, propensity_set
from training.labels import propensity_labels

START = pd.Timestamp("2025-01-01")
AS_OF = START + pd.Timedelta(days=120)


def propensity_set_per_day(data: Dataset, as_of: pd.Timestamp, window_days: int = 7) -> TrainingSet:
    exposures = propensity_labels(data.contacts, as_of, window_days)
    attributes = tuple(a for a in CONTACTS.attribute_names(exposures.columns)
                       if exposures[f"{ATTRIBUTE_PREFIX}{a}"].notna().any())
    vocabulary = offer_vocabulary(data.offers["offer_id"])
    offers = prepare_offers(data.offers, vocabulary=vocabulary)
    names = [*FEATURE_SET.candidate_features, *attribute_columns(attributes)]
    exposures = pd.concat([exposures, exposure_sessions(data.events, exposures)], axis=1)
    days = exposures["ts"].dt.normalize()
    parts: list[pd.DataFrame] = []
    for day, rows in exposures.groupby(days, sort=True):
        ids = rows["customer_id"].unique()
        customers = build_customer_features(data, day, customer_ids=ids)
        feats = build_exposure_features(customers, offers, data.contacts, rows, day, attributes=attributes)
        feats["label"] = rows["label"].to_numpy()
        feats["decision_id"] = rows["decision_id"].to_numpy()
        feats["ts"] = rows["ts"].to_numpy()
        feats["lifecycle"] = customers["lifecycle"].reindex(rows["customer_id"]).to_numpy()
        parts.append(feats)
    frame = pd.concat(parts, ignore_index=True)
    meta = frame[["decision_id", "customer_id", "offer_id", "ts", "lifecycle"]].reset_index(drop=True)
    X = frame[names].to_numpy(dtype=np.float32, na_value=np.nan)
    return TrainingSet(X, frame["label"].to_numpy(dtype=np.int8), meta, names, attributes, vocabulary)


@pytest.fixture(scope="module")
def world() -> Dataset:
    sim = Simulator(SimConfig(customers=400, days=120, start=START.date()), seed=3)
    sim.run()
    return dataset(sim)


def _assert_same(new: TrainingSet, old: TrainingSet) -> None:
    assert new.feature_names == old.feature_names and new.attributes == old.attributes
    assert new.X.shape == old.X.shape
    same = (new.X == old.X) | (np.isnan(new.X) & np.isnan(old.X))
    assert same.all(), f"{(~same).sum()} cells differ, e.g. column {new.feature_names[np.argwhere(~same)[0][1]]}"
    assert np.array_equal(new.y, old.y)
    pd.testing.assert_frame_equal(new.meta, old.meta)


def test_snapshots_of_many_days_equal_the_per_day_builder(world: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    old = propensity_set_per_day(world, AS_OF)
    assert len(old) > 1000 and old.meta["lifecycle"].isna().sum() == 0
    _assert_same(propensity_set(world, AS_OF, progress=False), old)
    # Small pieces: many calls, each of a few days, give the same rows.
    monkeypatch.setattr(datasets, "PIECE_EVENTS", 2_000)
    _assert_same(propensity_set(world, AS_OF, progress=False), old)


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="forked workers")
def test_pieces_built_by_forked_workers_are_the_same_rows_in_the_same_order(
        world: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "PIECE_EVENTS", 2_000)  # dozens of pieces, finishing in any order
    here = propensity_set(world, AS_OF, progress=False)
    _assert_same(propensity_set(world, AS_OF, progress=False, workers=3), here)


def test_events_out_of_time_order_and_unknown_customers(world: Dataset) -> None:
    """A table whose events are not in time order per customer (a real export's, maybe) takes the
    slow exact path; an exposure of a customer absent from the customers table, or who signed up
    after its day, gets NaN customer columns in both builders."""
    rng = np.random.default_rng(0)
    events = world.events.iloc[rng.permutation(len(world.events))].reset_index(drop=True)
    customers = world.customers.copy()
    late = customers["customer_id"].iloc[0]
    customers.loc[customers.index[0], "signup_ts"] = AS_OF - pd.Timedelta(days=30)
    contacts = world.contacts.copy()
    contacts.loc[contacts.index[:5], "customer_id"] = "nobody"
    data = Dataset(customers=customers, consents=world.consents, events=events, offers=world.offers, contacts=contacts)
    old = propensity_set_per_day(data, AS_OF)
    assert old.meta["lifecycle"].isna().any()
    assert (old.meta["customer_id"] == late).any()
    _assert_same(propensity_set(data, AS_OF, progress=False), old)


def test_customer_rows_at_their_own_moments(world: Dataset) -> None:
    """`build_customer_features_at` row i is `build_customer_features(data, moments[i], [id i])`;
    rows whose customer had not signed up yet (or is unknown) are left out."""
    ids = world.customers["customer_id"].to_numpy(dtype=object)
    rng = np.random.default_rng(1)
    asked = np.r_[rng.choice(ids, 40), ["nobody"]]
    moments = np.r_[START + pd.to_timedelta(rng.integers(1, 120, 40), unit="D"), [AS_OF]].astype("datetime64[ns]")
    frame, kept = build_customer_features_at(world, asked, moments)
    assert 40 not in kept and len(kept) == len(frame)
    for row, i in enumerate(kept):
        one = build_customer_features(world, pd.Timestamp(moments[i]), customer_ids=[asked[i]])
        # Values exactly; a one-customer frame may type an all-zero column int64 (np.bincount of nothing).
        pd.testing.assert_frame_equal(frame.iloc[[row]], one, check_exact=True, check_dtype=False)
    for i in set(range(len(asked))) - set(kept):
        assert build_customer_features(world, pd.Timestamp(moments[i]), customer_ids=[asked[i]]).empty


def test_rows_after_every_exposure_change_no_training_row(world: Dataset) -> None:
    """Point in time: events and consents dated after the latest exposure, and contacts after the
    acceptance windows, never reach a row (each snapshot reads only data before its day)."""
    base = propensity_set(world, AS_OF, progress=False)
    after = base.meta["ts"].max() + pd.Timedelta(seconds=1)
    late_events = world.events.assign(ts=after + (world.events["ts"] - world.events["ts"].min()))
    late_consents = world.consents.assign(ts=after, granted=~world.consents["granted"].astype(bool))
    late_contacts = world.contacts.assign(ts=AS_OF + pd.Timedelta(days=1), outcome_ts=AS_OF + pd.Timedelta(days=2),
                                          decision_id=world.contacts["decision_id"] + "-late")
    data = Dataset(customers=world.customers, offers=world.offers,
                   events=pd.concat([world.events, late_events], ignore_index=True),
                   consents=pd.concat([world.consents, late_consents], ignore_index=True),
                   contacts=pd.concat([world.contacts, late_contacts], ignore_index=True))
    _assert_same(propensity_set(data, AS_OF, progress=False), base)

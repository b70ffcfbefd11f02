"""The run-based shortcut of `distinct_days` / `main_category_days` (rows grouped by customer, in
time order: what `encode_events_at` gives the propensity set's snapshots) against the hash-based
path it skips, value for value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import features.arrays as arrays
from features.arrays import distinct_days, main_category_days
from features.customer import build_customer_features_at, customer_event_log
from features.events import encode_events_at
from simulator import SimConfig, Simulator
from simulator.io import dataset

START = pd.Timestamp("2025-01-01")


@pytest.fixture(scope="module")
def world():
    sim = Simulator(SimConfig(customers=150, days=200, start=START.date()), seed=11)
    sim.run()
    return dataset(sim)


def _snapshots(world) -> tuple[np.ndarray, np.ndarray]:
    """Many moments per customer: midnights, the exact times of events (an event at the moment is
    not seen), a whole number of days after an event (a day boundary), and customers with no
    events at all (the world's quiet ones, plus moments before anyone's first event)."""
    rng = np.random.default_rng(5)
    ev = world.events.sample(400, random_state=5)
    ids = [*ev["customer_id"], *ev["customer_id"], *ev["customer_id"]]
    ts = ev["ts"].to_numpy(dtype="datetime64[ns]")
    days = rng.integers(1, 60, len(ts)).astype("timedelta64[D]").astype("timedelta64[ns]")
    moments = [*ts, *(ts + days), *(ts.astype("datetime64[D]").astype("datetime64[ns]") + np.timedelta64(1, "D"))]
    everyone = world.customers["customer_id"].to_numpy(dtype=object)
    quiet = np.setdiff1d(everyone.astype(str), world.events["customer_id"].astype(str).unique())
    ids += [*quiet, *rng.choice(everyone, 50)]
    moments += [START + pd.Timedelta(days=199)] * len(quiet) + [START + pd.Timedelta(hours=1)] * 50
    for c in rng.choice(everyone, 20):  # one customer, every day: the propensity set's pattern
        ids += [c] * 200
        moments += list(START + pd.to_timedelta(np.arange(200), unit="D"))
    return np.asarray(ids, dtype=object), np.asarray(moments, dtype="datetime64[ns]")


def test_snapshot_frame_equals_the_hash_path(world, monkeypatch: pytest.MonkeyPatch) -> None:
    ids, moments = _snapshots(world)
    fast, kept = build_customer_features_at(world, ids, moments)
    everyone = np.arange(len(world.customers))
    ev = encode_events_at(customer_event_log(world), everyone, np.full(len(everyone), (START + pd.Timedelta(days=199)).value))
    assert len(ev.cust) > 10_000 and arrays._day_blocks(ev.cust, np.floor(ev.age).astype(np.int64)) is not None  # it runs
    assert len(fast) > 4000 and (fast["active_days_365d"] == 0).any() and (fast["active_days_365d"] > 3).any()
    monkeypatch.setattr(arrays, "_day_blocks", lambda cust, day: None)
    slow, kept_slow = build_customer_features_at(world, ids, moments)
    assert np.array_equal(kept, kept_slow)
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)


@pytest.mark.parametrize("seed", range(8))
def test_counts_equal_the_hash_path_on_random_rows(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    n, k, rows = 30, 5, 600
    cust = np.sort(rng.integers(0, n, rows))
    # ages within a customer never fall (time order); ties and exact day boundaries included
    age = np.concatenate([np.sort(rng.choice([0.5, 1.0, 1.0, 2.0, 2.999, 3.0, 40.25, 400.0], m)
                                  + rng.integers(0, 3, m))[::-1] for m in np.bincount(cust, minlength=n)])
    cat = rng.integers(-1, k, rows).astype(np.int16)
    assert arrays._day_blocks(cust, np.floor(age).astype(np.int64)) is not None
    got = (distinct_days(cust, age, n), distinct_days(cust, age, n, cat, k), main_category_days(cust, age, cat, n, k))
    monkeypatch.setattr(arrays, "_day_blocks", lambda c, d: None)
    want = (distinct_days(cust, age, n), distinct_days(cust, age, n, cat, k), main_category_days(cust, age, cat, n, k))
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and np.array_equal(g, w)
    assert got[0].sum() > 0 and got[2].sum() > 0


def test_rows_out_of_order_take_the_hash_path() -> None:
    """The shortcut is only taken when each (customer, day) is one run of rows."""
    day = np.array([3, 1, 3])
    assert arrays._day_blocks(np.zeros(3, dtype=np.int64), day) is None  # day 3 twice, apart
    assert arrays._day_blocks(np.array([1, 0, 0]), np.array([1, 1, 0])) is None  # customers not grouped
    assert arrays._day_blocks(np.zeros(2, dtype=np.int64), np.array([-1, -2])) is None
    assert distinct_days(np.zeros(3, dtype=np.int64), day * 1.0 + 0.5, 1)[0, 0] == 2.0
    assert np.array_equal(arrays._day_blocks(np.array([0, 0, 1, 1]), np.array([2, 2, 5, 1])), [0, 2, 3])
    empty = np.zeros(0, dtype=np.int64)
    assert np.array_equal(distinct_days(empty, np.zeros(0), 2, empty.astype(np.int16), 3), np.zeros((3, 2)))

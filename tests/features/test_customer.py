"""The customer frame as a whole (features/customer.py): empty inputs, customers without events,
events before signup, undeclared and custom categories, and a missing or tz-aware as_of. Each
family's exact values are tested in the file of its module (test_rfm, test_behaviour, ...)."""

from __future__ import annotations

import pandas as pd
import pytest

from features import NEVER_DAYS, CUSTOMER_FEATURES, build_customer_features
from nbo.data import Dataset, empty_table
from nbo.errors import NboError
from tests.features.conftest import AS_OF, ago, dataset
from tests.features.conftest import buy_row as _buy
from tests.features.conftest import event_row as _ev


def test_empty_tables_give_an_empty_frame_with_all_columns() -> None:
    data = Dataset(**{name: empty_table(name) for name in ("customers", "consents", "events", "offers", "contacts")})
    f = build_customer_features(data, AS_OF)
    assert len(f) == 0
    assert list(f.columns[: len(CUSTOMER_FEATURES)]) == list(CUSTOMER_FEATURES)


def test_customer_without_events_gets_zeros_and_sentinels() -> None:
    data = dataset(customers=[{"customer_id": "a", "signup_ts": ago(50)}])
    f = build_customer_features(data, AS_OF).loc["a"]
    for name in ("recency_days", "days_since_web_visit", "days_since_app_visit", "days_since_last_contact"):
        assert f[name] == NEVER_DAYS
    assert f["purchases_total"] == 0 and f["page_views_30d"] == 0 and f["acceptance_rate"] == 0
    assert f["top_category"] == "" and f["next_category"] == ""
    assert f["lifecycle"] == "new"


def test_every_numeric_column_is_float64_also_without_any_contact() -> None:
    """The documented dtype holds for an export with no contact log (the Spark engine's buckets
    found `pressure_*` as integers there)."""
    data = dataset(customers=[{"customer_id": "a", "signup_ts": ago(50)}], events=[_buy("a", 3, 20.0)])
    f = build_customer_features(data, AS_OF)
    wrong = {c: str(f[c].dtype) for c in CUSTOMER_FEATURES if f[c].dtype != "float64"}
    assert not wrong


def test_events_before_signup_count() -> None:
    data = dataset(customers=[{"customer_id": "a", "signup_ts": ago(10)}], events=[_buy("a", 20, 5.0)])
    f = build_customer_features(data, AS_OF).loc["a"]
    assert f["purchases_total"] == 1 and f["recency_days"] == 20 and f["tenure_days"] == 10


def test_unknown_categories_count_in_totals_only() -> None:
    data = dataset(
        customers=[{"customer_id": "a", "signup_ts": ago(100)}],
        events=[_buy("a", 3, 10.0, "garden"), _buy("a", 3, 10.0, None), _ev("a", 1, "page_view", "Travel")],
    )
    f = build_customer_features(data, AS_OF).loc["a"]
    assert f["purchases_30d"] == 2 and f["spend_30d"] == 20
    assert f["categories_bought_365d"] == 0 and f["top_category"] == ""
    assert f["page_views_7d"] == 1 and f["travel_page_views_7d"] == 0  # categories are case-sensitive


def test_custom_category_list() -> None:
    data = dataset(customers=[{"customer_id": "a", "signup_ts": ago(100)}], events=[_buy("a", 3, 10.0, "garden")])
    f = build_customer_features(data, AS_OF, categories=("garden", "travel")).loc["a"]
    assert f["garden_purchases_30d"] == 1 and f["top_category"] == "garden"


@pytest.mark.parametrize("bad", [None, pd.Timestamp("2025-06-01", tz="UTC"), "2025-06-01T00:00:00+02:00"])
def test_as_of_is_required_and_tz_naive(bad: object) -> None:
    data = dataset(customers=[{"customer_id": "a", "signup_ts": ago(100)}])
    with pytest.raises(NboError, match="as_of"):
        build_customer_features(data, bad)  # type: ignore[arg-type]



@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """A simulated world read back as `nbo features` reads it (every event type, repeat
    purchases, contacts with outcomes, consents)."""
    import datetime

    from nbo.data import load_dataset
    from simulator import SimConfig, Simulator, write_simulation

    sim = Simulator(SimConfig(customers=300, days=100, start=datetime.date(2025, 1, 1)), seed=3)
    sim.run(progress=False)
    root = tmp_path_factory.mktemp("chunks")
    write_simulation(sim, root / "data")
    return load_dataset(root / "data")


@pytest.mark.parametrize("as_of", ["2025-03-15T06:30:00", "2025-01-03", "2025-05-01"])
def test_chunks_concatenate_to_the_whole_frame_exactly(world: Dataset, as_of: str) -> None:
    from features import customer_feature_chunks

    moment = pd.Timestamp(as_of)
    whole = build_customer_features(world, moment)
    assert len(whole) > 100 and whole["purchases_total"].sum() > 0 and whole["contacts_total"].sum() > 0
    for size in (1, 37, len(whole) + 1):
        chunks = list(customer_feature_chunks(world, moment, chunk_customers=size))
        assert len(chunks) == -(-len(whole) // size)
        assert all(len(c) <= size for c in chunks)
        pd.testing.assert_frame_equal(pd.concat(chunks), whole, check_exact=True)


def test_chunks_of_no_customer_are_one_empty_frame(world: Dataset) -> None:
    from features import customer_feature_chunks

    before_anyone = pd.Timestamp("1990-01-01")
    (chunk,) = customer_feature_chunks(world, before_anyone)
    pd.testing.assert_frame_equal(chunk, build_customer_features(world, before_anyone), check_exact=True)
    with pytest.raises(ValueError, match="at least 1"):
        next(customer_feature_chunks(world, before_anyone, chunk_customers=0))

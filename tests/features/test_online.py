"""Subset equality and online == batch, on a seeded synthetic dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import (
    CANDIDATE_FEATURES,
    Context,
    build_candidate_features,
    build_customer_features,
    candidate_features_online,
    candidate_matrix,
    customer_features_online,
    prepare_offers,
    read_materialised,
    write_materialised,
)
from tests.features.conftest import AS_OF

SAMPLE = ["c0003", "c0017", "c0042", "c0058", "c0001"]


def _contexts(ids: list[str]) -> dict[str, Context]:
    cats = ["travel", "books", "garden", None]
    return {
        cid: Context(channel=("web", "app", "email")[i % 3], page_category=cats[i % 4], session_categories=cats[: i % 4],
                     device=("mobile", None)[i % 2], hour_of_day=(None, 9)[i % 2])
        for i, cid in enumerate(ids)
    }


def test_subset_equals_rows_of_full_run(synth) -> None:
    full = build_customer_features(synth, AS_OF)
    subset = build_customer_features(synth, AS_OF, customer_ids=SAMPLE)
    pd.testing.assert_frame_equal(subset, full.loc[subset.index])
    assert sorted(subset.index) == sorted(SAMPLE)
    restricted = build_customer_features(synth.for_customers(SAMPLE), AS_OF)
    pd.testing.assert_frame_equal(restricted, full.loc[restricted.index])


def test_subset_candidates_equal_rows_of_full_run(synth) -> None:
    full_customers = build_customer_features(synth, AS_OF)
    ctx = _contexts(list(full_customers.index))
    full = build_candidate_features(full_customers, synth.offers, synth.contacts, ctx, AS_OF)
    sub_customers = full_customers.loc[SAMPLE]
    sub = build_candidate_features(sub_customers, synth.offers, synth.contacts, ctx, AS_OF)
    expected = full.set_index(["customer_id", "offer_id"]).loc[list(zip(sub["customer_id"], sub["offer_id"]))]
    pd.testing.assert_frame_equal(sub.set_index(["customer_id", "offer_id"]), expected)


@pytest.mark.parametrize("cid", SAMPLE)
def test_online_equals_batch(synth, cid: str) -> None:
    batch_customers = build_customer_features(synth, AS_OF)
    ctx = _contexts(list(batch_customers.index))
    batch = build_candidate_features(batch_customers, synth.offers, synth.contacts, ctx, AS_OF)

    own = lambda t: t[t["customer_id"] == cid]  # noqa: E731 - the one customer's rows, as a service holds them
    row = customer_features_online(own(synth.customers), own(synth.events), own(synth.contacts), AS_OF,
                                   consents=own(synth.consents))
    pd.testing.assert_frame_equal(row, batch_customers.loc[[cid]])
    online = candidate_features_online(row, synth.offers, own(synth.contacts), ctx[cid], AS_OF)
    expected = batch[batch["customer_id"] == cid].reset_index(drop=True)
    pd.testing.assert_frame_equal(online, expected)
    matrix = candidate_matrix(row, prepare_offers(synth.offers), own(synth.contacts), ctx[cid], AS_OF)
    np.testing.assert_array_equal(matrix, expected[list(CANDIDATE_FEATURES)].to_numpy())


def test_materialised_row_plus_live_contacts_equals_batch(synth, tmp_path) -> None:
    """The service path: features materialised yesterday + today's contact log == a batch run today
    for everything contact-derived, and the event-derived columns are those of the materialisation."""
    yesterday = AS_OF - pd.Timedelta(days=1)
    write_materialised(build_customer_features(synth, yesterday), tmp_path / "f.parquet", yesterday)
    frame, meta = read_materialised(tmp_path / "f.parquet")
    assert meta["as_of"] == yesterday
    cid = SAMPLE[0]
    live = synth.contacts[synth.contacts["customer_id"] == cid]
    online = candidate_features_online(frame.loc[[cid]], synth.offers, live, Context(channel="web"), AS_OF)
    today = build_customer_features(synth, AS_OF)
    batch = build_candidate_features(today.loc[[cid]], synth.offers, synth.contacts, Context(channel="web"), AS_OF)
    contact_cols = [c for c in CANDIDATE_FEATURES if c.startswith(("contacts_", "offer_exposures", "offer_accepts",
                    "offer_declines", "offer_ignores", "offer_days_since", "offer_cat_declines", "acceptance_rate",
                    "accepts_total", "declines_total", "ignores_total", "outbound_", "days_since_last_contact"))]
    pd.testing.assert_frame_equal(online[contact_cols], batch[contact_cols])
    stale = build_candidate_features(frame.loc[[cid]], synth.offers, synth.contacts, Context(channel="web"), AS_OF)
    pd.testing.assert_frame_equal(online, stale)


def test_arrow_and_python_lookup_paths_agree(synth, monkeypatch) -> None:
    """Large inputs use Arrow hash lookups, small ones Python dicts: both give the same features."""
    import features.arrays as arrays_mod
    import features.offers as offers_mod

    ctx = _contexts(list(synth.customers["customer_id"]))
    small_c = build_customer_features(synth, AS_OF)
    small = build_candidate_features(small_c, synth.offers, synth.contacts, ctx, AS_OF)
    monkeypatch.setattr(arrays_mod, "_ARROW_MIN_ROWS", 0)
    monkeypatch.setattr(offers_mod, "_SMALL", 0)
    arrow_c = build_customer_features(synth, AS_OF)
    pd.testing.assert_frame_equal(arrow_c, small_c)
    arrow = build_candidate_features(arrow_c, synth.offers, synth.contacts, ctx, AS_OF)
    pd.testing.assert_frame_equal(arrow, small)

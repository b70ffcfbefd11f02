"""The declared feature set matches what the builders return."""

from __future__ import annotations

import numpy as np

from features import (
    CANDIDATE_FEATURES,
    CUSTOMER_FEATURES,
    FEATURE_SET,
    Context,
    build_candidate_features,
    build_customer_features,
    customer_feature_names,
    prepare_offers,
)
from features.offers import offer_vocabulary
from tests.features.conftest import AS_OF


def test_declared_columns_are_the_built_columns(synth) -> None:
    customers = build_customer_features(synth, AS_OF)
    assert list(customers.columns) == [*CUSTOMER_FEATURES, "lifecycle", "top_category", "next_category"]
    offers = prepare_offers(synth.offers, vocabulary=offer_vocabulary(synth.offers["offer_id"]))
    candidates = build_candidate_features(customers, offers, synth.contacts, Context(channel="web"), AS_OF)
    assert list(candidates.columns) == ["customer_id", "offer_id", *CANDIDATE_FEATURES]
    # Missing by definition: the switching rate of a customer with fewer than two choices, and the
    # spread of the gaps between purchases of a customer with fewer than three purchases (1.6.0).
    undefined = {"customer_switch_rate", "purchase_gap_std_days", "purchase_gap_cv"}
    for frame, cols in ((customers, CUSTOMER_FEATURES), (candidates, CANDIDATE_FEATURES)):
        cols = [c for c in cols if c not in undefined]
        x = frame[list(cols)].to_numpy(dtype=np.float32)
        assert np.isfinite(x).all()
    assert np.isnan(build_candidate_features(customers, synth.offers, synth.contacts, Context(channel="web"),
                                             AS_OF)["offer_code"]).all()  # no vocabulary: no identity


def test_feature_set_declaration() -> None:
    assert FEATURE_SET.version.count(".") == 2
    assert FEATURE_SET.customer_features == CUSTOMER_FEATURES
    assert FEATURE_SET.candidate_features == CANDIDATE_FEATURES
    assert len(set(CANDIDATE_FEATURES)) == len(CANDIDATE_FEATURES)
    assert set(FEATURE_SET.categorical) <= set(CANDIDATE_FEATURES) | set(CUSTOMER_FEATURES)
    assert FEATURE_SET.categorical_in(CANDIDATE_FEATURES)[0] == "lifecycle_code"


def test_customer_feature_names_for_rules() -> None:
    names = customer_feature_names()
    for name in ("lifecycle", "tenure_days", "recency_days", "top_category", "next_category", "acceptance_rate"):
        assert name in names
    assert len(set(names)) == len(names)

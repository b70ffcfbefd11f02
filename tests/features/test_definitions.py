"""Every computed feature column is declared, and every declared one is computed.

Each computing function runs on a small generated world and the keys it returns are compared with
its own group's declaration; the aggregated lists (`CUSTOMER_FEATURES`, `CANDIDATE_FEATURES`) are
not consulted. Then the builders are shown to refuse a declaration that lacks a computed column or
names one that is not computed (nothing is silently dropped or left empty).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

import features.candidate as candidate_mod
import features.customer as customer_mod
from features import FEATURE_SET, Context, build_candidate_features, build_customer_features, customer_feature_names
from features.affinity import AFFINITY, affinity
from features.arrays import age_days
from features.behaviour import BEHAVIOUR, behaviour
from features.breadth import BREADTH, breadth
from features.consents import CONSENTS, consents
from features.contact_history import CONTACT_HISTORY, contact_history, encode_contacts
from features.context import CONTEXT, CONTEXT_FIT, context_columns, context_fit
from features.customer_rows import CANDIDATE_CUSTOMER, CustomerArrays
from features.definitions import FeatureDeclarationError, FeatureGroup
from features.events import encode_events
from features.labels import LABELS, labels
from features.lifecycle import LIFECYCLE, lifecycle
from features.choice_history import CHOICE_HISTORY, choice_history
from features.offer_history import OFFER_HISTORY, offer_history
from features.offers import OFFER, offer_columns, prepare_offers
from features.purchase_cycle import PURCHASE_CYCLE, purchase_cycle
from features.rfm import RFM, rfm
from features.stage import STAGE, stage
from features.config import LifecycleRules
from nbo.vocab import CATEGORIES
from tests.features.conftest import AS_OF

#: The column lists of feature set 1.4.0 (sha256 of the names joined by newlines, 16 hex digits).
#: A changed name or order must come with a new feature-set version: record its fingerprint here.
FINGERPRINTS: dict[str, dict[str, str]] = {
    "1.4.0": {"customer": "14fd7a9455542888", "candidate": "658a75b445c62691", "rule_names": "e49807304e451dc6"},
    # 1.5.0: the customer's choices per offer and category (CHOICE_HISTORY) and the offer's code
    # in the model's vocabulary (issue 20 items 2-3).
    "1.5.0": {"customer": "14fd7a9455542888", "candidate": "c7766c5290c673ea", "rule_names": "e49807304e451dc6"},
    # 1.6.0: 1.5.0 plus the purchase cycle (customer columns only). Recorded on main first without
    # the 1.5.0 candidate columns (candidate "658a75b445c62691"); these are the lists once merged.
    "1.6.0": {"customer": "1472452b62816807", "candidate": "c7766c5290c673ea", "rule_names": "87e6195357804513"},
}


def _fingerprint(names: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def _computed_customer_groups(data) -> dict[FeatureGroup, dict[str, object]]:
    """Each customer group's computing function run on `data`, as the builder chains them."""
    customers = data.customers[data.customers["signup_ts"] < AS_OF]
    index = pd.Index(customers["customer_id"].astype("str").to_numpy(), name="customer_id", dtype="str")
    n = len(index)
    ev = encode_events(data.events, index, AS_OF, CATEGORIES)
    computed: dict[FeatureGroup, dict[str, object]] = {RFM: rfm(ev, n, age_days(customers["signup_ts"], AS_OF))}
    computed[BEHAVIOUR], mats = behaviour(ev, n, CATEGORIES)
    computed[BREADTH] = breadth(mats, computed[RFM]["purchases_365d"], CATEGORIES)
    computed[CONTACT_HISTORY] = contact_history(data.contacts, index, AS_OF)
    computed[CONSENTS] = consents(data.consents, index, AS_OF)
    so_far = {k: v for part in computed.values() for k, v in part.items()}
    so_far["loyalty_member"] = customers["loyalty_member"].to_numpy(dtype=np.float64)
    computed[PURCHASE_CYCLE] = purchase_cycle(ev, n, computed[RFM]["recency_days"])
    so_far.update(computed[PURCHASE_CYCLE])
    computed[LIFECYCLE] = lifecycle(so_far, LifecycleRules())
    computed[LABELS] = labels({**so_far, **computed[LIFECYCLE]}, CATEGORIES)
    return computed


def test_each_customer_function_computes_exactly_its_declared_columns(synth) -> None:
    computed = _computed_customer_groups(synth)
    for group, values in computed.items():
        declared = [*group.columns(CATEGORIES), *group.text]
        assert len(declared) == len(set(declared)), group.name
        assert sorted(values) == sorted(declared), group.name
        assert all(len(v) == len(next(iter(values.values()))) for v in values.values()), group.name
    # every group of the frame was computed above (`profile` is copied from the customers table)
    assert {g.name for g in customer_mod.CUSTOMER_GROUPS} - {g.name for g in computed} == {"profile"}


def test_each_candidate_function_computes_exactly_its_declared_columns(synth) -> None:
    frame = build_customer_features(synth, AS_OF).iloc[:7]
    offers = prepare_offers(synth.offers)
    n_c, n_o = len(frame), len(offers)
    rows, offer_idx = np.repeat(np.arange(n_c), n_o), np.tile(np.arange(n_o), n_c)
    cust = CustomerArrays(frame, CATEGORIES)
    channel = np.array(["web", "email", None, "mail"] * (n_c * n_o // 4 + 1), dtype=object)[: n_c * n_o]
    ctx = context_columns(offers, offer_idx, channel=channel, hour=np.full(n_c * n_o, 9.0), day_of_week=np.zeros(n_c * n_o))
    computed = {
        AFFINITY: affinity(cust, rows, offers.category_code[offer_idx]),
        OFFER_HISTORY: offer_history(encode_contacts(synth.contacts, frame.index, AS_OF), n_c, offers),
        CHOICE_HISTORY: choice_history(encode_contacts(synth.contacts, frame.index, AS_OF), n_c, offers),
        STAGE: stage(cust.columns["days_since_activity"][rows], cust.columns["purchases_total"][rows], offers.kind_code[offer_idx]),
        OFFER: offer_columns(offers, offer_idx),
        CONTEXT: ctx,
        CONTEXT_FIT: context_fit(ctx["ctx_channel_code"], cust.columns["online_visit_share_365d"][rows]),
    }
    for group, values in computed.items():
        assert sorted(values) == sorted(group.columns()), group.name
        assert all(len(v) == n_c * n_o for v in values.values()), group.name
    # the customer columns of a candidate row are a selection of the customer frame's columns
    assert set(CANDIDATE_CUSTOMER.columns()) <= set(frame.columns)
    assert set(candidate_mod.CANDIDATE_GROUPS) == {CANDIDATE_CUSTOMER, *computed}


def test_frames_hold_the_declared_columns_in_group_order(synth) -> None:
    customers = build_customer_features(synth, AS_OF)
    declared = [c for g in customer_mod.CUSTOMER_GROUPS for c in g.columns(CATEGORIES)]
    declared += [c for g in customer_mod.CUSTOMER_GROUPS for c in g.text]
    assert list(customers.columns) == declared
    candidates = build_candidate_features(customers, synth.offers, synth.contacts, Context(channel="web"), AS_OF)
    assert list(candidates.columns) == ["customer_id", "offer_id", *(c for g in candidate_mod.CANDIDATE_GROUPS for c in g.columns())]


def _without_last(group: FeatureGroup) -> FeatureGroup:
    names = group.columns(CATEGORIES)
    return FeatureGroup(group.name, names[:-1], group.text)


def _with_extra(group: FeatureGroup) -> FeatureGroup:
    return FeatureGroup(group.name, (*group.columns(CATEGORIES), "not_computed_anywhere"), group.text)


@pytest.mark.parametrize("change", [_without_last, _with_extra], ids=["computed-not-declared", "declared-not-computed"])
def test_customer_builder_refuses_a_declaration_that_differs(synth, monkeypatch, change) -> None:
    groups = tuple(change(g) if g.name == "behaviour" else g for g in customer_mod.CUSTOMER_GROUPS)
    monkeypatch.setattr(customer_mod, "CUSTOMER_GROUPS", groups)
    with pytest.raises(FeatureDeclarationError, match="calls_90d|not_computed_anywhere"):
        build_customer_features(synth, AS_OF)


@pytest.mark.parametrize("change", [_without_last, _with_extra], ids=["computed-not-declared", "declared-not-computed"])
@pytest.mark.parametrize("name", ["AFFINITY", "OFFER_HISTORY", "CHOICE_HISTORY", "STAGE", "OFFER", "CONTEXT", "CONTEXT_FIT"])
def test_candidate_builder_refuses_a_declaration_that_differs(synth, monkeypatch, change, name) -> None:
    customers = build_customer_features(synth, AS_OF).iloc[:3]
    monkeypatch.setattr(candidate_mod, name, change(getattr(candidate_mod, name)))
    with pytest.raises(FeatureDeclarationError):
        build_candidate_features(customers, synth.offers, synth.contacts, Context(channel="web"), AS_OF)


def test_column_lists_are_pinned_to_the_feature_set_version() -> None:
    """Derived lists make a reorder easy to miss: a changed list without a version bump fails here."""
    pinned = FINGERPRINTS.get(FEATURE_SET.version)
    assert pinned is not None, f"record the fingerprints of feature set {FEATURE_SET.version} in FINGERPRINTS"
    got = {
        "customer": _fingerprint(FEATURE_SET.customer_features),
        "candidate": _fingerprint(FEATURE_SET.candidate_features),
        "rule_names": _fingerprint(customer_feature_names()),
    }
    assert got == pinned, "the columns changed: bump FEATURE_SET.version and record the new fingerprints"

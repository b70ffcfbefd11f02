"""The order of outcomes (issue 19 item 10, docs/policy.md §5), in both stores.

`pending` < `ignored` < `clicked` < `declined` < `accepted`: a show's stored outcome only moves up,
so `accepted` is final and the stored outcome does not depend on the order reports arrive in.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from serving.contact_store import OUTCOME_ORDER, OfferRef
from serving.contact_store.base import to_epoch
from serving.policy import ContactPolicy

T = datetime(2026, 3, 2, 12, 0)
A, B = OfferRef("o-a", "travel"), OfferRef("o-b", "travel")
POLICY = ContactPolicy()
REPORTED = OUTCOME_ORDER[1:]  # pending is not a report


def _show(store, customer: str = "c1"):
    return store.check_and_reserve(customer, "web", [A], T, POLICY, f"d-{customer}", {"o-a": 0.5})


def _stored(store, customer: str = "c1") -> tuple[str, datetime | None]:
    (row,) = store.export(customer)["contacts"]
    return row["outcome"], row["outcome_ts"]


def test_the_order_is_the_documented_one() -> None:
    assert OUTCOME_ORDER == ("pending", "ignored", "clicked", "declined", "accepted")


@pytest.mark.parametrize(("first", "second"), list(itertools.product(REPORTED, REPORTED)))
def test_a_report_replaces_the_outcome_only_when_it_ranks_higher(make_store, first, second) -> None:
    store = make_store()
    _show(store)
    t1, t2 = T + timedelta(hours=1), T + timedelta(hours=2)
    assert store.record_outcome("d-c1", "o-a", first, t1) is True
    assert store.record_outcome("d-c1", "o-a", second, t2) is True  # known show: True even when it changes nothing
    if OUTCOME_ORDER.index(second) > OUTCOME_ORDER.index(first):
        assert _stored(store) == (second, t2)
    else:
        assert _stored(store) == (first, t1)


def test_accepted_is_final(make_store) -> None:
    store = make_store()
    _show(store)
    store.record_outcome("d-c1", "o-a", "accepted", T + timedelta(hours=1))
    for i, later in enumerate(["declined", "clicked", "ignored", "accepted"]):
        store.record_outcome("d-c1", "o-a", later, T + timedelta(hours=2 + i))
    assert _stored(store) == ("accepted", T + timedelta(hours=1))


def test_the_stored_outcome_does_not_depend_on_the_arrival_order(make_store) -> None:
    store = make_store()
    reports = ["clicked", "ignored", "accepted", "declined"]
    for n, order in enumerate(itertools.permutations(reports)):
        customer = f"c{n}"
        _show(store, customer)
        for i, outcome in enumerate(order):
            store.record_outcome(f"d-{customer}", "o-a", outcome, T + timedelta(minutes=i))
        assert _stored(store, customer)[0] == "accepted", order


def test_a_decline_after_an_acceptance_still_starts_the_cooldowns(make_store) -> None:
    """The outcome stays `accepted`; the decline is kept apart and holds the offer back."""
    store = make_store()
    _show(store)
    store.record_outcome("d-c1", "o-a", "accepted", T + timedelta(hours=1))
    store.record_outcome("d-c1", "o-a", "declined", T + timedelta(hours=2))
    assert _stored(store)[0] == "accepted"
    h = store.history("c1", T + timedelta(days=1))
    assert h.last_decline_offer == {"o-a": to_epoch(T + timedelta(hours=2))}
    r = store.check_and_reserve("c1", "web", [A, B], T + timedelta(days=1), POLICY, "d2", {"o-a": 0.5, "o-b": 0.5})
    assert dict(r.refused) == {"o-a": "cooldown_offer", "o-b": "cooldown_category"}



@pytest.mark.parametrize("outcome", ["ignored", "clicked", "accepted"])
def test_only_a_decline_starts_a_cooldown(make_store, outcome) -> None:
    store = make_store()
    _show(store)
    assert store.record_outcome("d-c1", "o-a", outcome, T + timedelta(hours=1))
    h = store.history("c1", T + timedelta(days=1))
    assert h.last_decline_offer == {} and h.last_decline_category == {}
    r = store.check_and_reserve("c1", "web", [A, B], T + timedelta(days=1), POLICY, "d2", {"o-a": 0.5, "o-b": 0.5})
    assert r.refused == ()

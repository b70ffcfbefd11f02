"""The Python cap definition (`serving.contact_store.base`) on hand-built histories, the time
conversions, and the `ContactStore` defaults (used by stores that do not override them)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

import pytest

from serving.caps import MEASURE_ADDS, Limit
from serving.contact_store import ContactHistory, ContactRecord, ContactStore, OfferRef, ReserveRequest
from serving.contact_store.base import (
    DAY,
    MEASURES,
    check_propensities,
    decision_refusal,
    from_epoch,
    measure,
    offer_refusal,
    split_offers,
    supersedes,
    to_epoch,
)
from serving.policy import ContactPolicy

T = datetime(2026, 3, 2, 12, 0)
NOW = to_epoch(T)
A, B, C = OfferRef("o-a", "travel"), OfferRef("o-b", "travel"), OfferRef("o-c", "food")
POLICY = ContactPolicy()


def _rec(decision: str, offer: OfferRef, channel: str, days_ago: float) -> ContactRecord:
    return ContactRecord(decision, offer.offer_id, offer.category, channel, NOW - days_ago * DAY)


@pytest.fixture
def local_time_is_not_utc(monkeypatch: pytest.MonkeyPatch):
    """Naive datetimes are UTC in nbo whatever the machine's zone: run with a zone 5 h off UTC."""
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_naive_datetimes_are_utc_whatever_the_local_zone(local_time_is_not_utc) -> None:
    assert to_epoch(datetime(1970, 1, 2)) == DAY
    assert from_epoch(DAY) == datetime(1970, 1, 2)
    aware = datetime(1970, 1, 2, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert to_epoch(aware) == DAY  # an aware datetime is converted, not relabelled
    assert to_epoch(datetime(1970, 1, 2, tzinfo=UTC)) == DAY
    assert from_epoch(to_epoch(T + timedelta(microseconds=7))) == T + timedelta(microseconds=7)


def test_history_counts_at_the_window_edge() -> None:
    h = ContactHistory("c", NOW, (
        _rec("d1", A, "email", 7), _rec("d2", A, "email", 7 - 1 / DAY), _rec("d2", C, "email", 7 - 1 / DAY),
        _rec("d3", B, "sms", 1), _rec("d4", A, "web", -1),  # a contact later than now counts too
    ))
    assert h.channel_count(["email"], 7) == 1  # d1 is exactly 7 days old: out; d2 counts once (2 shows)
    assert h.channel_count(["email", "sms"], 7) == 2
    assert h.channel_count(["email", "sms", "web"], 8) == 4
    assert h.offer_shows("o-a", 7) == 2 and h.offer_shows("o-a", 8) == 3 and h.offer_shows("o-z", 8) == 0
    assert h.offer_show_counts(7) == {"o-a": 2, "o-c": 1, "o-b": 1}


def test_measures_and_refusals_on_a_hand_built_history() -> None:
    h = ContactHistory("c", NOW, (_rec("d1", A, "email", 1), _rec("d2", A, "web", 2), _rec("d3", A, "web", 3)),
                       {"o-b": NOW - 6 * DAY}, {"home": NOW - 6 * DAY})
    assert measure(h, Limit("x", "contacts", 1, 7, ("web",))) == 2
    assert measure(h, Limit("x", "shows", 1, 7), A) == 3
    assert measure(h, Limit("x", "offer_declines", 0, 7), B) == 1
    assert measure(h, Limit("x", "offer_declines", 0, 6), B) == 0  # exactly 6 days ago: over
    assert measure(h, Limit("x", "category_declines", 0, 7), OfferRef("o-q", "home")) == 1
    assert measure(h, Limit("x", "category_declines", 0, 7), C) == 0
    with pytest.raises(ValueError, match="unknown measure 'pageviews'"):
        Limit("x", "pageviews", 0, 7)
    assert set(MEASURES) == set(MEASURE_ADDS)  # every measure of serving.caps has its Python definition
    assert [Limit("x", m, 2, 1).allowed for m in ("contacts", "shows", "offer_declines")] == [1, 1, 2]
    # offer_refusal counts shows itself, or trusts the counts it is given (computed once for many offers)
    assert offer_refusal(h, A, POLICY) == "cap_offer"
    assert offer_refusal(h, A, POLICY, {"o-a": 2}) is None
    assert offer_refusal(h, C, POLICY) is None
    assert offer_refusal(h, C, POLICY, {"o-c": 3}) == "cap_offer"
    assert offer_refusal(h, B, POLICY, {}) == "cooldown_offer"
    assert offer_refusal(h, OfferRef("o-q", "home"), POLICY, {}) == "cooldown_category"
    assert decision_refusal(h, "email", POLICY) is None
    assert decision_refusal(ContactHistory("c", NOW, (_rec("d1", A, "email", 1), _rec("d2", B, "email", 2))),
                            "email", POLICY) == "cap_channel"
    assert split_offers(h, "web", [A, C, A, B], POLICY) == ([C], [("o-a", "cap_offer"), ("o-b", "cooldown_offer")])


def test_outcome_ranks_and_propensities() -> None:
    assert supersedes("accepted", "declined") and not supersedes("declined", "accepted")
    assert supersedes("ignored", "pending") and not supersedes("clicked", "clicked")
    check_propensities([A], {"o-a": 1.0})
    for bad in (0.0, 1.0000001, 1.5, float("nan"), -0.1):
        with pytest.raises(ValueError, match="propensity"):
            check_propensities([A], {"o-a": bad})
    with pytest.raises(ValueError, match="propensity"):
        check_propensities([A], {})


class _AbstractOnly(ContactStore):
    """A store that implements only the abstract methods (by delegation to a real SQLite store),
    so every other method is `ContactStore`'s default, as in stores that do not override them."""

    def __init__(self, inner: ContactStore) -> None:
        self.inner, self.horizon_days = inner, inner.horizon_days

    def check_and_reserve(self, *args, **kwargs):
        return self.inner.check_and_reserve(*args, **kwargs)

    def history(self, customer_id: str, now: datetime) -> ContactHistory:
        return self.inner.history(customer_id, now)

    def record_outcome(self, decision_id: str, offer_id: str, outcome: str, ts: datetime) -> bool:
        return self.inner.record_outcome(decision_id, offer_id, outcome, ts)

    def forget(self, customer_id: str) -> int:
        return self.inner.forget(customer_id)

    def export(self, customer_id: str) -> dict[str, list[dict[str, object]]]:
        return self.inner.export(customer_id)


def _requests(tag: str) -> list[ReserveRequest]:
    p: Mapping[str, float] = {"o-a": 0.5, "o-b": 0.25, "o-c": 0.125}
    return [ReserveRequest("c1", "email", (A, C), f"{tag}1", p, {"m": "1"}),
            ReserveRequest("c2", "web", (B,), f"{tag}2", p),
            ReserveRequest("c1", "email", (B,), f"{tag}3", p),
            ReserveRequest("c1", "email", (B,), f"{tag}4", p),  # the third e-mail in a week: refused
            ReserveRequest("c2", "web", (B,), f"{tag}2", p),  # a decision id seen before: None
            ReserveRequest("c2", "web", (), f"{tag}5", p, None, ("explore_no_offer", 0.25))]  # logged with why


def test_the_defaults_answer_like_the_stores_overrides(make_store) -> None:
    fast, plain = make_store(), _AbstractOnly(make_store())
    for store in (fast, plain):
        store.expect_bulk_writes()  # a hint: the default does nothing
    got = {}
    for store in (fast, plain):
        out = store.check_and_reserve_many(_requests("d"), T, POLICY)
        got[store] = [None if r is None else ([o.offer_id for o in r.reserved], r.refused) for r in out]
        assert out[4] is None and out[3] is not None and out[3].refused == (("o-b", "cap_channel"),)
    assert got[fast] == got[plain]
    for cid in ("c1", "c2"):  # the same decision log, model versions included
        assert plain.export(cid) == fast.export(cid)
    assert plain.export("c1")["decisions"][0]["model_versions"] == {"m": "1"}
    no_offer = [(d["no_offer"], d["no_offer_propensity"]) for d in fast.export("c2")["decisions"]]
    assert no_offer == [(None, None), ("explore_no_offer", 0.25)]
    assert plain.check_and_reserve_many([], T, POLICY) == []
    with pytest.raises(ValueError, match="already recorded"):  # other errors are not swallowed
        plain.check_and_reserve("c1", "email", [A], T, POLICY, "d1", {"o-a": 0.5})
    with pytest.raises(ValueError, match="propensity"):
        plain.check_and_reserve_many([ReserveRequest("c3", "web", (A,), "x", {"o-a": 2.0})], T, POLICY)
    now = T + timedelta(hours=1)
    for ids in (["c1", "c2", "nobody"], ["c2"]):
        h_fast, h_plain = fast.histories(ids, now), plain.histories(ids, now)
        for cid in ids:
            if cid in h_fast or cid in h_plain:
                a, b = h_fast.get(cid) or fast.history(cid, now), h_plain[cid]
                assert (sorted(a.contacts, key=repr), a.now) == (sorted(b.contacts, key=repr), b.now)
        assert set(h_plain) == set(ids)
    assert plain.contact_rows("c1") == fast.contact_rows("c1") and len(plain.contact_rows("c1")) == 3
    state = plain.read_customer("c1", now)
    assert state.rows == fast.contact_rows("c1") and len(state.history.contacts) == 3
    assert state.history.customer_id == "c1" and state.history.now == to_epoch(now)
    assert plain.contact_rows_many(["c1", "c2", "nobody"]) == fast.contact_rows_many(["c1", "c2", "nobody"])
    assert set(plain.contact_rows_many(["c1", "c2", "nobody"])) == {"c1", "c2"}
    plain.close()

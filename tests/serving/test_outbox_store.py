"""The programmes' outbox in both contact stores (SQLite file, a real redis-server): a trigger
occurrence is claimed once, settled, paged by status and time, acknowledged once, and erased
by `forget`."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

T0 = datetime(2025, 9, 1, 10, 0)


def _fill(store, n: int = 5) -> list[int]:  # noqa: ANN001
    ids = []
    for i in range(n):
        oid = store.outbox_claim(f"p:c{i % 2}:e{i}", "p", f"c{i % 2}", T0 + timedelta(hours=i))
        assert oid is not None
        store.outbox_settle(oid, "pending" if i % 3 else "none", T0 + timedelta(hours=i),
                            scheduled=T0 + timedelta(hours=i, minutes=5) if i % 3 else None,
                            channel="email" if i % 3 else None, offer_id="o-1" if i % 3 else None,
                            decision_id=f"d{i}" if i % 3 else None, reason=None if i % 3 else "control_group")
        ids.append(oid)
    return ids


def test_a_trigger_occurrence_is_claimed_once(make_store) -> None:  # noqa: ANN001
    store = make_store()
    first = store.outbox_claim("welcome:c1:first_purchase", "welcome", "c1", T0)
    assert isinstance(first, int) and first > 0
    assert store.outbox_claim("welcome:c1:first_purchase", "welcome", "c1", T0 + timedelta(hours=1)) is None
    second = store.outbox_claim("welcome:c2:first_purchase", "welcome", "c2", T0)
    assert second is not None and second > first
    [row, _] = store.outbox_page(None, None, 0, 10)
    assert (row.outbox_id, row.status, row.customer_id, row.programme) == (first, "deciding", "c1", "welcome")


def test_settle_page_and_filters(make_store) -> None:  # noqa: ANN001
    store = make_store()
    ids = _fill(store)
    pending = store.outbox_page("pending", None, 0, 100)
    assert [e.outbox_id for e in pending] == [ids[1], ids[2], ids[4]]
    e = pending[0]
    assert (e.channel, e.offer_id, e.decision_id, e.reason) == ("email", "o-1", "d1", None)
    assert e.scheduled == pytest.approx((T0 + timedelta(hours=1, minutes=5) - datetime(1970, 1, 1)).total_seconds())
    none = store.outbox_page("none", None, 0, 100)
    assert [(x.outbox_id, x.reason) for x in none] == [(ids[0], "control_group"), (ids[3], "control_group")]
    # pages: `after` is the last id seen; `limit` bounds a page
    page1 = store.outbox_page(None, None, 0, 2)
    page2 = store.outbox_page(None, None, page1[-1].outbox_id, 2)
    page3 = store.outbox_page(None, None, page2[-1].outbox_id, 2)
    assert [x.outbox_id for x in page1 + page2 + page3] == ids
    assert store.outbox_page(None, None, ids[-1], 2) == []
    # since: fired at or after
    assert [x.outbox_id for x in store.outbox_page("pending", T0 + timedelta(hours=2), 0, 100)] == [ids[2], ids[4]]
    assert store.outbox_page(None, T0 + timedelta(days=1), 0, 100) == []
    assert store.outbox_page("pending", None, 0, 100)[0].record()["scheduled"] == "2025-09-01T11:05:00Z"


def test_ack_moves_pending_rows_once(make_store) -> None:  # noqa: ANN001
    store = make_store()
    ids = _fill(store)
    got = store.outbox_ack([ids[1], ids[0], 999_999], "sent", T0 + timedelta(days=1))
    assert got == {ids[1]: "sent", ids[0]: "none"}  # a `none` row is no send: not acknowledged; unknown left out
    again = store.outbox_ack([ids[1]], "failed", T0 + timedelta(days=1))
    assert again == {ids[1]: "sent"}  # acknowledged once: the first acknowledgement stands
    assert [x.outbox_id for x in store.outbox_page("pending", None, 0, 100)] == [ids[2], ids[4]]
    assert [x.outbox_id for x in store.outbox_page("sent", None, 0, 100)] == [ids[1]]
    assert store.outbox_ack([ids[2], ids[4]], "failed", T0)[ids[4]] == "failed"
    assert store.outbox_page("pending", None, 0, 100) == []


def test_forget_erases_the_customers_outbox_rows(make_store) -> None:  # noqa: ANN001
    store = make_store()
    ids = _fill(store)
    store.forget("c0")
    left = store.outbox_page(None, None, 0, 100)
    assert {x.customer_id for x in left} == {"c1"} and [x.outbox_id for x in left] == [ids[1], ids[3]]
    assert [x.outbox_id for x in store.outbox_page("pending", None, 0, 100)] == [ids[1]]

"""Consent changes recorded at runtime in the contact store (issue 22 item 2), in both stores (a real
SQLite file and the private redis-server): shared by every reader, idempotent, exported, erased by
`forget`, and merged with the data's consents table by `ConsentBook.state` (latest wins, a tie is a
withdrawal)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from serving.contact_store import ConsentBook
from serving.contact_store.base import ConsentChange, to_epoch
from tests.serving.conftest import StoreFactory

T0 = datetime(2026, 3, 2, 12, 0)
S = timedelta(seconds=1)


def test_a_recorded_change_is_read_back_by_every_reader_once(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.read_customer("c-1", T0).consents == ()
    assert store.record_consent("c-1", "email", False, T0) is True
    assert store.record_consent("c-1", "email", False, T0) is False  # the same change again: nothing new
    assert store.record_consent("c-1", "email", True, T0 + S) is True
    assert store.record_consent("c-2", "sms", True, T0) is True
    got = sorted(store.read_customer("c-1", T0 + S).consents, key=lambda c: c.ts)
    assert got == [ConsentChange("email", to_epoch(T0), False), ConsentChange("email", to_epoch(T0 + S), True)]
    many = store.consent_changes(["c-1", "c-2", "c-none", "c-1"])
    assert set(many) == {"c-1", "c-2"} and many["c-2"] == (ConsentChange("sms", to_epoch(T0), True),)
    exported = store.export("c-1")["consents"]
    assert exported == [{"channel": "email", "ts": T0, "granted": False}, {"channel": "email", "ts": T0 + S, "granted": True}]


def test_forget_erases_the_recorded_consents(make_store: StoreFactory) -> None:
    store = make_store()
    store.record_consent("c-gone", "email", True, T0)
    store.record_consent("c-kept", "email", True, T0)
    store.forget("c-gone")
    assert store.read_customer("c-gone", T0).consents == () and store.export("c-gone")["consents"] == []
    assert store.consent_changes(["c-gone", "c-kept"]).keys() == {"c-kept"}


def test_a_consent_outlives_the_contact_horizon(make_store: StoreFactory) -> None:
    """Contacts expire after the horizon (Redis keys, SQLite reads); a withdrawal never does."""
    store = make_store(horizon_days=1)
    store.record_consent("c-1", "email", False, T0)
    assert store.read_customer("c-1", T0 + timedelta(days=400)).consents == (ConsentChange("email", to_epoch(T0), False),)


def _book(rows: list[tuple[str, str, bool, datetime]]) -> ConsentBook:
    return ConsentBook(pd.DataFrame(rows, columns=["customer_id", "channel", "granted", "ts"]))


@pytest.mark.parametrize(
    ("table", "live", "at", "expected"),
    [
        ([("c", "email", True, T0)], [("email", T0 + S, False)], T0 + S, False),  # a later withdrawal wins
        ([("c", "email", True, T0)], [("email", T0 + S, False)], T0, True),  # ... from its time on
        ([("c", "email", False, T0 + S)], [("email", T0, True)], T0 + 2 * S, False),  # an older grant loses
        ([("c", "email", True, T0)], [("email", T0, False)], T0, False),  # a tie: the withdrawal
        ([("c", "email", False, T0)], [("email", T0, True)], T0, False),  # a tie the other way round
        ([], [("email", T0, True), ("email", T0, False)], T0, False),  # a tie among live changes
        ([], [("email", T0, True)], T0 - S, None),  # nothing yet
        ([], [("sms", T0, False)], T0, None),  # another channel's change
        ([("c", "email", True, T0)], [], T0, True),  # no live change: the table alone
    ],
)
def test_live_changes_merge_with_the_table_latest_wins_tie_withdraws(table, live, at, expected) -> None:
    book = _book(table)
    changes = [ConsentChange(ch, to_epoch(ts), g) for ch, ts, g in live]
    assert book.state("c", "email", at, changes) is expected

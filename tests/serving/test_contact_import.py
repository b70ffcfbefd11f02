"""Seeding a contact store with the data's contact history (issue 19 item 1), on a real SQLite file
and a private redis-server: the caps and cooldowns count a company's past contacts, once."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pandas as pd

from serving.contact_store import OfferRef
from serving.policy import ContactPolicy

T0 = datetime(2026, 3, 2, 12, 0)
POLICY = ContactPolicy()  # email 2 / 7 days, offer cooldown 30 days, category cooldown 7 days
A, B, C = OfferRef("o-a", "travel"), OfferRef("o-b", "travel"), OfferRef("o-c", "food")
CATEGORIES = {"o-a": "travel", "o-b": "travel", "o-c": "food"}
_ids = itertools.count()


def reserve(store, customer, channel, offers, now):  # noqa: ANN001, ANN201
    return store.check_and_reserve(customer, channel, offers, now, POLICY, f"new{next(_ids)}",
                                   {o.offer_id: 0.5 for o in offers})


def contacts(*rows: tuple[str, str, str, str, float, str, float | None]) -> pd.DataFrame:
    """(decision_id, customer_id, offer_id, channel, days before T0, outcome, outcome days before T0)."""
    return pd.DataFrame({
        "decision_id": pd.Series([r[0] for r in rows], dtype=str),
        "customer_id": pd.Series([r[1] for r in rows], dtype=str),
        "offer_id": pd.Series([r[2] for r in rows], dtype=str),
        "channel": pd.Series([r[3] for r in rows], dtype=str),
        "ts": pd.Series([T0 - timedelta(days=r[4]) for r in rows], dtype="datetime64[ns]"),
        "propensity": [0.25] * len(rows),
        "outcome": pd.Series([r[5] for r in rows], dtype=str),
        "outcome_ts": pd.Series([None if r[6] is None else T0 - timedelta(days=r[6]) for r in rows],
                                dtype="datetime64[ns]"),
    })


def test_past_emails_in_the_data_count_for_the_email_cap(make_store) -> None:
    data = contacts(
        ("h1", "c1", "o-a", "email", 1, "ignored", 0.5),
        ("h2", "c1", "o-b", "email", 3, "pending", None),
        ("h3", "c1", "o-c", "email", 5, "clicked", 4),
        ("h4", "c2", "o-a", "email", 10, "ignored", None),  # outside the 7-day window
        ("h5", "c2", "o-b", "email", 12, "ignored", None),
        ("h6", "c2", "o-c", "email", 13, "ignored", None),
    )
    fresh = make_store()
    assert reserve(fresh, "c1", "email", [A], T0).ok  # what main did: the data's e-mails ignored
    store = make_store()
    assert store.import_history(data, CATEGORIES, T0) == 6
    got = reserve(store, "c1", "email", [A, B, C], T0)
    assert not got.ok and dict(got.refused) == {"o-a": "cap_channel", "o-b": "cap_channel", "o-c": "cap_channel"}
    assert reserve(store, "c2", "email", [A], T0).ok  # e-mails older than the window do not count
    # the caps count them, the features do not read them again (they read the data's table)
    assert store.history("c1", T0).channel_count(["email"], 7) == 3
    assert store.contact_rows("c1") == [] and store.read_customer("c1", T0).rows == []
    assert store.read_customer("c1", T0).history.channel_count(["email"], 7) == 3
    assert store.contact_rows_many(["c1"]) == {}
    # nbo's own shows are still rows of the features (c2's e-mail reserved above, not its imported ones)
    assert [r["offer_id"] for r in store.contact_rows("c2")] == ["o-a"]
    assert list(store.contact_rows_many(["c1", "c2"])) == ["c2"] and len(store.contact_rows_many(["c2"])["c2"]) == 1


def test_an_offer_declined_in_the_data_is_not_offered_again_within_the_cooldown(make_store) -> None:
    data = contacts(
        ("h1", "c1", "o-a", "web", 10, "declined", 10),  # declined 10 days ago: offer cooldown 30 days
        ("h2", "c1", "o-c", "web", 40, "declined", 40),  # 40 days ago: over
        ("h3", "c2", "o-a", "web", 3, "declined", None),  # declined without a time: from the contact
    )
    store = make_store()
    store.import_history(data, CATEGORIES, T0)
    got = reserve(store, "c1", "web", [A, B, C], T0)
    assert dict(got.refused) == {"o-a": "cooldown_offer"}  # the category cooldown (7 d) is over too
    assert [o.offer_id for o in got.reserved] == ["o-b", "o-c"]
    got = reserve(store, "c2", "web", [A, B, C], T0)
    assert dict(got.refused) == {"o-a": "cooldown_offer", "o-b": "cooldown_category"}


def test_seeding_twice_counts_once(make_store) -> None:
    data = contacts(("h1", "c1", "o-a", "email", 1, "ignored", None), ("h1", "c1", "o-c", "email", 1, "ignored", None))
    store = make_store()
    assert store.import_history(data, CATEGORIES, T0) == 2
    assert store.import_history(data, CATEGORIES, T0 + timedelta(hours=1)) == 0
    # a longer export later: only the new show is imported
    more = pd.concat([data, contacts(("h2", "c1", "o-b", "web", 0.5, "accepted", 0.4))], ignore_index=True)
    assert store.import_history(more, CATEGORIES, T0) == 1
    history = store.history("c1", T0)
    assert sorted((c.decision_id, c.offer_id) for c in history.contacts) == [("h1", "o-a"), ("h1", "o-c"), ("h2", "o-b")]
    assert history.offer_shows("o-a", 30) == 1
    assert reserve(store, "c1", "email", [B], T0).ok  # one e-mail in the data, cap 2: one more allowed
    assert not reserve(store, "c1", "email", [B], T0).ok


def test_only_the_horizon_is_imported_and_forget_erases_imported_shows(make_store) -> None:
    data = contacts(("h1", "c1", "o-a", "email", 29, "declined", 29), ("h2", "c1", "o-b", "sms", 31, "declined", 31))
    store = make_store(horizon_days=30)
    assert store.import_history(data, CATEGORIES, T0) == 1
    assert [c.offer_id for c in store.history("c1", T0).contacts] == ["o-a"]
    assert set(store.history("c1", T0).last_decline_offer) == {"o-a"}
    store.forget("c1")
    after = store.history("c1", T0)
    assert after.contacts == () and dict(after.last_decline_offer) == {}
    assert store.import_history(contacts(), CATEGORIES, T0) == 0  # an empty table is nothing to import


def test_an_erased_customer_is_not_imported_again_at_the_next_start(make_store) -> None:
    """`forget`, then a restart seeds the store from a data directory that still holds the
    customer's rows: they stay erased (the neighbour's history is imported as before)."""
    from serving.engine import seed_store

    data = contacts(("h1", "c1", "o-a", "email", 1, "ignored", 0.5), ("h2", "c2", "o-b", "email", 2, "ignored", None))
    offers = pd.DataFrame({"offer_id": ["o-a", "o-b", "o-c"], "category": ["travel", "travel", "food"]})
    store = make_store()
    assert seed_store(store, data, offers) == 2
    store.forget("c1")
    assert store.history("c1", T0).channel_count(["email"], 7) == 0
    seed_store(store, data, offers)  # the next `nbo serve` / `nbo score` start
    assert store.history("c1", T0).channel_count(["email"], 7) == 0
    assert store.export("c1") == {"contacts": [], "decisions": []} or not any(store.export("c1").values())
    assert store.history("c2", T0).channel_count(["email"], 7) == 1


def test_shows_count_whatever_the_timestamp_unit_or_zone(make_store) -> None:
    """A frame built from Python datetimes holds microseconds under pandas 3, a company's export may
    carry a UTC offset: every show is still imported at its instant (it was silently dropped when
    the unit was taken for nanoseconds)."""
    base = contacts(("h1", "c1", "o-a", "email", 1, "ignored", None), ("h2", "c1", "o-b", "email", 2, "ignored", None),
                    ("h3", "c1", "o-c", "email", 3, "ignored", None))
    as_us = base.assign(ts=base["ts"].astype("datetime64[us]"), outcome_ts=base["outcome_ts"].astype("datetime64[us]"))
    # the same instants, written in Paris time (UTC+1 in March)
    zoned = base.assign(ts=base["ts"].dt.tz_localize("UTC").dt.tz_convert("Europe/Paris"))
    for frame in (as_us, zoned):
        store = make_store()
        assert store.import_history(frame, CATEGORIES, T0) == 3
        assert store.history("c1", T0).channel_count(["email"], 7) == 3
        assert not reserve(store, "c1", "email", [A], T0).ok

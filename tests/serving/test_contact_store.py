"""Contact stores (SQLite and a real Redis): caps, cooldowns, feedback, GDPR, concurrency."""

from __future__ import annotations

import itertools
import random
import threading
from collections import defaultdict
from datetime import datetime, timedelta

import pytest

from nbo.errors import ConfigError
from serving.contact_store import OfferRef, RedisContactStore
from serving.contact_store.base import DAY, to_epoch
from serving.policy import ContactPolicy, parse_policy
from tests.serving.helpers import max_in_window

T0 = datetime(2026, 3, 2, 12, 0)
POLICY = ContactPolicy()
A, B, C = OfferRef("o-a", "travel"), OfferRef("o-b", "travel"), OfferRef("o-c", "food")
_ids = itertools.count()


def reserve(store, customer, channel, offers, now, policy=POLICY):
    return store.check_and_reserve(
        customer, channel, offers, now, policy, f"d{next(_ids)}", {o.offer_id: 0.5 for o in offers}, {"propensity": "3"}
    )


def test_channel_cap_counts_contacts_and_window_slides(make_store) -> None:
    store = make_store()
    assert reserve(store, "c1", "email", [A, C], T0).ok  # one contact, two shows
    assert reserve(store, "c1", "email", [B], T0 + timedelta(days=1)).ok
    r = reserve(store, "c1", "email", [C], T0 + timedelta(days=2))
    assert not r.ok and r.refused == (("o-c", "cap_channel"),)
    # a window is (now - 7 days, now]: exactly 7 days after the first contact it no longer counts
    assert reserve(store, "c1", "email", [C], T0 + timedelta(days=7)).ok
    assert not reserve(store, "c1", "email", [C], T0 + timedelta(days=7, hours=1)).ok
    # other customers and channels are independent
    assert reserve(store, "c2", "email", [A], T0 + timedelta(days=2)).ok
    assert reserve(store, "c1", "web", [A], T0 + timedelta(days=2)).ok


def test_outbound_cap_spans_channels(make_store) -> None:
    store = make_store()
    offers = [OfferRef(f"o{i}", f"k{i}") for i in range(6)]
    for i, ch in enumerate(["email", "sms", "push", "mail"]):
        assert reserve(store, "c1", ch, [offers[i]], T0 + timedelta(hours=i)).ok
    r = reserve(store, "c1", "push", [offers[5]], T0 + timedelta(hours=5))
    assert r.refused == (("o5", "cap_outbound"),)
    assert reserve(store, "c1", "web", [offers[5]], T0 + timedelta(hours=5)).ok  # banners are not outbound


def test_offer_cap_and_unconfirmed_reservations_count(make_store) -> None:
    store = make_store()
    for day in range(3):  # no feedback at all: pending reservations are contacts
        assert reserve(store, "c1", "web", [A], T0 + timedelta(days=day)).ok
    r = reserve(store, "c1", "web", [A, C], T0 + timedelta(days=3))
    assert [o.offer_id for o in r.reserved] == ["o-c"]
    assert r.refused == (("o-a", "cap_offer"),)
    assert reserve(store, "c1", "web", [A], T0 + timedelta(days=30)).ok  # first show left the 30-day window


def test_decline_cooldowns_and_idempotent_feedback(make_store) -> None:
    store = make_store()
    r = reserve(store, "c1", "web", [A], T0)
    assert store.record_outcome(r.decision_id, "o-a", "declined", T0 + timedelta(hours=1))
    # the same feedback again, later: changes nothing (the cooldown does not move)
    assert store.record_outcome(r.decision_id, "o-a", "declined", T0 + timedelta(days=5))
    assert store.export("c1")["contacts"][0]["outcome_ts"] == T0 + timedelta(hours=1)
    later = T0 + timedelta(days=2)
    got = reserve(store, "c1", "web", [A, B, C], later)
    assert dict(got.refused) == {"o-a": "cooldown_offer", "o-b": "cooldown_category"}
    assert [o.offer_id for o in got.reserved] == ["o-c"]
    # category cooldown (7 days) ends before the offer cooldown (30 days)
    got = reserve(store, "c1", "web", [A, B], T0 + timedelta(days=7, hours=1))
    assert dict(got.refused) == {"o-a": "cooldown_offer"} and [o.offer_id for o in got.reserved] == ["o-b"]
    assert reserve(store, "c1", "web", [A], T0 + timedelta(days=30, hours=1)).ok
    # later positive feedback does not lift a cooldown
    r2 = reserve(store, "c2", "web", [A], T0)
    store.record_outcome(r2.decision_id, "o-a", "declined", T0)
    store.record_outcome(r2.decision_id, "o-a", "accepted", T0 + timedelta(hours=1))
    assert dict(reserve(store, "c2", "web", [A], T0 + timedelta(days=1)).refused) == {"o-a": "cooldown_offer"}


def test_record_outcome_reports_unknown_decisions(make_store) -> None:
    store = make_store()
    r = reserve(store, "c1", "web", [A], T0)
    assert store.record_outcome(r.decision_id, "o-a", "clicked", T0) is True
    assert store.record_outcome("no-such-decision", "o-a", "clicked", T0) is False
    assert store.record_outcome(r.decision_id, "o-zzz", "clicked", T0) is False
    with pytest.raises(ValueError, match="outcome"):
        store.record_outcome(r.decision_id, "o-a", "pending", T0)
    assert store.export("c1")["contacts"][0]["outcome"] == "clicked"


def test_decision_log_keeps_propensities_and_versions(make_store) -> None:
    store = make_store()
    store.check_and_reserve("c1", "email", [A, C], T0, POLICY, "dec-1", {"o-a": 0.9, "o-c": 0.25}, {"propensity": "7"})
    store.check_and_reserve("c1", "email", [], T0, POLICY, "dec-2", {}, None)  # "no offer" is logged too
    out = store.export("c1")
    assert [(d["decision_id"], d["n_offers"], d["model_versions"]) for d in out["decisions"]] == [
        ("dec-1", 2, {"propensity": "7"}),
        ("dec-2", 0, {}),
    ]
    assert [(c["offer_id"], c["rank"], c["propensity"], c["outcome"], c["ts"]) for c in out["contacts"]] == [
        ("o-a", 1, 0.9, "pending", T0),
        ("o-c", 2, 0.25, "pending", T0),
    ]
    with pytest.raises(ValueError, match="already recorded"):
        store.check_and_reserve("c1", "email", [A], T0, POLICY, "dec-1", {"o-a": 0.5})
    with pytest.raises(ValueError, match="propensity"):
        store.check_and_reserve("c1", "email", [A], T0, POLICY, "dec-3", {"o-a": 0.0})


def test_timestamps_and_propensities_round_trip_exactly(make_store) -> None:
    store = make_store()
    now = datetime(2026, 3, 2, 12, 0, 0, 123456)
    store.check_and_reserve("c1", "web", [A], now, POLICY, "d-exact", {"o-a": 0.123456789012345678})
    (row,) = store.export("c1")["contacts"]
    assert row["ts"] == now and row["propensity"] == 0.123456789012345678
    assert store.history("c1", now).contacts[0].ts == to_epoch(now)
    # the window edge is exact to the microsecond: 1 day later minus 1 us the contact still counts
    edge = now + timedelta(days=1)
    one_a_day = parse_policy("[caps]\nweb = { max = 1, days = 1 }\n")
    assert not store.check_and_reserve("c1", "web", [C], edge - timedelta(microseconds=1), one_a_day, "d-e1", {"o-c": 1.0}).ok
    assert store.check_and_reserve("c1", "web", [C], edge, one_a_day, "d-e2", {"o-c": 1.0}).ok


def test_history_reports_recent_contacts_and_declines(make_store) -> None:
    store = make_store()
    r = reserve(store, "c1", "email", [A, C], T0)
    store.record_outcome(r.decision_id, "o-c", "declined", T0 + timedelta(hours=2))
    h = store.history("c1", T0 + timedelta(days=1))
    assert h.channel_count(["email"], 7) == 1
    assert h.offer_shows("o-a", 30) == 1
    assert h.last_decline_offer == {"o-c": to_epoch(T0 + timedelta(hours=2))}
    assert h.last_decline_category == {"food": to_epoch(T0 + timedelta(hours=2))}
    assert store.history("c1", T0 + timedelta(days=200)).contacts == ()


def test_read_customer_is_contact_rows_and_history_in_one_read(make_store) -> None:
    store = make_store(horizon_days=40)
    old = reserve(store, "c1", "email", [B], T0 - timedelta(days=60))  # past the horizon: in the rows only
    r = reserve(store, "c1", "email", [A, C], T0)
    reserve(store, "c1", "web", [B], T0 + timedelta(hours=1))
    reserve(store, "c2", "web", [A], T0)
    store.record_outcome(r.decision_id, "o-c", "declined", T0 + timedelta(hours=2))
    store.record_outcome(old.decision_id, "o-b", "declined", T0 - timedelta(days=59))
    for cid, now in (("c1", T0 + timedelta(days=1)), ("c1", T0 + timedelta(days=45)), ("c2", T0), ("nobody", T0)):
        state = store.read_customer(cid, now)
        assert state.rows == store.contact_rows(cid)
        h = store.history(cid, now)
        assert sorted(state.history.contacts, key=repr) == sorted(h.contacts, key=repr)
        assert (state.history.customer_id, state.history.now) == (h.customer_id, h.now)
        assert state.history.last_decline_offer == h.last_decline_offer
        assert state.history.last_decline_category == h.last_decline_category
    assert len(store.read_customer("c1", T0 + timedelta(days=1)).rows) == 4
    assert len(store.read_customer("c1", T0 + timedelta(days=1)).history.contacts) == 3


def test_read_customers_is_read_customer_of_each(make_store) -> None:
    """The micro-batch's one read (`read_customers`) gives every customer the state `read_customer`
    gives, equal field by field (rows in their order, histories, declines, erasure, runtime
    consents, posted events), and so does the `ContactStore` default (one read each)."""
    from pandas import DataFrame

    from serving.contact_store.base import ContactStore, LiveEvent

    store = make_store(horizon_days=40)
    old = reserve(store, "c1", "email", [B], T0 - timedelta(days=60))  # past the horizon: in the rows only
    r = reserve(store, "c1", "email", [A, C], T0)
    reserve(store, "c1", "web", [B], T0 + timedelta(hours=1))
    reserve(store, "c2", "web", [A], T0)
    reserve(store, "c3", "web", [C], T0)
    store.record_outcome(r.decision_id, "o-c", "declined", T0 + timedelta(hours=2))
    store.record_outcome(r.decision_id, "o-a", "declined", T0 + timedelta(hours=3))
    store.record_outcome(old.decision_id, "o-b", "declined", T0 - timedelta(days=59))
    store.import_history(DataFrame({  # an imported show counts for the caps but is not a contact row
        "decision_id": ["imp-1"], "offer_id": ["o-b"], "customer_id": ["c2"], "channel": ["email"],
        "ts": [T0 - timedelta(days=2)], "propensity": [0.3], "outcome": ["declined"],
        "outcome_ts": [T0 - timedelta(days=1)]}).astype({"ts": "datetime64[ns]", "outcome_ts": "datetime64[ns]"}),
        {"o-b": "travel"}, T0)
    store.record_consent("c2", "email", False, T0 - timedelta(days=1))
    store.record_consent("c2", "sms", True, T0 - timedelta(days=2))
    store.record_consent("c2", "email", True, T0 - timedelta(hours=1))
    store.append_events([LiveEvent("e-2", "c2", to_epoch(T0 - timedelta(hours=2)), "page_view", "web", "travel"),
                         LiveEvent("e-1", "c2", to_epoch(T0 - timedelta(hours=3)), "purchase", "store", "home", "p-1", 25.0)])
    store.forget("c3")
    ids = ["c2", "nobody", "c1", "c3"]
    for now in (T0 + timedelta(days=1), T0 + timedelta(days=45), T0):
        got = store.read_customers(ids, now)
        default = ContactStore.read_customers(store, ids, now)  # the default: `read_customer` of each
        for cid, a, b in zip(ids, got, default, strict=True):
            one = store.read_customer(cid, now)
            for state in (a, b):
                assert state.rows == one.rows, (cid, now)
                assert (sorted(state.history.contacts, key=repr), state.history.customer_id, state.history.now) == \
                    (sorted(one.history.contacts, key=repr), one.history.customer_id, one.history.now)
                assert state.history.last_decline_offer == one.history.last_decline_offer
                assert state.history.last_decline_category == one.history.last_decline_category
                assert state.forgotten == one.forgotten
                assert sorted(state.consents, key=repr) == sorted(one.consents, key=repr)
                assert sorted(state.events, key=repr) == sorted(one.events, key=repr)
    c2, _, c1, c3 = store.read_customers(ids, T0 + timedelta(days=1))
    assert len(c1.rows) == 4 and len(c1.history.contacts) == 3 and c1.history.last_decline_offer
    assert len(c2.rows) == 1 and len(c2.history.contacts) == 2 and len(c2.consents) == 3 and len(c2.events) == 2
    assert c3.forgotten and not c1.forgotten and store.read_customers([], T0) == []


def test_forget_erases_one_customer(make_store) -> None:
    store = make_store()
    r = reserve(store, "c1", "email", [A], T0)
    store.record_outcome(r.decision_id, "o-a", "declined", T0)
    reserve(store, "c2", "email", [A], T0)
    assert store.forget("c1") == 1
    assert store.export("c1") == {"decisions": [], "contacts": [], "consents": [], "events": [], "outbox": []}
    assert store.history("c1", T0).contacts == () and not store.history("c1", T0).last_decline_offer
    assert store.record_outcome(r.decision_id, "o-a", "accepted", T0) is False
    assert len(store.export("c2")["contacts"]) == 1


def test_store_refuses_a_policy_longer_than_its_horizon(make_store) -> None:
    store = make_store(horizon_days=20)
    with pytest.raises(ConfigError, match="30 days"):
        reserve(store, "c1", "web", [A], T0)


@pytest.mark.redis
def test_redis_keys_expire_after_the_horizon(redis_port: int) -> None:
    import redis

    client = redis.Redis(port=redis_port, decode_responses=True)
    store = RedisContactStore(client, prefix="ttltest", horizon_days=40)
    r = reserve(store, "c1", "email", [A], T0)
    store.record_outcome(r.decision_id, "o-a", "declined", T0)
    keys = client.keys("ttltest:*")
    assert len(keys) >= 6
    for key in keys:
        assert 0 < client.ttl(key) <= 40 * DAY + 1, key
    store.forget("c1")
    # Only the record of erased customers stays (no expiry: it must outlive the horizon), by hash.
    assert client.keys("ttltest:*") == ["ttltest:forgotten"]
    assert client.ttl("ttltest:forgotten") == -1 and "c1" not in client.smembers("ttltest:forgotten")


TIGHT = parse_policy(
    """
[caps]
email = { max = 2, days = 7 }
sms = { max = 1, days = 3 }
web = { max = 5, days = 1 }
[outbound]
max = 3
days = 5
[offer_cap]
max = 2
days = 4
"""
)


def test_concurrent_reservations_never_exceed_a_cap(make_store) -> None:
    """8 workers x 500 reservations for 3 customers: caps hold and nothing reserved is lost."""
    store = make_store()
    clock, lock = itertools.count(), threading.Lock()
    offers = [OfferRef(f"o{i}", f"cat{i % 3}") for i in range(6)]
    reserved: list[tuple[str, str, str]] = []
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        mine = []
        try:
            for i in range(500):
                with lock:
                    tick = next(clock)
                now = T0 + timedelta(minutes=10 * tick)
                picks = rnd.sample(offers, rnd.randint(1, 3))
                r = store.check_and_reserve(
                    rnd.choice("abc"),
                    rnd.choice(["email", "sms", "web", "push"]),
                    picks,
                    now,
                    TIGHT,
                    f"w{seed}-{i}",
                    {o.offer_id: 0.5 for o in picks},
                )
                mine.extend((r.decision_id, o.offer_id, "x") for o in r.reserved)
        except BaseException as exc:  # reported below
            errors.append(exc)
        with lock:
            reserved.extend(mine)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]

    stored = []
    n_decisions = 0
    for customer in "abc":
        out = store.export(customer)
        n_decisions += len(out["decisions"])
        contacts = out["contacts"]
        stored.extend((c["decision_id"], c["offer_id"], "x") for c in contacts)
        by_channel, by_offer, outbound = defaultdict(dict), defaultdict(list), {}
        for c in contacts:
            t = to_epoch(c["ts"])
            by_channel[c["channel"]][c["decision_id"]] = t
            by_offer[c["offer_id"]].append(t)
            if c["channel"] in TIGHT.outbound.channels:
                outbound[c["decision_id"]] = t
        for ch, decisions in by_channel.items():
            cap = TIGHT.caps.get(ch)
            if cap is not None:
                assert max_in_window(list(decisions.values()), cap.days) <= cap.max, (customer, ch)
        assert max_in_window(list(outbound.values()), TIGHT.outbound.days) <= TIGHT.outbound.max
        for times in by_offer.values():
            assert max_in_window(times, TIGHT.offer_cap.days) <= TIGHT.offer_cap.max
    assert n_decisions == 8 * 500
    assert sorted(stored) == sorted(reserved)
    assert 100 < len(reserved) < 8 * 500  # many reservations, and caps refused many more


def test_bulk_writes_hint_changes_tuning_not_answers(make_store) -> None:
    """`expect_bulk_writes` (batch reservation) may tune the store; caps answer exactly as before."""
    from serving.contact_store import SQLiteContactStore

    store = make_store()
    store.expect_bulk_writes()
    if isinstance(store, SQLiteContactStore):
        assert store._conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 10_000
    assert reserve(store, "c1", "email", [A, C], T0).ok
    assert reserve(store, "c1", "email", [B], T0 + timedelta(days=1)).ok
    assert not reserve(store, "c1", "email", [C], T0 + timedelta(days=2)).ok


def test_background_checkpoints_move_the_wal_into_the_database(tmp_path) -> None:
    """`checkpoint_interval_s`: a thread copies committed pages into the database file (the request
    that commits no longer does it); answers and caps are those of the default store."""
    import os
    import sqlite3
    import time

    from serving.contact_store import SQLiteContactStore

    def main_file_pages(path) -> int:
        return os.path.getsize(path) // 4096

    plain = SQLiteContactStore(tmp_path / "plain.db")
    store = SQLiteContactStore(tmp_path / "bg.db", checkpoint_interval_s=0.05)
    assert store._conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 20_000  # backstop only
    before = main_file_pages(tmp_path / "bg.db")
    answers = {}
    for s in (plain, store):
        answers[s] = [reserve(s, f"c{i % 7}", "email", [A, C], T0 + timedelta(hours=i)).ok for i in range(60)]
    assert answers[plain] == answers[store]
    deadline = time.monotonic() + 60  # a condition, with a deadline generous for a busy machine
    while main_file_pages(tmp_path / "bg.db") <= before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert main_file_pages(tmp_path / "bg.db") > before  # the thread checkpointed without any commit doing it
    thread = store._checkpointer
    store.close()
    assert thread is not None and not thread.is_alive()
    plain.close()
    with pytest.raises(ValueError, match="checkpoint_interval_s"):
        SQLiteContactStore(tmp_path / "bad.db", checkpoint_interval_s=0)
    with sqlite3.connect(tmp_path / "bg.db") as conn:  # everything committed is there after close
        assert conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 60


def test_background_checkpoints_restart_the_wal_under_steady_writes(tmp_path, monkeypatch) -> None:
    """Under steady commits (one every ~1 ms) a passive checkpoint rarely ends between two commits,
    so SQLite never started the WAL over and the file grew to the backstop (83 MB at 600
    decisions/s, docs/service.md §7): the checkpoint thread restarts it past `_RESTART_PAGES`."""
    import os
    import time

    from serving.contact_store import sqlite_store

    monkeypatch.setattr(sqlite_store, "_RESTART_PAGES", 100)
    store = sqlite_store.SQLiteContactStore(tmp_path / "w.db", checkpoint_interval_s=0.02)
    wal = tmp_path / "w.db-wal"
    largest, i = 0, 0
    while i < 1500:  # one writer committing every ~1 ms, like a busy service (a count, not a duration)
        reserve(store, f"c{i % 50}", "email", [A], T0 + timedelta(minutes=i))
        time.sleep(0.001)
        i += 1
        if i % 20 == 0:
            largest = max(largest, os.path.getsize(wal))
    store.close()
    # At least one WAL page per commit: never restarted, the WAL would hold ~i pages (1.3 i measured).
    assert i > 200
    assert largest < i * 4096 / 2, (largest, i)


def _events(customer: str, stamps: list[float]) -> list:
    from serving.contact_store.base import LiveEvent

    return [LiveEvent(f"{customer}-e{i}", customer, ts, "purchase", "store", "home", None, 10.0 + i)
            for i, ts in enumerate(stamps)]


def test_compaction_drops_exactly_the_events_up_to_the_cut(make_store) -> None:
    """`compact_events(until)` (snapshot-and-truncate at a new export, serving.live.compact):
    deletes the posted events with ts <= until, of every customer, keeps the later ones whole,
    counts what it deleted, and a second run deletes nothing; a customer emptied by it reads no
    events, and an event id compacted away can be posted again (the horizon check refuses it
    upstream, the store does not remember it)."""
    store = make_store()
    t = to_epoch(T0)
    old_only = _events("c-old", [t - 300, t - 200])
    mixed = _events("c-mix", [t - 100, t, t + 0.001, t + 50])
    new_only = _events("c-new", [t + 10])
    store.append_events([*old_only, *mixed, *new_only])
    assert store.compact_events(t) == 2 + 2
    assert store.compact_events(t) == 0
    held = store.live_events(["c-old", "c-mix", "c-new"])
    assert "c-old" not in held
    assert sorted(held["c-mix"], key=lambda e: e.event_id) == mixed[2:]
    assert held["c-new"] == tuple(new_only)
    assert store.read_customer("c-old", T0).events == ()
    assert store.append_events(old_only[:1]) == 1


@pytest.mark.redis
def test_redis_compaction_scans_only_its_own_prefix_and_removes_emptied_hashes(redis_port: int) -> None:
    """Another store on the same server (another prefix, also one its glob would match) keeps
    every event; a customer's event hash emptied by compaction is deleted, not left empty."""
    import redis

    client = redis.Redis(port=redis_port, decode_responses=True)
    t = to_epoch(T0)
    mine = RedisContactStore(client, prefix="cmp?x")  # `?` and `*` are glob characters in SCAN MATCH
    other = RedisContactStore(client, prefix="cmpAx")
    star = RedisContactStore(client, prefix="cmp*")
    for store in (mine, other, star):
        store.append_events(_events("c1", [t - 10, t + 10]) + _events("c2", [t - 5]))
    assert mine.compact_events(t) == 2
    for store in (other, star):
        assert sorted(e.event_id for v in store.live_events(["c1", "c2"]).values() for e in v) == ["c1-e0", "c1-e1", "c2-e0"]
    assert [e.event_id for e in mine.live_events(["c1", "c2"])["c1"]] == ["c1-e1"]
    assert not client.exists("cmp?x:{c2}:ev") and client.hlen("cmp?x:{c1}:ev") == 1
    assert star.compact_events(t) == 2 and other.live_events(["c2"]) != {}

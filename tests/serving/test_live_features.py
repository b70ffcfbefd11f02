"""Events in, live features out (issue 22 item 1), through the decision engine and a real store.

Parity: events posted in random order, in random batches, with duplicates, give each customer a
live row equal to the batch features (`build_customer_features`) computed on the data plus the same
events, as of the same instant, in the SQLite and the Redis store. Then: a store purchase changes
recency, lifecycle and offers on the next decision of another worker; bad batches are refused with
the field named and write nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import build_customer_features
from nbo.data import load_dataset
from nbo.vocab import EVENT_CHANNELS, EVENT_TYPES
from serving.contact_store import RedisContactStore
from serving.contact_store.base import LiveEvent, to_epoch
from serving.engine import DecisionEngine
from serving.live import LiveInputError
from tests.serving.test_engine import NO_EXPLORATION, NOW, World, world  # noqa: F401 - the shared world

H = timedelta(hours=1)


def _engine(world: World, tmp_path: Path, store: str | None = None, **kw: object) -> DecisionEngine:
    policy = tmp_path / "policy.toml"
    policy.write_text(NO_EXPLORATION)
    return DecisionEngine.from_settings(world.settings(store or tmp_path / "contacts.db", policy_path=policy), **kw)


@pytest.fixture
def engine(world: World, tmp_path: Path) -> Iterator[DecisionEngine]:
    eng = _engine(world, tmp_path)
    yield eng
    eng.close()


def _random_events(rng: random.Random, customers: list[str], start: datetime, n: int) -> list[LiveEvent]:
    categories = ["travel", "books", "home", "fashion", "a-category-nobody-declared", None]
    out = []
    for i in range(n):
        kind = rng.choice(EVENT_TYPES)
        amount = None if kind != "purchase" or rng.random() < 0.1 else round(rng.uniform(1, 300), 2)
        ts = start + timedelta(seconds=rng.uniform(1, 9 * 3600))
        out.append(LiveEvent(f"e-{i}", rng.choice(customers), to_epoch(ts), kind,
                             rng.choice([*EVENT_CHANNELS, None]), rng.choice(categories),
                             rng.choice([None, f"p-{rng.randrange(50)}"]), amount))
    return out


def _batch(data, events: list[LiveEvent], consents: list[tuple[str, str, bool, datetime]], as_of: datetime,  # noqa: ANN001
           ids: list[str]) -> pd.DataFrame:
    """The batch features of `ids` on the data directory plus `events` and `consents`, built here
    independently of serving.live."""
    extra = pd.DataFrame({
        "customer_id": [e.customer_id for e in events],
        "ts": pd.to_datetime([e.ts for e in events], unit="s"),
        "channel": [e.channel for e in events], "type": [e.type for e in events],
        "category": [e.category for e in events], "product_id": [e.product_id for e in events],
        "amount": [np.nan if e.amount is None else e.amount for e in events],
    }).astype(data.events.dtypes.to_dict())
    more = pd.DataFrame(consents, columns=["customer_id", "channel", "granted", "ts"]).astype(data.consents.dtypes.to_dict())
    full = data.__class__(customers=data.customers, consents=pd.concat([data.consents, more], ignore_index=True),
                          events=pd.concat([data.events, extra], ignore_index=True), offers=data.offers,
                          contacts=data.contacts)
    return build_customer_features(full, pd.Timestamp(as_of), ids)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
@pytest.mark.parametrize("seed", [0, 1])
def test_live_rows_equal_the_batch_features_on_the_same_events(world: World, tmp_path: Path, request, backend: str,  # noqa: ANN001
                                                               seed: int) -> None:
    if backend == "redis":
        port = request.getfixturevalue("redis_port")
        eng = _engine(world, tmp_path, f"redis://127.0.0.1:{port}/0", load_models=False)
        assert isinstance(eng.store, RedisContactStore)
        eng.store.prefix = f"parity{seed}{random.Random().randrange(10**9)}"
    else:
        eng = _engine(world, tmp_path, load_models=False)
    try:
        data = load_dataset(world.data)
        rng = random.Random(seed)
        ids = [str(c) for c in rng.sample(sorted(eng.features.index), 6)]
        stream = _random_events(rng, ids, NOW - 10 * H, 120)
        # Out of order, in random batches, with duplicates: every event at least once.
        posted = stream + rng.sample(stream, 40)
        rng.shuffle(posted)
        recorded = 0
        while posted:
            size = rng.randint(1, 25)
            batch, posted = posted[:size], posted[size:]
            recorded += eng.ingest_events(batch, NOW).recorded
        assert recorded == len(stream)
        assert eng.ingest_events(stream[:30], NOW).recorded == 0  # idempotent
        changes = [(ids[0], "email", False, NOW - 2 * H), (ids[1], "sms", True, NOW - 3 * H)]
        for cid, ch, granted, ts in changes:
            eng.record_consent(cid, ch, granted, ts, NOW)
        for as_of in (NOW - 5 * H, NOW, NOW + timedelta(days=3)):
            expected = _batch(data, sorted(stream, key=lambda e: (e.ts, e.event_id)), changes, as_of, ids)
            for cid in ids:
                state = eng.store.read_customer(cid, as_of)
                contacts = eng.scorer.live_contacts([cid], {cid: state.rows})
                got = eng.live.row(cid, state.events, state.consents, contacts, as_of)
                pd.testing.assert_frame_equal(got, expected.loc[[cid]], check_exact=True)
    finally:
        eng.close()


def _lapsing_customer(engine: DecisionEngine) -> str:
    frame = engine.features
    stage = frame[frame["lifecycle"].isin(["at_risk", "lapsed"]) & (frame["purchases_total"] > 2)]
    assert len(stage), "no at-risk or lapsed customer with purchases in the test world"
    return str(stage.index[0])


def test_a_store_purchase_changes_recency_lifecycle_and_offers_on_the_next_decision(world: World, tmp_path: Path) -> None:
    first = _engine(world, tmp_path)
    second = _engine(world, tmp_path, models=(first.models.propensity, first.models.churn))
    try:
        cid = _lapsing_customer(first)
        source, before = second.customer_view(cid, NOW)
        assert source == "materialised" and before["lifecycle"] in ("at_risk", "lapsed") and before["recency_days"] > 30
        decided = second.decide(cid, "web", None, NOW, k=3, reserve=False)
        purchase = LiveEvent("pos-1", cid, to_epoch(NOW - H), "purchase", "store", "home", "p-home-1", 250.0)
        assert first.ingest_events([purchase], NOW).recorded == 1
        source, after = second.customer_view(cid, NOW)  # the other worker, next call
        assert source == "live"
        assert after["recency_days"] == pytest.approx(1 / 24)
        assert after["lifecycle"] not in ("at_risk", "lapsed", before["lifecycle"])
        assert after["purchases_total"] == before["purchases_total"] + 1
        again = second.decide(cid, "web", None, NOW, k=3, reserve=False)
        assert not again.fallback
        scores = {o.offer_id: o.p_accept for o in decided.offers}
        new_scores = {o.offer_id: o.p_accept for o in again.offers}
        assert scores != new_scores
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(
    ("change", "field", "status"),
    [
        ({"customer_id": "c-nobody"}, "events[1].customer_id", 404),
        ({"ts": to_epoch(NOW + timedelta(minutes=10))}, "events[1].ts", 422),
        ({"ts": to_epoch(NOW - timedelta(days=400))}, "events[1].ts", 422),
        ({"ts": to_epoch(NOW - timedelta(days=30))}, "events[1].ts", 422),  # before the data's last event
        ({"event_id": "e-ok", "amount": 1.0}, "events[1].event_id", 409),  # e-ok again, other content
    ],
)
def test_a_bad_event_refuses_the_whole_batch_and_writes_nothing(engine: DecisionEngine, change: dict, field: str,
                                                                status: int) -> None:
    cid = str(engine.features.index[4])
    ok = LiveEvent("e-ok", cid, to_epoch(NOW - H), "page_view", "web", "travel")
    bad = LiveEvent(**{**ok.__dict__, "event_id": "e-bad", **change})
    with pytest.raises(LiveInputError) as info:
        engine.ingest_events([ok, bad, ok], NOW)
    assert (info.value.field, info.value.status) == (field, status)
    assert engine.store.live_events([cid, "c-nobody"]) == {}
    # The same id with other content than what the store holds: 409, nothing written.
    assert engine.ingest_events([ok], NOW).recorded == 1
    other = LiveEvent(**{**ok.__dict__, "category": "books"})
    new = LiveEvent("e-new", cid, to_epoch(NOW - H), "search", "web")
    with pytest.raises(LiveInputError) as info:
        engine.ingest_events([new, other], NOW)
    assert (info.value.field, info.value.status) == ("events[1].event_id", 409)
    assert [e.event_id for e in engine.store.live_events([cid])[cid]] == ["e-ok"]


def test_forget_erases_the_posted_events_and_the_live_row(engine: DecisionEngine) -> None:
    cid = str(engine.features.index[8])
    engine.ingest_events([LiveEvent("e-1", cid, to_epoch(NOW - H), "purchase", "store", "home", None, 10.0)], NOW)
    assert engine.customer_view(cid, NOW)[0] == "live"
    engine.forget(cid)
    assert engine.store.export(cid)["events"] == [] and engine.customer_view(cid, NOW) == ("unknown", None)
    d = engine.decide(cid, "web", None, NOW, k=3)
    assert d.fallback
    with pytest.raises(LiveInputError):
        engine.ingest_events([LiveEvent("e-2", cid, to_epoch(NOW - H), "search", "web")], NOW)


def _reexport(data, events: list[LiveEvent], directory: Path) -> Path:  # noqa: ANN001
    """A newer data directory: the world's tables with `events` appended to its events table (an
    export made after those events were posted)."""
    from nbo.data import write_dataset

    extra = pd.DataFrame({
        "customer_id": [e.customer_id for e in events], "ts": pd.to_datetime([e.ts for e in events], unit="s"),
        "channel": [e.channel for e in events], "type": [e.type for e in events],
        "category": [e.category for e in events], "product_id": [e.product_id for e in events],
        "amount": [np.nan if e.amount is None else e.amount for e in events],
    }).astype(data.events.dtypes.to_dict())
    write_dataset(data.__class__(customers=data.customers, consents=data.consents,
                                 events=pd.concat([data.events, extra], ignore_index=True), offers=data.offers,
                                 contacts=data.contacts), directory)
    return directory


@pytest.mark.parametrize(("backend", "seed"), [("sqlite", 0), ("sqlite", 1), ("sqlite", 2),
                                                pytest.param("redis", 3, marks=pytest.mark.redis)])
def test_compaction_keeps_the_live_rows_and_truncates_the_log_at_the_new_export(world: World, tmp_path: Path, request,  # noqa: ANN001
                                                                                 backend: str, seed: int) -> None:
    """Snapshot-and-truncate (serving.live.compact): once a data directory holds the events up to
    its last one, the log keeps only the later ones; every live row still equals the batch features
    on all the events; an event at or before the new horizon is refused (it cannot count twice),
    later duplicates stay idempotent; forget still erases everything."""
    data = load_dataset(world.data)
    rng = random.Random(seed)
    store = tmp_path / "contacts.db"
    if backend == "redis":  # both engines on one server and one key prefix (a restart on the same store)
        store = f"redis://127.0.0.1:{request.getfixturevalue('redis_port')}/0"
        prefix = f"compact{seed}{random.Random().randrange(10**9)}"
    first = _engine(world, tmp_path, store, load_models=False)
    if backend == "redis":
        first.store.prefix = prefix
    ids = [str(c) for c in rng.sample(sorted(first.features.index), 5)]
    # Events without a channel included: POST /events accepts them, and the contract's events table
    # takes an empty channel (unknown), so a re-export of the log validates.
    stream = _random_events(rng, ids, NOW - 10 * H, 150)
    assert any(e.channel is None for e in stream)
    posted = stream + rng.sample(stream, 30)
    rng.shuffle(posted)
    for lo in range(0, len(posted), 20):
        first.ingest_events(posted[lo:lo + 20], NOW)
    first.close()
    # The export taken `cut` hours into the stream holds the events up to its own last one.
    cut = to_epoch(NOW - 10 * H + timedelta(hours=rng.uniform(2, 7)))
    # (in time order, as the log sorts them: a sum over events is the same float in the same order)
    exported = sorted((e for e in stream if e.ts <= cut), key=lambda e: (e.ts, e.event_id))
    settings = world.settings(store, data_dir=_reexport(data, exported, tmp_path / "data2"))
    later = DecisionEngine.from_settings(settings, load_models=False)
    if backend == "redis":
        later.store.prefix = prefix
    try:
        later.live.prepare()
        horizon = to_epoch(later.live.horizon)
        assert exported and abs(horizon - max(e.ts for e in exported)) < 1e-3
        # Dropped: the events more than a microsecond before the horizon (the last one exported, at
        # the horizon itself, stays in the log and is skipped by the live row: counted once).
        kept = [e for e in stream if e.ts > (later.live.horizon.value - 1_000) / 1e9]
        assert {e.event_id for e in stream if e.ts > horizon} < {e.event_id for e in kept}
        assert later.compact_events() == len(stream) - len(kept)
        assert later.compact_events() == 0
        held = later.store.live_events(ids)
        assert sorted(e.event_id for v in held.values() for e in v) == sorted(e.event_id for e in kept)
        for as_of in (NOW, NOW + timedelta(days=2)):
            expected = _batch(data, sorted(stream, key=lambda e: (e.ts, e.event_id)), [], as_of, ids)
            for cid in ids:
                state = later.store.read_customer(cid, as_of)
                contacts = later.scorer.live_contacts([cid], {cid: state.rows})
                got = later.live.row(cid, state.events, state.consents, contacts, as_of)
                pd.testing.assert_frame_equal(got, expected.loc[[cid]], check_exact=True)
        old = next(e for e in stream if e.ts <= horizon)
        with pytest.raises(LiveInputError) as info:
            later.ingest_events([old], NOW)
        assert info.value.field == "events[0].ts" and info.value.status == 422
        if kept:
            assert later.ingest_events(kept[:10], NOW).recorded == 0
        gone = ids[0]
        later.forget(gone)
        assert later.store.export(gone)["events"] == [] and later.customer_view(gone, NOW) == ("unknown", None)
    finally:
        later.close()


def test_the_live_row_cache_is_bounded_by_recent_customers_not_by_events(tmp_path: Path) -> None:
    """Memory (issue 22 item 6): a cached row older than `refresh_s` can never be used, so keeping
    a row drops those; the key is a digest of fixed size whatever the customer's number of events,
    and it changes with any posted event or consent change."""
    from serving.contact_store.base import ConsentChange
    from serving.live import LiveFeatures, state_key

    empty = pd.DataFrame({"customer_id": pd.Series([], dtype="str")})
    live = LiveFeatures(tmp_path, empty, empty, refresh_s=60.0, max_cached=3)
    for i in range(3):
        live.keep(f"c{i}", "k", NOW + timedelta(seconds=i), object())
    assert len(live) == 3
    live.keep("c3", "k", NOW + timedelta(seconds=3), object())  # over max_cached: the oldest goes
    assert len(live) == 3 and live.cached("c0", "k", NOW + timedelta(seconds=3)) is None
    hit = object()
    live.keep("c1", "k", NOW + timedelta(seconds=30), hit)
    assert live.cached("c1", "k", NOW + timedelta(seconds=89)) is hit
    assert live.cached("c1", "other", NOW + timedelta(seconds=89)) is None
    live.keep("c9", "k", NOW + timedelta(seconds=65), 1)
    assert len(live) == 2  # c2, c3 (kept at 2 s and 3 s) expired; c1 (30 s) and c9 stay
    assert live.cached("c1", "k", NOW + timedelta(seconds=90)) is None  # 60 s after it was computed

    few = [LiveEvent(f"e{i}", "c", to_epoch(NOW) + i, "search", "web") for i in range(3)]
    many = [LiveEvent(f"e{i}", "c", to_epoch(NOW) + i, "search", "web") for i in range(5000)]
    assert len(state_key(many, ())) == len(state_key(few, ())) == 3
    assert all(isinstance(v, int) for v in state_key(many, ()))
    assert state_key(few, ()) == state_key(list(reversed(few)), ())  # the posting order does not matter
    assert state_key(few, ()) != state_key(few[:2], ())
    assert state_key(few, ()) != state_key([*few[:2], replace(few[2], ts=few[2].ts + 1)], ())
    assert state_key(few, ()) != state_key(few, (ConsentChange("email", to_epoch(NOW), False),))

"""Cap kinds defined once (issue 18 item 3): the registry, and the Redis Lua script held equal to
the Python definition by a differential test over random contact histories."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbo.vocab import CONTACT_CHANNELS, OUTBOUND_CHANNELS
from serving import caps
from serving.contact_store import ContactHistory, ContactRecord, OfferRef, RedisContactStore, SQLiteContactStore
from serving.contact_store.base import DAY, offer_refusal, split_offers, to_epoch, touches
from serving.policy import ContactPolicy

T0 = datetime(2026, 3, 2, 12, 0)
OFFERS = [OfferRef("o1", "travel"), OfferRef("o2", "travel"), OfferRef("o3", "food"), OfferRef("o4", "home")]
FREE = caps.without_family(caps.without_family(ContactPolicy(), "fatigue"), "repeat")
_ids = itertools.count()


def test_every_kind_has_a_known_measure_level_and_family() -> None:
    assert [k.reason for k in caps.CAP_KINDS] == [
        "cap_channel", "cap_outbound", "cap_offer", "cooldown_offer", "cooldown_category"]
    # `offer_refusal(..., shows)` takes the show counts of the per-offer cap's window: one shows kind
    assert [k.reason for k in caps.CAP_KINDS if k.measure == "shows"] == ["cap_offer"]
    assert caps.CONTACT_REASONS == ("cap_channel", "cap_outbound")
    assert caps.OFFER_REASONS == ("cap_offer", "cooldown_offer", "cooldown_category")
    for k in caps.CAP_KINDS:
        assert k.measure in caps.MEASURE_ADDS and k.level in ("contact", "offer") and k.doc
        # contact-level kinds count contacts; offer-level kinds are the same on every channel
        assert (k.measure == "contacts") == (k.level == "contact")
        if k.level == "offer":
            assert len({k.limit(ContactPolicy(), ch) for ch in CONTACT_CHANNELS}) == 1


def test_the_arbiter_knows_every_reason_code() -> None:
    from serving.decision import REASON_CODES

    assert set(caps.CONTACT_REASONS + caps.OFFER_REASONS) <= set(REASON_CODES)


def test_limits_of_the_default_policy() -> None:
    p = ContactPolicy()
    email = caps.limits(p, "email")
    assert [(x.reason, x.max, x.days, x.channels) for x in email.contact] == [
        ("cap_channel", 2, 7, ("email",)), ("cap_outbound", 4, 7, OUTBOUND_CHANNELS)]
    assert [(x.reason, x.measure, x.max, x.days, x.adds) for x in email.offer] == [
        ("cap_offer", "shows", 3, 30, 1), ("cooldown_offer", "offer_declines", 0, 30, 0),
        ("cooldown_category", "category_declines", 0, 7, 0)]
    assert [x.reason for x in caps.limits(p, "web").contact] == ["cap_channel"]  # web is not outbound
    no_web = p.model_copy(update={"caps": {"email": p.caps["email"]}})
    assert caps.limits(no_web, "web").contact == ()
    assert caps.limits(p, "email") is email  # cached per policy object
    assert caps.limits(p.model_copy(), "email") == email


def test_without_a_family_switches_off_exactly_its_kinds() -> None:
    p = ContactPolicy()
    fatigue = caps.without_family(p, "fatigue")
    assert fatigue.caps == {} and fatigue.outbound.max >= caps.UNLIMITED
    assert fatigue.offer_cap == p.offer_cap and fatigue.cooldown == p.cooldown
    repeat = caps.without_family(p, "repeat")
    assert repeat.caps == p.caps and repeat.outbound == p.outbound
    assert repeat.offer_cap.max >= caps.UNLIMITED and repeat.cooldown.offer_days == repeat.cooldown.category_days == 0
    assert FREE.longest_window_days == 1
    # with both families off nothing is ever refused, whatever the history
    h = ContactHistory("c", to_epoch(T0), tuple(ContactRecord(f"d{i}", "o1", "travel", "email", to_epoch(T0))
                                                for i in range(50)), {"o1": to_epoch(T0)}, {"travel": to_epoch(T0)})
    assert split_offers(h, "email", OFFERS, FREE) == (OFFERS, [])


# ----------------------------------------------------------------- Python vs Lua, random cases
@pytest.fixture(scope="module")
def stores(redis_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisContactStore, SQLiteContactStore]]:
    client = redis.Redis(port=redis_port, decode_responses=True)
    r = RedisContactStore(client, prefix=f"diff{uuid.uuid4().hex[:8]}")
    s = SQLiteContactStore(Path(tmp_path_factory.mktemp("diff")) / "diff.db")
    yield r, s
    r.close()
    s.close()


# Few channels and short windows, so that caps bind and contacts fall on window edges often.
_CHANNELS = ("email", "sms", "web")
_DAYS = st.integers(1, 3)
_BOUNDARIES = [d * int(DAY) + e for d in range(4) for e in (-1, 0, 1)]
_ago = st.one_of(st.sampled_from(_BOUNDARIES), st.integers(-int(DAY), 4 * int(DAY)))  # seconds before now (< 0: later)
_offers = st.lists(st.sampled_from(OFFERS), min_size=1, max_size=3)


@st.composite
def _policies(draw) -> ContactPolicy:
    capped = draw(st.lists(st.sampled_from(_CHANNELS), unique=True))
    return ContactPolicy.model_validate({
        "caps": {ch: {"max": draw(st.integers(0, 3)), "days": draw(_DAYS)} for ch in capped},
        "outbound": {"channels": draw(st.lists(st.sampled_from(_CHANNELS), unique=True)),
                     "max": draw(st.integers(0, 4)), "days": draw(_DAYS)},
        "offer_cap": {"max": draw(st.integers(0, 3)), "days": draw(_DAYS)},
        "cooldown": {"offer_days": draw(st.integers(0, 3)), "category_days": draw(st.integers(0, 3))},
    })


_contacts = st.lists(st.tuples(_ago, st.sampled_from(_CHANNELS), _offers), max_size=8)
_declines = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 2), _ago), max_size=5)


@pytest.mark.redis
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=_policies(), contacts=_contacts, declines=_declines, channel=st.sampled_from(_CHANNELS),
       query=st.lists(st.sampled_from(OFFERS), max_size=5), micros=st.integers(0, 999_999))
def test_python_and_lua_give_the_same_verdict(stores, policy, contacts, declines, channel, query, micros) -> None:
    """A random history replayed into both stores; then one decision: the Python definition
    (`split_offers` on the history built here), the SQLite store and the Redis Lua script agree."""
    redis_store, sqlite_store = stores
    now = T0 + timedelta(microseconds=micros)
    cid = f"c{next(_ids)}"
    records: list[ContactRecord] = []
    shown: list[tuple[str, tuple[OfferRef, ...]]] = []
    for ago, ch, offers in sorted(contacts, key=lambda c: -c[0]):  # replay in time order, nothing refused
        at = now - timedelta(seconds=ago)
        did = f"{cid}-{len(shown)}"
        unique = tuple(dict.fromkeys(offers))
        for store in stores:
            r = store.check_and_reserve(cid, ch, list(offers), at, FREE, did, {o.offer_id: 0.5 for o in offers})
            assert r.reserved == unique
        records += [ContactRecord(did, o.offer_id, o.category, ch, to_epoch(at)) for o in unique]
        shown.append((did, unique))
    last_offer: dict[str, float] = {}
    last_cat: dict[str, float] = {}
    declined: set[tuple[str, str]] = set()
    for i, j, ago in declines:
        if not shown:
            break
        did, unique = shown[i % len(shown)]
        offer = unique[j % len(unique)]
        at = to_epoch(now - timedelta(seconds=ago))
        for store in stores:
            assert store.record_outcome(did, offer.offer_id, "declined", now - timedelta(seconds=ago))
        if (did, offer.offer_id) not in declined:  # the first decline of a show counts
            declined.add((did, offer.offer_id))
            last_offer[offer.offer_id] = max(at, last_offer.get(offer.offer_id, at))
            last_cat[offer.category] = max(at, last_cat.get(offer.category, at))
    history = ContactHistory(cid, to_epoch(now), tuple(records), last_offer, last_cat)
    ok, refused = split_offers(history, channel, query, policy)
    want = ([o.offer_id for o in ok], refused)
    props = {o.offer_id: 0.5 for o in query}
    for store in stores:
        got = store.check_and_reserve(cid, channel, query, now, policy, f"{cid}-q", props)
        assert ([o.offer_id for o in got.reserved], list(got.refused)) == want, type(store).__name__


# ----------------------------------------------------------------- untouched offers answer as on an empty history
_UNSEEN = (OfferRef("o-never", "travel"), OfferRef("o-other", "garden"))


@settings(max_examples=300, deadline=None)
@given(policy=_policies(), contacts=_contacts,
       declines=st.lists(st.tuples(st.sampled_from([*OFFERS, *_UNSEEN]), _ago), max_size=5),
       micros=st.integers(0, 999_999))
def test_an_offer_the_history_does_not_touch_is_refused_as_on_an_empty_history(policy, contacts, declines, micros) -> None:
    """The arbiter re-checks offer-level caps only where `touches` says the history counts for the
    offer (`serving.ranking.Arbiter.arbitrate_block`); for every cap kind, any other offer must get
    the empty history's verdict. A new offer-level measure that counts something else fails here."""
    now = to_epoch(T0 + timedelta(microseconds=micros))
    records = tuple(ContactRecord(f"d{k}", o.offer_id, o.category, ch, now - ago)
                    for k, (ago, ch, offers) in enumerate(contacts) for o in dict.fromkeys(offers))
    last_offer = {o.offer_id: now - ago for o, ago in declines}
    last_cat = {o.category: now - ago for o, ago in declines}
    history = ContactHistory("c", now, records, last_offer, last_cat)
    empty = ContactHistory("c", now)
    shows = history.offer_show_counts(policy.offer_cap.days)
    for offer in [*OFFERS, *_UNSEEN]:
        if not touches(history, offer, shows):
            assert offer_refusal(history, offer, policy, shows) == offer_refusal(empty, offer, policy, {})
        # the shortcut never hides a refusal: a refused offer is a touched one, or refused when empty
        if offer_refusal(history, offer, policy, shows) is not None:
            assert touches(history, offer, shows) or offer_refusal(empty, offer, policy, {}) is not None

"""Edges of every cap, cooldown and window, in both stores (issue 19 item 13).

Each window is `(now - days x 24 h, now]`: a contact or decline at `ts` counts at `now` when
`ts > now - days`. Every rule is probed exactly at its boundary and one second either side, on a
fresh customer per probe, through the store's atomic reservation (SQLite: Python; Redis: the Lua
script) and through the Python pre-filter on the history the store returns.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from nbo.errors import ConfigError
from serving.contact_store import ContactStore, OfferRef
from serving.contact_store.base import split_offers
from serving.policy import ContactPolicy

T = datetime(2026, 3, 2, 12, 0)
SEC = timedelta(seconds=1)
A, B, C = OfferRef("o-a", "travel"), OfferRef("o-b", "travel"), OfferRef("o-c", "food")
_ids = itertools.count()

# Every rule off except the one under test (cooldown 0 days = off).
_OFF = "[caps]\n[outbound]\nmax = 100\ndays = 1\n[offer_cap]\nmax = 100\ndays = 1\n[cooldown]\noffer_days = 0\ncategory_days = 0\n"


def _policy(text: str) -> ContactPolicy:
    """The rules-off policy with `text`'s tables replacing its own."""
    return ContactPolicy.model_validate({**tomllib.loads(_OFF), **tomllib.loads(text)})


def reserve(store: ContactStore, customer: str, channel: str, offers: list[OfferRef], now: datetime,
            policy: ContactPolicy):
    return store.check_and_reserve(customer, channel, offers, now, policy, f"e{next(_ids)}",
                                   {o.offer_id: 0.5 for o in offers})


def decline(store: ContactStore, customer: str, offer: OfferRef, shown: datetime, at: datetime,
            policy: ContactPolicy) -> None:
    r = reserve(store, customer, "web", [offer], shown, policy)
    assert r.ok, r
    assert store.record_outcome(r.decision_id, offer.offer_id, "declined", at)


Setup = Callable[[ContactStore, str], None]

# (rule, policy, set-up at T, probe channel, probe offers, days, reason, offers still allowed inside)
RULES = [
    ("channel cap", _policy("[caps]\nweb = { max = 1, days = 3 }\n"),
     lambda s, c, p: reserve(s, c, "web", [A], T, p), "web", [C], 3, "cap_channel", []),
    ("channel cap counts contacts, not shows", _policy("[caps]\nemail = { max = 2, days = 4 }\n"),
     lambda s, c, p: (reserve(s, c, "email", [A, B], T - timedelta(days=1), p), reserve(s, c, "email", [C], T, p)),
     "email", [OfferRef("o-d", "home")], 3, "cap_channel", []),
    ("outbound cap", _policy('[outbound]\nchannels = ["email", "sms"]\nmax = 1\ndays = 5\n'),
     lambda s, c, p: reserve(s, c, "email", [A], T, p), "sms", [C], 5, "cap_outbound", []),
    ("offer cap", _policy("[offer_cap]\nmax = 1\ndays = 4\n"),
     lambda s, c, p: reserve(s, c, "web", [A], T, p), "web", [A, C], 4, "cap_offer", ["o-c"]),
    ("offer cap of 2", _policy("[offer_cap]\nmax = 2\ndays = 6\n"),
     lambda s, c, p: (reserve(s, c, "web", [A], T - timedelta(days=2), p), reserve(s, c, "app", [A], T, p)),
     "email", [A, C], 4, "cap_offer", ["o-c"]),
    ("offer cooldown", _policy("[cooldown]\noffer_days = 6\ncategory_days = 0\n"),
     lambda s, c, p: decline(s, c, A, T - timedelta(hours=3), T, p), "web", [A, B], 6, "cooldown_offer", ["o-b"]),
    ("category cooldown", _policy("[cooldown]\noffer_days = 0\ncategory_days = 5\n"),
     lambda s, c, p: decline(s, c, A, T - timedelta(hours=3), T, p), "web", [B, C], 5, "cooldown_category", ["o-c"]),
]


@pytest.mark.parametrize(("name", "policy", "setup", "channel", "offers", "days", "reason", "allowed"),
                         RULES, ids=[r[0] for r in RULES])
@pytest.mark.parametrize(("step", "inside"), [(-SEC, True), (timedelta(0), False), (SEC, False)],
                         ids=["1s-before-the-end", "at-the-end", "1s-after"])
def test_every_window_at_its_boundary(make_store, name, policy, setup, channel, offers, days, reason, allowed,
                                      step, inside) -> None:
    store = make_store(horizon_days=10)
    customer = f"c-{name}"
    setup(store, customer, policy)
    now = T + timedelta(days=days) + step
    expected_refused = [(o.offer_id, reason) for o in offers if o.offer_id not in allowed] if inside else []
    # the Python pre-filter on the store's history, then the store's own atomic check
    ok, refused = split_offers(store.history(customer, now), channel, offers, policy)
    assert refused == expected_refused, name
    r = reserve(store, customer, channel, offers, now, policy)
    assert list(r.refused) == expected_refused, name
    assert [o.offer_id for o in r.reserved] == [o.offer_id for o in ok]


def test_a_web_contact_does_not_count_in_the_outbound_cap(make_store) -> None:
    store = make_store()
    policy = _policy('[outbound]\nchannels = ["email", "sms"]\nmax = 1\ndays = 5\n')
    assert reserve(store, "c1", "web", [A], T, policy).ok
    assert reserve(store, "c1", "email", [C], T + SEC, policy).ok  # web is not outbound
    assert reserve(store, "c1", "web", [B], T + 2 * SEC, policy).ok  # nor limited by it
    assert reserve(store, "c1", "sms", [B], T + 3 * SEC, policy).refused == (("o-b", "cap_outbound"),)


def test_a_cap_of_zero_refuses_the_first_contact(make_store) -> None:
    store = make_store()
    policy = _policy("[caps]\nsms = { max = 0, days = 1 }\n")
    assert reserve(store, "c1", "sms", [A], T, policy).refused == (("o-a", "cap_channel"),)
    assert reserve(store, "c1", "email", [A], T, policy).ok


def test_an_empty_answer_is_not_a_contact(make_store) -> None:
    store = make_store()
    policy = _policy("[caps]\nweb = { max = 1, days = 3 }\n")
    assert not reserve(store, "c1", "web", [], T, policy).ok
    assert reserve(store, "c1", "web", [A], T + SEC, policy).ok


@pytest.mark.parametrize("kind", ["offer", "category"])
def test_a_later_decline_extends_the_cooldown_whatever_the_arrival_order(make_store, kind) -> None:
    """Two shows declined at T and T + 3 days: the cooldown runs from the later decline, also when
    the later one is reported first (the earlier report must not shorten it)."""
    policy = _policy("[cooldown]\noffer_days = 5\ncategory_days = 0\n" if kind == "offer"
                     else "[cooldown]\noffer_days = 0\ncategory_days = 5\n")
    probe, reason = ([A], "cooldown_offer") if kind == "offer" else ([B], "cooldown_category")
    for order in ("in order", "reversed"):
        store = make_store()
        d1 = reserve(store, "c1", "web", [A], T - timedelta(hours=2), policy)
        d2 = reserve(store, "c1", "web", [A], T - timedelta(hours=1), policy)
        reports = [(d1, T), (d2, T + timedelta(days=3))]
        for d, at in reports if order == "in order" else reports[::-1]:
            assert store.record_outcome(d.decision_id, "o-a", "declined", at)
        past_first = T + timedelta(days=5, seconds=1)
        got = reserve(store, "c1", "web", probe, past_first, policy)
        assert got.refused == ((probe[0].offer_id, reason),), order
        assert reserve(store, "c1", "web", probe, T + timedelta(days=8), policy).ok, order


def test_a_duplicate_offer_in_one_reservation_is_reserved_once(make_store) -> None:
    store = make_store()
    policy = _policy("[offer_cap]\nmax = 2\ndays = 5\n")
    r = reserve(store, "c1", "web", [A, A, C, A], T, policy)
    assert [o.offer_id for o in r.reserved] == ["o-a", "o-c"] and r.refused == ()
    assert [c["offer_id"] for c in store.export("c1")["contacts"]] == ["o-a", "o-c"]
    assert store.history("c1", T).offer_shows("o-a", 5) == 1
    assert reserve(store, "c1", "web", [A], T + SEC, policy).ok  # the second show of 2
    r = reserve(store, "c1", "web", [A, A], T + 2 * SEC, policy)
    assert r.refused == (("o-a", "cap_offer"),)  # one refusal for the duplicated offer
    assert [d["n_offers"] for d in store.export("c1")["decisions"]] == [2, 1, 0]  # offers reserved, not asked


# ------------------------------------------------------------------------ horizon of the store
WINDOWS = {
    "channel cap": "[caps]\nweb = {{ max = 1, days = {d} }}\n",
    "outbound cap": '[outbound]\nchannels = ["web", "email"]\nmax = 1\ndays = {d}\n',
    "offer cap": "[offer_cap]\nmax = 1\ndays = {d}\n",
    "offer cooldown": "[cooldown]\noffer_days = {d}\ncategory_days = 0\n",
    "category cooldown": "[cooldown]\noffer_days = 0\ncategory_days = {d}\n",
}


@pytest.mark.parametrize("window", list(WINDOWS))
def test_a_window_longer_than_the_horizon_is_refused(make_store, window) -> None:
    store = make_store(horizon_days=20)
    policy = _policy(WINDOWS[window].format(d=21))
    assert policy.longest_window_days == 21
    with pytest.raises(ConfigError, match="21 days"):
        reserve(store, "c1", "web", [A], T, policy)
    with pytest.raises(ConfigError, match="21 days"):
        store.check_policy(policy)


@pytest.mark.parametrize("window", list(WINDOWS))
def test_a_window_as_long_as_the_horizon_counts_its_first_day(make_store, window) -> None:
    """Window = horizon: accepted, and a contact or decline 1 s inside the window's far end counts."""
    store = make_store(horizon_days=20)
    policy = _policy(WINDOWS[window].format(d=20))
    store.check_policy(policy)
    if "cooldown" in window:
        decline(store, "c1", A, T - timedelta(hours=1), T, policy)
        probe = [A] if window == "offer cooldown" else [B]
    else:
        assert reserve(store, "c1", "web", [A], T, policy).ok
        probe = [A] if window == "offer cap" else [C]
    inside = reserve(store, "c1", "web", probe, T + timedelta(days=20) - SEC, policy)
    assert not inside.ok, window
    assert split_offers(store.history("c1", T + timedelta(days=20) - SEC), "web", probe, policy)[0] == []
    assert reserve(store, "c1", "web", probe, T + timedelta(days=20), policy).ok, window


def test_the_default_policy_needs_30_days_and_each_kind_counts() -> None:
    """`longest_window_days` sees every cap kind (derived from `serving.caps.CAP_KINDS`)."""
    base = _policy("")
    assert base.longest_window_days == 1
    for window, text in WINDOWS.items():
        assert _policy(text.format(d=40)).longest_window_days == 40, window


def test_writes_near_the_end_of_the_horizon_keep_the_history_the_caps_need(make_store) -> None:
    """Redis trims a customer's sorted sets to the horizon at each write: a write late in the
    window must not drop a contact the window still counts."""
    store = make_store(horizon_days=20)
    policy = _policy("[caps]\nweb = { max = 2, days = 20 }\n[offer_cap]\nmax = 2\ndays = 20\n")
    assert reserve(store, "c1", "web", [A], T, policy).ok
    assert reserve(store, "c1", "web", [A], T + timedelta(days=19, hours=12), policy).ok  # trims, in Redis
    end = T + timedelta(days=20) - SEC
    assert reserve(store, "c1", "web", [C], end, policy).refused == (("o-c", "cap_channel"),)
    assert store.history("c1", end).offer_shows("o-a", 20) == 2
    assert reserve(store, "c1", "web", [C], T + timedelta(days=20), policy).ok

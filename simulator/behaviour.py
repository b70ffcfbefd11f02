"""One day of behaviour for all active customers, vectorised: sessions, store visits, calls.

Interest drives behaviour: each customer has an intent category that persists a few days;
online sessions browse it (page_view, search, product_view), sometimes cart and then buy there;
store visits buy mostly in the intent category. Complaints rise with contact fatigue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import EV, EV_CH, SimConfig
from simulator.hours import draw_times
from simulator.state import CustomerState, draw_category
from simulator.world import DAY, Population

_BROWSE_TYPES = np.array([EV["page_view"], EV["search"], EV["product_view"]], dtype=np.int8)
_BROWSE_P = np.array([0.3, 0.2, 0.5])
BROWSE_TYPE_CODES = tuple(int(t) for t in _BROWSE_TYPES) + (EV["add_to_cart"],)


@dataclass(frozen=True)
class EventBatch:
    """Events as arrays; `ts` in seconds from the period start."""

    customer: np.ndarray  # int32
    ts: np.ndarray  # int64
    channel: np.ndarray  # int8 event channel code
    type: np.ndarray  # int8 event type code
    category: np.ndarray  # int8, -1 = none
    product: np.ndarray  # int32 global product code, -1 = none
    amount: np.ndarray  # float64, NaN unless a purchase

    def __len__(self) -> int:
        return len(self.customer)

    @staticmethod
    def concat(batches: list[EventBatch]) -> EventBatch:
        if not batches:
            return EventBatch(*(np.empty(0, dtype=d) for d in _DTYPES))
        return EventBatch(*(np.concatenate([getattr(b, f) for b in batches]) for f in _FIELDS))

    def sorted(self) -> EventBatch:
        order = np.lexsort((self.customer, self.ts))
        return EventBatch(*(getattr(self, f)[order] for f in _FIELDS))


_FIELDS = ("customer", "ts", "channel", "type", "category", "product", "amount")
_DTYPES = (np.int32, np.int64, np.int8, np.int8, np.int8, np.int32, np.float64)


@dataclass(frozen=True)
class Sessions:
    """Today's web/app sessions: who, on which channel (0 web, 1 app), starting when (s)."""

    customer: np.ndarray
    channel: np.ndarray
    start: np.ndarray


class Products:
    """Per-category product lists with fixed prices and a skewed popularity."""

    def __init__(self, config: SimConfig, rng: np.random.Generator) -> None:
        k, p = config.n_categories, config.products_per_category
        self.per_category = p
        level = rng.lognormal(3.3, 0.6, k)  # category price level (currency units)
        self.price = np.round(level[:, None] * rng.lognormal(0.0, 0.5, (k, p)), 2).reshape(-1)
        pop = 1.0 / np.arange(1, p + 1) ** 0.8
        self.cum_popularity = np.cumsum(pop / pop.sum())

    def draw(self, rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
        k = np.minimum(np.searchsorted(self.cum_popularity, rng.random(len(category))), self.per_category - 1)
        return (category.astype(np.int32) * self.per_category + k).astype(np.int32)

    def amount(self, rng: np.random.Generator, product: np.ndarray) -> np.ndarray:
        return np.round(self.price[product] * rng.uniform(0.9, 1.1, len(product)), 2)

    def names(self, categories: tuple[str, ...]) -> list[str]:
        return [f"p-{c}-{i:03d}" for c in categories for i in range(self.per_category)]


def simulate_behaviour(
    config: SimConfig,
    population: Population,
    state: CustomerState,
    products: Products,
    active: np.ndarray,
    day: int,
    rng: np.random.Generator,
    hour_rng: np.random.Generator | None = None,
) -> tuple[EventBatch, Sessions]:
    """Draw today's events of `active` customers (positions) and update their state in place.

    With `hour_rng` (a world with send hours) sessions, store visits and calls are timed by the
    customers' hour profiles (`simulator.hours`); `rng` makes the same draws either way."""
    profile = population.hour_profile if hour_rng is not None and population.hour_profile.size else None
    k = config.n_categories
    day0 = day * DAY
    # intent persists a geometric number of days, then is redrawn from affinity
    switch = active[rng.random(len(active)) < 1.0 / config.intent_persistence_days]
    state.intent[switch] = draw_category(population, switch, rng.random(len(switch)))
    state.recent_browse[active] *= config.browse_memory_decay
    state.complaint_recent[active] *= 0.97
    starting = active[~state.drifting[active]]
    state.drifting[starting[rng.random(len(starting)) < config.drift_start_rate]] = True

    rate = population.activity[active] * np.where(state.drifting[active], 0.25, 1.0)
    online = population.online_share[active]
    if config.cannibalisation:  # no draw: the day's events are those of the world without it
        state.organic_today = np.zeros((population.n, k))
        state.organic_today[active] = organic_probability(config, population, state, active, rate)
    on = rng.random(len(active)) < np.minimum(rate * online, 0.9)
    sc = active[on]
    s_ch = np.where(rng.random(len(sc)) < population.app_share[sc], EV_CH["app"], EV_CH["web"]).astype(np.int8)
    s_start = day0 + rng.integers(6 * 3600, 23 * 3600, len(sc))
    if profile is not None:  # sessions start before 23:00, as without the option
        s_start = draw_times(profile[sc], day0, 0, 23, hour_rng)
    parts = [_sessions(config, population, state, products, sc, s_ch, s_start, rng)]

    store = active[rng.random(len(active)) < np.minimum(rate * (1 - online) * 0.6, 0.9)]
    store_t = None if profile is None else draw_times(profile[store], day0, 9, 20, hour_rng)  # opening hours
    parts.append(_store_visits(config, population, state, products, store, day0, rng, store_t))

    fatigue = state.fatigue(population, active, config.fatigue_tolerance)
    complain = active[rng.random(len(active)) < config.complaint_rate * (1 + 2.0 * fatigue)]
    call = active[rng.random(len(active)) < config.call_rate]
    state.complaint_recent[complain] += 1.0
    for who, kind in ((complain, EV["complaint"]), (call, EV["call"])):
        m = len(who)
        when = day0 + rng.integers(8 * 3600, 20 * 3600, m)
        if profile is not None:  # the call centre's hours
            when = draw_times(profile[who], day0, 8, 20, hour_rng)
        parts.append(
            EventBatch(
                who.astype(np.int32),
                when,
                np.full(m, EV_CH["call_center"], np.int8),
                np.full(m, kind, np.int8),
                np.full(m, -1, np.int8),
                np.full(m, -1, np.int32),
                np.full(m, np.nan),
            )
        )
    events = EventBatch.concat(parts)
    record_events(state, events, day, k)
    return events, Sessions(sc, s_ch, s_start)


def organic_probability(
    config: SimConfig, population: Population, state: CustomerState, active: np.ndarray, rate: np.ndarray
) -> np.ndarray:
    """(len(active), k): the exact probability that each active customer buys in each category
    today, without any contact, under the draws `simulate_behaviour` makes next (`rate`: today's
    visit rate, lower when drifting).

    A web/app session (probability min(rate x online share, 0.9)) buys in the intent category
    after a cart; a store visit (probability min(rate x (1 - online share) x 0.6, 0.9)) buys with
    probability `store_purchase_rate`, in the intent category with probability 0.45 + 0.4 x recent
    browsing of it (at most 1), else in a category drawn from the affinities. The two are
    independent, so P(buy k) = 1 - (1 - P(session buys k)) (1 - P(store buys k)).
    """
    k = config.n_categories
    rows = np.arange(len(active))
    intent = state.intent[active].astype(np.int64)
    online = population.online_share[active].astype(np.float64)
    rate = np.asarray(rate, dtype=np.float64)
    browsed = state.recent_browse[active, intent].astype(np.float64)
    boost = 1.0 + 0.3 * np.minimum(browsed, 3.0)
    session = np.minimum(rate * online, 0.9)
    cart = np.minimum(config.cart_rate * boost, 0.9)
    buy = config.buy_after_cart * (1.0 - 0.3 * population.price_sensitivity[active].astype(np.float64))
    p_session = np.zeros((len(active), k))
    p_session[rows, intent] = session * cart * buy
    visit = np.minimum(rate * (1.0 - online) * 0.6, 0.9) * config.store_purchase_rate
    stay = np.minimum(0.45 + 0.4 * np.minimum(browsed, 1.0), 1.0)  # P(u <= threshold): the intent category
    p_store = ((1.0 - stay) * visit)[:, None] * population.affinity[active].astype(np.float64)
    p_store[rows, intent] += stay * visit
    return 1.0 - (1.0 - p_session) * (1.0 - p_store)


def record_events(state: CustomerState, events: EventBatch, day: int, n_categories: int) -> None:
    """Update browse memory, purchase counters and last activity from a batch of events."""
    if not len(events):
        return
    browse = np.isin(events.type, BROWSE_TYPE_CODES) & (events.category >= 0)
    if browse.any():
        flat = events.customer[browse].astype(np.int64) * n_categories + events.category[browse]
        counts = np.bincount(flat, minlength=state.recent_browse.size).reshape(state.recent_browse.shape)
        state.recent_browse += counts.astype(np.float32)
    buy = events.type == EV["purchase"]
    if buy.any():
        state.n_purchases += np.bincount(events.customer[buy], minlength=len(state.n_purchases)).astype(np.int32)
        cat = events.category[buy]
        low = cat < 8
        np.bitwise_or.at(state.category_mask, events.customer[buy][low], (1 << cat[low]).astype(np.uint8))
    visit = events.type != EV["complaint"]
    state.last_active_day[events.customer[visit]] = day


def _sessions(config, population, state, products, sc, s_ch, s_start, rng) -> EventBatch:
    m = len(sc)
    intent = state.intent[sc]
    n_browse = 1 + np.minimum(rng.poisson(config.browse_events_mean, m), 7)
    boost = 1.0 + 0.3 * np.minimum(state.recent_browse[sc, intent], 3.0)
    cart = rng.random(m) < np.minimum(config.cart_rate * boost, 0.9)
    buy = cart & (rng.random(m) < config.buy_after_cart * (1.0 - 0.3 * population.price_sensitivity[sc]))
    n_ev = n_browse + cart + buy
    total = int(n_ev.sum())
    sess = np.repeat(np.arange(m), n_ev)
    first = np.repeat(np.cumsum(n_ev) - n_ev, n_ev)
    pos = np.arange(total) - first
    nb = n_browse[sess]
    etype = _BROWSE_TYPES[np.searchsorted(np.cumsum(_BROWSE_P), rng.random(total))]
    etype[pos == 0] = EV["page_view"]
    etype[pos == nb] = EV["add_to_cart"]
    etype[pos == nb + 1] = EV["purchase"]
    category = intent[sess].astype(np.int8)
    stray = (pos < nb) & (rng.random(total) < 0.15)  # some browsing wanders off the intent
    category[stray] = rng.integers(0, config.n_categories, stray.sum())
    product = products.draw(rng, category)
    # the purchase is of the carted product
    bought = etype == EV["purchase"]
    product[bought] = product[np.flatnonzero(bought) - 1]
    product[(etype == EV["page_view"]) | (etype == EV["search"])] = -1
    amount = np.full(total, np.nan)
    amount[bought] = products.amount(rng, product[bought])
    gaps = rng.integers(20, 240, total)
    gaps[pos == 0] = 0
    offset = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[np.cumsum(n_ev) - n_ev], n_ev)
    return EventBatch(
        sc[sess].astype(np.int32),
        s_start[sess] + offset,
        s_ch[sess],
        etype.astype(np.int8),
        category,
        product,
        amount,
    )


def _store_visits(config, population, state, products, store, day0, rng, times=None) -> EventBatch:
    m = len(store)
    buy = rng.random(m) < config.store_purchase_rate
    cat = state.intent[store].copy()
    browsed = np.minimum(state.recent_browse[store, cat], 1.0)
    other = rng.random(m) > 0.45 + 0.4 * browsed  # without recent browsing, often another category
    cat[other] = draw_category(population, store[other], rng.random(other.sum()))
    t = day0 + rng.integers(9 * 3600, 20 * 3600, m)
    if times is not None:
        t = times
    n_ev = 1 + buy
    idx = np.repeat(np.arange(m), n_ev)
    is_buy = np.zeros(len(idx), dtype=bool)
    is_buy[np.cumsum(n_ev)[buy] - 1] = True
    product = np.full(len(idx), -1, np.int32)
    category = np.full(len(idx), -1, np.int8)
    category[is_buy] = cat[idx[is_buy]]
    product[is_buy] = products.draw(rng, category[is_buy])
    amount = np.full(len(idx), np.nan)
    amount[is_buy] = products.amount(rng, product[is_buy])
    return EventBatch(
        store[idx].astype(np.int32),
        t[idx] + np.where(is_buy, rng.integers(120, 1800, len(idx)), 0),
        np.full(len(idx), EV_CH["store"], np.int8),
        np.where(is_buy, EV["purchase"], EV["store_visit"]).astype(np.int8),
        category,
        product,
        amount,
    )

"""The stepping simulator: `Simulator(config, seed).step(policy)` advances one day.

Each day: customers' intents move and they browse, visit and buy (behaviour); the policy sees a
`DayView` and returns contacts; outcomes are drawn from the true acceptance probability; accepted
offers become purchases; contact pressure builds fatigue, which drives opt-outs and churn; the
lifecycle is updated. One numpy generator per concern, all spawned from the seed, so the same
seed gives the same world and, with the same policy, the same history.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from nbo.errors import NboError
from nbo.vocab import NO_OFFER_REASONS
from simulator.behaviour import EventBatch, Products, record_events, simulate_behaviour
from simulator.catalogue import Catalogue, make_catalogue, with_variants
from simulator.io import contacts_frame, events_frame
from simulator.config import CH, EV, EV_CH, LIFE, OPT_IN_CODES, OUT, SimConfig
from simulator.hours import hour_profiles
from simulator.policies import Contacts, DayView, Holdout, NoOffers, Policy, RandomPolicy
from simulator.state import CustomerState, initial_state, tenure_days, update_lifecycle
from simulator.truth import accept_probability, anyway_probability, churn_hazard, incremental_effect
from simulator.world import DAY, Population, customer_ids, make_population


@dataclass(frozen=True)
class DayResult:
    """Aggregates of one simulated day (value and cost in currency units)."""

    day: int
    date: pd.Timestamp
    active: int  # signed up and not churned at the start of the day
    events: int
    contacts: int
    accepted: int
    value: float  # sum of the value of accepted offers
    cost: float  # sum of the cost of contacts made
    organic_amount: float  # sum of the amounts of the day's purchases no offer prompted
    churned_today: int
    churned_total: int
    optouts: int
    # Incremental books (written to daily.parquet only in a world with cannibalisation or incentives):
    incentive_cost: float = 0.0  # incentives given away with the accepted offers
    accepted_anyway: int = 0  # acceptances by customers who bought the category that day anyway
    incremental_value: float = 0.0  # incremental margin of the acceptances - incentive cost - contact cost


@dataclass(frozen=True)
class ContactLog:
    """Contacts as arrays (one chunk per day); `outcome_ts` -1 = pending."""

    decision: np.ndarray  # int64 running number, unique per simulator
    customer: np.ndarray
    offer: np.ndarray
    channel: np.ndarray
    ts: np.ndarray
    propensity: np.ndarray
    outcome: np.ndarray
    outcome_ts: np.ndarray
    p_accept: np.ndarray
    lifecycle: np.ndarray
    p_organic: np.ndarray  # true P(buys the offer's category that day anyway); 0 without cannibalisation
    anyway: np.ndarray  # bool: did buy it that day without the offer (drawn before the contact)
    incremental_value: np.ndarray  # true expected incremental value of the contact (Effect)

    @staticmethod
    def concat(chunks: list[ContactLog]) -> ContactLog:
        names = ContactLog.__dataclass_fields__
        if not chunks:
            return ContactLog(*(np.empty(0) for _ in names))
        return ContactLog(*(np.concatenate([getattr(c, f) for c in chunks]) for f in names))


@dataclass(frozen=True)
class NoOfferLog:
    """Decisions without contact (one chunk per day), numbered with the contacts' decisions."""

    decision: np.ndarray
    customer: np.ndarray
    channel: np.ndarray
    ts: np.ndarray
    reason: np.ndarray
    propensity: np.ndarray

    @staticmethod
    def concat(chunks: list[NoOfferLog]) -> NoOfferLog:
        names = NoOfferLog.__dataclass_fields__
        if not chunks:
            return NoOfferLog(*(np.empty(0, dtype=np.int64) for _ in names))
        return NoOfferLog(*(np.concatenate([getattr(c, f) for c in chunks]) for f in names))


@dataclass(frozen=True)
class ConsentLog:
    customer: np.ndarray
    channel: np.ndarray  # contact channel code
    granted: np.ndarray
    ts: np.ndarray


class Simulator:
    """A simulated customer base over `config.days` days from `config.start`."""

    def __init__(self, config: SimConfig, seed: int) -> None:
        self.config = config
        self.seed = int(seed)
        seq = np.random.SeedSequence(self.seed)
        s_world, s_cat, s_state, s_days, s_policy = seq.spawn(5)
        self.population: Population = make_population(config, np.random.default_rng(s_world))
        cat_rng = np.random.default_rng(s_cat)
        self.catalogue: Catalogue = with_variants(make_catalogue(config, cat_rng), config)
        self.products = Products(config, cat_rng)
        self.state: CustomerState = initial_state(config, self.population, np.random.default_rng(s_state),
                                                  n_offers=len(self.catalogue.value))
        self.rng = np.random.default_rng(s_days)
        self._policy_seed = s_policy
        # The later-days part of "buys anyway" (cannibalisation only): its own stream, so the
        # world's other draws are those of the world without cannibalisation.
        self._anyway_rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(7, 21)))
        # Hour-of-day engagement (send hours only): its own stream too, the profiles drawn first.
        self._hour_rng: np.random.Generator | None = None
        if config.send_hours:
            self._hour_rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(7, 22)))
            self.population = dataclasses.replace(
                self.population, hour_profile=hour_profiles(config, self.population.n, self._hour_rng))
        self._default_policy: RandomPolicy | None = None
        self.customer_ids = customer_ids(config.customers)
        self.day = 0
        self.results: list[DayResult] = []
        self._events: list[EventBatch] = []
        self._contacts: list[ContactLog] = []
        self._no_offers: list[NoOfferLog] = []
        self._consents: list[ConsentLog] = [self._signup_consents()]
        self._n_decisions = 0
        self._signup_order = np.argsort(self.population.signup_sec, kind="stable")

    # ------------------------------------------------------------------ policies

    def default_policy(self) -> RandomPolicy:
        """The logging policy that produced the published datasets (uniform over eligible offers)."""
        if self._default_policy is None:
            cfg = self.config
            holdout = (Holdout(cfg.control_share, cfg.no_offer_rate, tuple(CH[c] for c in cfg.control_channels))
                       if cfg.holds_out else None)
            self._default_policy = RandomPolicy(
                self.population.contact_intensity, self.config.banner_rate, self._policy_seed, holdout
            )
        return self._default_policy

    # ------------------------------------------------------------------ stepping

    def run(self, days: int | None = None, policy: Policy | None = None, progress: bool = False) -> list[DayResult]:
        """Advance `days` days (default: to the end of the period) with one policy."""
        days = self.config.days - self.day if days is None else days
        policy = policy if policy is not None else self.default_policy()
        out = []
        for _ in tqdm(range(days), desc="simulate", unit="day", disable=not progress, leave=False):
            out.append(self.step(policy))
        return out

    def step(self, policy: Policy | None = None) -> DayResult:
        """Simulate one day with `policy` (default: the default logging policy) and return its
        aggregates. Raises NboError past the end of the period or if the policy breaks a rule."""
        if self.day >= self.config.days:
            raise NboError(f"the simulation period of {self.config.days} days is over")
        policy = policy if policy is not None else self.default_policy()
        cfg, pop, st, rng, day = self.config, self.population, self.state, self.rng, self.day
        day0, day_end = day * DAY, (day + 1) * DAY
        signed = pop.signup_sec < day0
        active = np.flatnonzero(signed & ~st.churned)
        st.pressure *= cfg.pressure_decay
        st.offer_seen *= cfg.offer_memory_decay  # (n, 0) without offer wear-out

        events, sessions = simulate_behaviour(cfg, pop, st, self.products, active, day, rng, self._hour_rng)
        organic_amount = float(events.amount[events.type == EV["purchase"]].sum())
        tenure = tenure_days(pop, day)
        view = DayView(
            day=day,
            date=pd.Timestamp(cfg.start) + pd.Timedelta(days=day),
            customers=np.flatnonzero(signed),
            sessions=sessions,
            consent=st.consent,
            offers=self.catalogue,
            customer_ids=self.customer_ids,
            history=_History(self),
            _p_accept=lambda c, o, ch: accept_probability(cfg, pop, st, self.catalogue, c, o, ch),
            _effect=lambda c, o, ch: incremental_effect(cfg, pop, st, self.catalogue, c, o, ch),
            _tenure=tenure,
            _lifecycle=st.lifecycle,
        )
        chosen = policy(view)
        contacts = self._checked(chosen, signed, sessions, day)
        log, bought = self._outcomes(contacts, day, day_end, events)
        if chosen.no_offers is not None:
            self._no_offers.append(self._no_offer_log(chosen.no_offers, signed, day))
        events = EventBatch.concat([events, bought]).sorted()
        record_events(st, bought, day, cfg.n_categories)
        self._events.append(events)
        self._contacts.append(log)
        if len(contacts):
            flat = contacts.customer * 6 + contacts.channel
            st.pressure += np.bincount(flat, minlength=st.pressure.size).reshape(st.pressure.shape).astype(np.float32)
            if st.offer_seen.size:
                np.add.at(st.offer_seen, (contacts.customer, self.catalogue.base[contacts.offer]), np.float32(1.0))

        optouts = self._optouts(active, day_end)
        churned_today = self._churn(active, day, day_end)
        update_lifecycle(st, pop, day + 1)
        st.lifecycle[st.churned & (day + 1 - st.churn_day > 60)] = LIFE["lapsed"]
        accepted = log.outcome == OUT["accepted"]
        cat = self.catalogue
        acc_offer = log.offer[accepted]
        earned = np.where(log.anyway[accepted], cfg.anyway_value_share, 1.0) * cat.base_value[acc_offer]
        result = DayResult(
            day=day,
            date=view.date,
            active=len(active),
            events=len(events),
            contacts=len(log.customer),
            accepted=int(accepted.sum()),
            value=float(self.catalogue.value[log.offer[accepted]].sum()),
            cost=float(self.catalogue.cost[log.offer].sum()),
            organic_amount=organic_amount,
            churned_today=churned_today,
            churned_total=int(st.churned.sum()),
            optouts=optouts,
            incentive_cost=float(cat.incentive_cost[acc_offer].sum()),
            accepted_anyway=int(log.anyway[accepted].sum()),
            incremental_value=float((earned - cat.incentive_cost[acc_offer]).sum() - cat.cost[log.offer].sum()),
        )
        self.results.append(result)
        self.day += 1
        return result

    # ------------------------------------------------------------------ internals

    def _signup_consents(self) -> ConsentLog:
        granted = self.population.consent_at_signup
        who, which = np.nonzero(granted)
        return ConsentLog(
            who.astype(np.int64),
            np.asarray(OPT_IN_CODES)[which].astype(np.int8),
            np.ones(len(who), dtype=bool),
            self.population.signup_sec[who],
        )

    def _checked(self, c: Contacts, signed: np.ndarray, sessions, day: int) -> Contacts:
        n = len(c.customer)
        customer = np.asarray(c.customer, dtype=np.int64)
        offer = np.asarray(c.offer, dtype=np.int64)
        channel = np.asarray(c.channel, dtype=np.int64)
        prop = np.asarray(c.propensity, dtype=np.float64)
        if not (len(offer) == len(channel) == len(prop) == n):
            raise NboError("policy returned arrays of different lengths")
        if n == 0:
            return Contacts(customer, offer, channel, prop, np.empty(0, dtype=np.int64))
        if customer.min() < 0 or customer.max() >= len(signed) or not signed[customer].all():
            raise NboError("policy contacted a customer who has not signed up yet")
        if offer.min() < 0 or offer.max() >= self.catalogue.n:
            raise NboError("policy chose an unknown offer")
        if channel.min() < 0 or channel.max() > 5:
            raise NboError("policy chose an unknown channel")
        if not ((prop > 0) & (prop <= 1)).all():
            raise NboError("policy propensities must be in (0, 1]")
        if not (self.catalogue.channels[offer, channel] & self.catalogue.valid_on(day)[offer]).all():
            raise NboError("policy chose an offer not valid today or not allowed on its channel")
        optin = np.isin(channel, OPT_IN_CODES)
        col = np.searchsorted(np.asarray(OPT_IN_CODES), channel[optin])
        if not self.state.consent[customer[optin], col].all():
            raise NboError("policy contacted a customer on a channel without consent")
        banner = channel <= CH["app"]
        session_keys = sessions.customer.astype(np.int64) * 2 + sessions.channel
        if not np.isin(customer[banner] * 2 + channel[banner], session_keys).all():
            raise NboError("policy showed a banner to a customer without a session on that channel today")
        if c.ts is None:
            ts = np.where(banner, 0, day * DAY + self.rng.integers(8 * 3600, 20 * 3600, n))
            if banner.any():
                start = pd.Series(sessions.start, index=session_keys).groupby(level=0).min()
                ts[banner] = start.reindex(customer[banner] * 2 + channel[banner]).to_numpy() + 30
        else:
            ts = np.asarray(c.ts, dtype=np.int64)
            if len(ts) != n or ts.min() < day * DAY or ts.max() >= (day + 1) * DAY - 1800:
                raise NboError("policy contact times must fall on the day, before 23:30")
        return Contacts(customer, offer, channel, prop, ts)

    def _no_offer_log(self, n: NoOffers, signed: np.ndarray, day: int) -> NoOfferLog:
        """Check and number a policy's decisions without contact (after the day's contacts)."""
        customer = np.asarray(n.customer, dtype=np.int64)
        channel = np.asarray(n.channel, dtype=np.int64)
        ts = np.asarray(n.ts, dtype=np.int64)
        reason = np.asarray(n.reason, dtype=np.int8)
        prop = np.asarray(n.propensity, dtype=np.float64)
        m = len(customer)
        if not (len(channel) == len(ts) == len(reason) == len(prop) == m):
            raise NboError("policy returned no-offer arrays of different lengths")
        if m:
            if customer.min() < 0 or customer.max() >= len(signed) or not signed[customer].all():
                raise NboError("policy decided for a customer who has not signed up yet")
            if channel.min() < 0 or channel.max() > 5 or reason.min() < 0 or reason.max() >= len(NO_OFFER_REASONS):
                raise NboError("policy gave an unknown channel or no-offer reason")
            if not ((prop > 0) & (prop <= 1)).all():
                raise NboError("policy no-offer propensities must be in (0, 1]")
            if ts.min() < day * DAY or ts.max() >= (day + 1) * DAY:
                raise NboError("policy no-offer times must fall on the day")
        decision = self._n_decisions + np.arange(m, dtype=np.int64)
        self._n_decisions += m
        return NoOfferLog(decision, customer, channel, ts, reason, prop)

    def _outcomes(self, c: Contacts, day: int, day_end: int, events: EventBatch) -> tuple[ContactLog, EventBatch]:
        cfg, pop, st, rng = self.config, self.population, self.state, self.rng
        m = len(c.customer)
        category = self.catalogue.category[c.offer].astype(np.int64)
        hour = (c.ts // 3600) % 24 if cfg.send_hours else None  # the UTC hour each contact is delivered
        if cfg.cannibalisation:
            effect = incremental_effect(cfg, pop, st, self.catalogue, c.customer, c.offer, c.channel, hour=hour)
            # Who buys the offer's category today anyway: today's organic purchases, drawn before any contact.
            k = cfg.n_categories
            buys = events.type == EV["purchase"]
            organic = events.customer[buys].astype(np.int64) * k + events.category[buys]
            # Within the window: bought today (the day's draws), or on a later day (one draw per
            # contact at today's rate; the simulator does not take that later purchase back).
            later = 1.0 - (1.0 - st.organic_today[c.customer, category]) ** (cfg.organic_window_days - 1)
            anyway = np.isin(c.customer * k + category, organic) | (self._anyway_rng.random(m) < later)
            p = effect.p_accept
            p_draw = np.where(anyway, anyway_probability(cfg, effect.p_accept_new), effect.p_accept_new)
            p_organic, expected = effect.p_organic, effect.incremental_value
        else:
            p = accept_probability(cfg, pop, st, self.catalogue, c.customer, c.offer, c.channel, hour=hour)
            p_draw, anyway, p_organic = p, np.zeros(m, dtype=bool), np.zeros(m)
            expected = p * (self.catalogue.value[c.offer]) - self.catalogue.cost[c.offer]
        u, r = rng.random(m), rng.random(m)
        banner = c.channel <= CH["app"]
        accepted = u < p_draw
        clicked = ~accepted & (r < 0.05 + 2.0 * p)
        declined = ~accepted & ~clicked & (r < np.where(banner, 0.15, 0.3))
        outcome = np.full(m, OUT["ignored"], dtype=np.int8)
        outcome[clicked], outcome[declined], outcome[accepted] = OUT["clicked"], OUT["declined"], OUT["accepted"]
        room = np.maximum(day_end - 900 - c.ts, 1)
        delay = np.select(
            [accepted, clicked, declined],
            [1 + (rng.random(m) * room).astype(np.int64), rng.integers(5, 3600, m), rng.integers(60, 2 * DAY, m)],
            default=np.where(banner, 1800, 3 * DAY),  # an ignored exposure is closed after a timeout
        )
        outcome_ts = c.ts + delay
        pending = outcome_ts >= self.config.days * DAY
        outcome[pending] = OUT["pending"]
        outcome_ts[pending] = -1
        decision = self._n_decisions + np.arange(m, dtype=np.int64)
        self._n_decisions += m
        log = ContactLog(decision, c.customer, c.offer, c.channel, c.ts, c.propensity, outcome, outcome_ts,
                         p, st.lifecycle[c.customer].copy(), p_organic, anyway, expected)

        # A customer who buys the category anyway makes that purchase with the offer: no second one.
        acc = np.flatnonzero(accepted & ~anyway)
        who = c.customer[acc]
        st.drifting[who[rng.random(len(acc)) < 0.5]] = False
        ch = c.channel[acc]
        online = np.where(rng.random(len(acc)) < pop.app_share[who], EV_CH["app"], EV_CH["web"])
        ev_ch = np.where(ch <= CH["app"], ch, np.where(ch == CH["mail"], EV_CH["store"], online)).astype(np.int8)
        category = self.catalogue.category[c.offer[acc]].astype(np.int8)
        product = self.products.draw(rng, category)
        bought = EventBatch(
            who.astype(np.int32),
            outcome_ts[acc] + rng.integers(30, 600, len(acc)),
            ev_ch,
            np.full(len(acc), EV["purchase"], np.int8),
            category,
            product,
            self.products.amount(rng, product),
        )
        return log, bought

    def _optouts(self, active: np.ndarray, day_end: int) -> int:
        cfg, pop, st, rng = self.config, self.population, self.state, self.rng
        codes = np.asarray(OPT_IN_CODES)
        hazard = cfg.optout_base + cfg.optout_fatigue * (
            pop.fatigue_sensitivity[active][:, codes] * st.pressure[active][:, codes]
        )
        out = st.consent[active] & (rng.random(hazard.shape) < hazard)
        who, which = np.nonzero(out)
        who = active[who]
        st.consent[who, which] = False
        ts = day_end - rng.integers(1, 4 * 3600, len(who))  # after the day's outbound contacts
        self._consents.append(ConsentLog(who, codes[which].astype(np.int8), np.zeros(len(who), bool), ts))
        return len(who)

    def _churn(self, active: np.ndarray, day: int, day_end: int) -> int:
        cfg, pop, st, rng = self.config, self.population, self.state, self.rng
        hazard = churn_hazard(cfg, pop, st, active)
        gone = active[rng.random(len(active)) < hazard]
        st.churned[gone] = True
        st.churn_day[gone] = day
        # leaving under pressure, some withdraw every consent on the way out
        fatigue = st.fatigue(pop, gone, cfg.fatigue_tolerance)
        quit_all = gone[rng.random(len(gone)) < np.minimum(0.1 + 0.2 * fatigue, 0.9)]
        who, which = np.nonzero(st.consent[quit_all])
        who = quit_all[who]
        st.consent[who, which] = False
        self._consents.append(
            ConsentLog(who, np.asarray(OPT_IN_CODES)[which].astype(np.int8), np.zeros(len(who), bool),
                       np.full(len(who), day_end, dtype=np.int64))
        )
        return len(gone)

    # ------------------------------------------------------------------ accessors

    def event_log(self) -> EventBatch:
        return EventBatch.concat(self._events)

    def contact_log(self) -> ContactLog:
        return ContactLog.concat(self._contacts)

    def no_offer_log(self) -> NoOfferLog:
        return NoOfferLog.concat(self._no_offers)

    def consent_log(self) -> ConsentLog:
        parts = self._consents
        return ConsentLog(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("customer", "channel", "granted", "ts")))

    def daily(self) -> pd.DataFrame:
        """Per-day aggregates so far, with cumulative value for closed-loop comparisons."""
        frame = pd.DataFrame([r.__dict__ for r in self.results])
        if not self.config.incremental:  # the books of the worlds recorded before the option existed
            frame = frame.drop(columns=["incentive_cost", "accepted_anyway", "incremental_value"], errors="ignore")
        if len(frame):
            frame["value_cum"] = frame["value"].cumsum()
        return frame


class _History:
    """Read access to the history so far as contract-shaped DataFrames (built on demand)."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def events(self) -> pd.DataFrame:
        return events_frame(self._sim)

    def contacts(self) -> pd.DataFrame:
        return contacts_frame(self._sim)

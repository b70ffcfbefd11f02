"""Contact policies and what they see: the `Policy` protocol, `DayView`, `Contacts`.

A policy is any callable `policy(view: DayView) -> Contacts`. It sees today's contactable
customers, their web/app sessions, consents, the catalogue, read access to history, and (for an
oracle) the TRUE acceptance probability. It returns the contacts it makes, each with the
probability with which it chose that offer (`propensity`, logged for off-policy evaluation).

Customers, offers and channels are integer positions: customer `i` is `view.customer_ids[i]`,
offer `j` is `view.offers.offer_id[j]`, channel `c` is `nbo.vocab.CONTACT_CHANNELS[c]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from simulator.behaviour import Sessions
from simulator.catalogue import Catalogue
from simulator.config import OPT_IN_CODES, OUTBOUND_CODES
from nbo.control import DEFAULT_SALT, in_control
from nbo.errors import NboError
from nbo.vocab import NO_OFFER_REASONS
from simulator.truth import Effect
from simulator.world import DAY

# outbound channel choice weights among the channels a customer may be reached on
_OUTBOUND = np.array(OUTBOUND_CODES)  # email, sms, push, mail
_OUTBOUND_WEIGHT = np.array([1.0, 0.5, 0.8, 0.3])


@dataclass(frozen=True)
class Contacts:
    """Contacts chosen by a policy, as equal-length arrays.

    `ts` (seconds from the period start) may be None: outbound contacts are then sent at a random
    time between 08:00 and 20:00 and banners 30 s into the customer's session.
    """

    customer: np.ndarray
    offer: np.ndarray
    channel: np.ndarray
    propensity: np.ndarray
    ts: np.ndarray | None = None
    #: Decisions that made no contact, to be logged (`no_offers` table); None: none logged.
    no_offers: NoOffers | None = None

    def __len__(self) -> int:
        return len(self.customer)

    @staticmethod
    def empty() -> Contacts:
        z = np.empty(0, dtype=np.int64)
        return Contacts(z, z, z, np.empty(0))


@dataclass(frozen=True)
class NoOffers:
    """Decisions that made no contact, as equal-length arrays: customer and channel positions, the
    time of the decision (seconds from the period start), why (a code into
    `nbo.vocab.NO_OFFER_REASONS`) and the probability with which the policy made no contact."""

    customer: np.ndarray
    channel: np.ndarray
    ts: np.ndarray
    reason: np.ndarray
    propensity: np.ndarray

    def __len__(self) -> int:
        return len(self.customer)


@dataclass(frozen=True)
class DayView:
    """What a policy may look at on one day (read-only by convention: do not mutate arrays)."""

    day: int  # days since the period start
    date: pd.Timestamp  # midnight UTC of `day`
    customers: np.ndarray  # positions of customers signed up before today (churned ones included)
    sessions: Sessions  # today's web/app sessions: where banners can be shown
    consent: np.ndarray  # bool (n, 3): email, sms, push consent granted now
    offers: Catalogue
    customer_ids: list[str]
    history: History
    _p_accept: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] = field(repr=False)
    _tenure: np.ndarray = field(repr=False)
    _lifecycle: np.ndarray = field(repr=False)
    _effect: Callable[[np.ndarray, np.ndarray, np.ndarray], Effect] | None = field(default=None, repr=False)

    def effect(self, customer: np.ndarray, offer: np.ndarray, channel: np.ndarray) -> Effect:
        """TRUE incremental effect of each (customer, offer, channel) contact today against no
        contact (`simulator.truth.Effect`; oracle use only)."""
        if self._effect is None:
            raise NboError("this view carries no incremental truth")
        return self._effect(customer, offer, channel)

    def p_accept(self, customer: np.ndarray, offer: np.ndarray, channel: np.ndarray) -> np.ndarray:
        """TRUE acceptance probability of each (customer, offer, channel) today (oracle use only)."""
        return self._p_accept(customer, offer, channel)

    def tenure_days(self, customer: np.ndarray) -> np.ndarray:
        return self._tenure[customer]

    def lifecycle(self, customer: np.ndarray) -> np.ndarray:
        """Lifecycle code (index into nbo.vocab.LIFECYCLE_STAGES) as the CRM sees it today."""
        return self._lifecycle[customer]

    def allowed_channels(self, customer: np.ndarray) -> np.ndarray:
        """Bool (m, 6): contact channels with consent (or no opt-in needed) for each customer.
        Banners (web, app) additionally need a session today; see `sessions`."""
        out = np.ones((len(customer), 6), dtype=bool)
        out[:, list(OPT_IN_CODES)] = self.consent[customer]
        return out

    def eligible(self, customer: np.ndarray, channel: np.ndarray) -> np.ndarray:
        """Bool (m, n_offers): offers valid today, allowed on the channel, whose rule holds."""
        return self.offers.eligible(self.day, channel, self._tenure[customer], self._lifecycle[customer])


class History(Protocol):
    """Read access to what has happened up to the end of yesterday, as contract-shaped frames."""

    def events(self) -> pd.DataFrame: ...
    def contacts(self) -> pd.DataFrame: ...


class Policy(Protocol):
    def __call__(self, view: DayView) -> Contacts: ...


@dataclass(frozen=True)
class Slots:
    """Contact opportunities: a customer, a channel, a time."""

    customer: np.ndarray
    channel: np.ndarray
    ts: np.ndarray


def contact_slots(view: DayView, intensity: np.ndarray, banner_rate: float, rng: np.random.Generator) -> Slots:
    """Today's opportunities: Poisson(intensity) outbound contacts per customer (at most 3) on a
    consented channel, plus a banner in a share `banner_rate` of web/app sessions."""
    cust = view.customers
    n_out = np.minimum(rng.poisson(intensity[cust]), 3)
    who = np.repeat(cust, n_out)
    allowed = view.allowed_channels(who)[:, _OUTBOUND] * _OUTBOUND_WEIGHT
    cum = allowed.cumsum(1)
    u = rng.random(len(who)) * cum[:, -1]
    channel = _OUTBOUND[np.minimum((u[:, None] >= cum).sum(1), 3)]
    ts = view.day * DAY + rng.integers(8 * 3600, 20 * 3600, len(who))
    s = view.sessions
    shown = rng.random(len(s.customer)) < banner_rate
    return Slots(
        np.concatenate([who, s.customer[shown]]).astype(np.int64),
        np.concatenate([channel, s.channel[shown]]).astype(np.int64),
        np.concatenate([ts, s.start[shown] + 30]).astype(np.int64),
    )


def uniform_choice(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Column index of one True cell per row of the bool (m, n) `mask`, uniformly among the row's
    True cells (every row needs one). One uniform draw per row, so a policy's random stream stays
    what it was."""
    pick = np.floor(rng.random(len(mask)) * mask.sum(1)).astype(np.int64)
    return (mask.cumsum(1) <= pick[:, None]).sum(1)


class RandomPolicy:
    """The default logging policy: per-customer randomised outbound intensity, banners in
    sessions, and each contact's offer drawn uniformly among the eligible offers, so
    `propensity = 1 / number of eligible offers` (eligible: valid today, allowed on the
    channel, eligibility rule satisfied by the customer's tenure and lifecycle)."""

    def __init__(self, intensity: np.ndarray, banner_rate: float, seed: int | np.random.SeedSequence,
                 holdout: Holdout | None = None) -> None:
        self.intensity = intensity
        self.banner_rate = banner_rate
        self.rng = np.random.default_rng(seed)
        self.holdout = holdout
        # The holdout's own draws: the offers drawn stay those of the policy without it.
        entropy = seed.entropy if isinstance(seed, np.random.SeedSequence) else seed
        key = tuple(seed.spawn_key) if isinstance(seed, np.random.SeedSequence) else ()
        self.holdout_rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(*key, 21)))
        self._control: np.ndarray | None = None

    def __call__(self, view: DayView) -> Contacts:
        slots = contact_slots(view, self.intensity, self.banner_rate, self.rng)
        ok = view.eligible(slots.customer, slots.channel)
        count = ok.sum(1)
        keep = count > 0
        ok, count = ok[keep], count[keep]
        offer = uniform_choice(ok, self.rng)
        if self.holdout is None:
            return Contacts(slots.customer[keep], offer, slots.channel[keep], 1.0 / count, slots.ts[keep])
        return self._held_out(view, slots, keep, offer, count)

    def _held_out(self, view: DayView, slots: Slots, keep: np.ndarray, offer: np.ndarray, count: np.ndarray) -> Contacts:
        """The universal control group and randomised "no offer" on top of the uniform choice:
        every slot is a decision, logged as a contact or as a no-offer row with its propensity."""
        h = self.holdout
        assert h is not None
        if self._control is None:
            self._control = in_control(view.customer_ids, h.control_share, h.salt)
        share = np.where(np.isin(slots.channel, h.control_codes), h.control_share, 0.0)
        control = self._control[slots.customer] & (share > 0)
        explore = self.holdout_rng.random(len(slots.customer)) < h.no_offer_rate
        contact = keep & ~control & ~explore
        p_none = np.where(keep, share + (1.0 - share) * h.no_offer_rate, 1.0)
        reason = np.select([control, keep & explore], [NO_OFFER_REASONS.index("control"), NO_OFFER_REASONS.index("explore")],
                           NO_OFFER_REASONS.index("policy")).astype(np.int8)
        chosen = np.zeros(len(keep), dtype=np.int64)
        chosen[keep] = offer
        n_eligible = np.zeros(len(keep))
        n_eligible[keep] = count
        none = ~contact
        return Contacts(
            slots.customer[contact], chosen[contact], slots.channel[contact],
            (1.0 - share[contact]) * (1.0 - h.no_offer_rate) / n_eligible[contact], slots.ts[contact],
            no_offers=NoOffers(slots.customer[none], slots.channel[none], slots.ts[none], reason[none], p_none[none]),
        )


@dataclass(frozen=True)
class Holdout:
    """What a logging policy holds out: a universal control group (`control_share` of customers,
    by hashed id, `nbo.control`) never contacted on the channels `control_codes`, and a
    randomised "no offer" at `no_offer_rate` of the other decisions."""

    control_share: float = 0.0
    no_offer_rate: float = 0.0
    control_codes: tuple[int, ...] = OPT_IN_CODES
    salt: str = DEFAULT_SALT


class OraclePolicy:
    """Same contact opportunities as `RandomPolicy`, but picks the eligible offer with the highest
    TRUE expected value p_accept x value, and makes no contact when that is below the offer's
    cost. Deterministic choice: propensity 1."""

    def __init__(self, intensity: np.ndarray, banner_rate: float, seed: int | np.random.SeedSequence) -> None:
        self.intensity = intensity
        self.banner_rate = banner_rate
        self.rng = np.random.default_rng(seed)

    def __call__(self, view: DayView) -> Contacts:
        slots = contact_slots(view, self.intensity, self.banner_rate, self.rng)
        m, n_off = len(slots.customer), view.offers.n
        ok = view.eligible(slots.customer, slots.channel)
        rows = np.repeat(np.arange(m), n_off)
        offers = np.tile(np.arange(n_off), m)
        p = view.p_accept(slots.customer[rows], offers, slots.channel[rows]).reshape(m, n_off)
        gain = np.where(ok, p * view.offers.value[None, :] - view.offers.cost[None, :], -np.inf)
        best = gain.argmax(1) if m else np.empty(0, dtype=np.int64)
        keep = gain[np.arange(m), best] > 0 if m else np.empty(0, dtype=bool)
        return Contacts(slots.customer[keep], best[keep], slots.channel[keep], np.ones(int(keep.sum())), slots.ts[keep])


class IncrementalOraclePolicy:
    """`OraclePolicy` on the TRUE incremental value (`DayView.effect`): on each contact
    opportunity, the offer and incentive variant with the highest expected incremental margin -
    incentive cost - contact cost, and no contact when none is above 0. The upper bound of what
    an uplift policy can earn on the same opportunities. Deterministic: propensity 1."""

    def __init__(self, intensity: np.ndarray, banner_rate: float, seed: int | np.random.SeedSequence) -> None:
        self.intensity = intensity
        self.banner_rate = banner_rate
        self.rng = np.random.default_rng(seed)

    def __call__(self, view: DayView) -> Contacts:
        slots = contact_slots(view, self.intensity, self.banner_rate, self.rng)
        m, n_off = len(slots.customer), view.offers.n
        if not m:
            return Contacts.empty()
        ok = view.eligible(slots.customer, slots.channel)
        rows = np.repeat(np.arange(m), n_off)
        offers = np.tile(np.arange(n_off), m)
        gain = view.effect(slots.customer[rows], offers, slots.channel[rows]).incremental_value.reshape(m, n_off)
        gain = np.where(ok, gain, -np.inf)
        best = gain.argmax(1)
        keep = gain[np.arange(m), best] > 0
        return Contacts(slots.customer[keep], best[keep], slots.channel[keep], np.ones(int(keep.sum())), slots.ts[keep])


def no_contact(view: DayView) -> Contacts:
    """The policy that never contacts anyone (a baseline)."""
    return Contacts.empty()

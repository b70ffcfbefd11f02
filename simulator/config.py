"""The simulator's one typed configuration and the integer codes it uses internally.

Every knob of the simulated world lives here with its unit, so an experiment is a changed
`SimConfig`, never an edited constant. Inside the simulator channels, event types, outcomes and
lifecycle stages are small integers: their position in the closed vocabularies of `nbo.vocab`.
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import ClassVar

import numpy as np

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from nbo.errors import NboError

from nbo.vocab import (
    CATEGORIES,
    ContactChannel,
    CONTACT_CHANNELS,
    DEFAULT_OPT_IN_CHANNELS,
    EVENT_CHANNELS,
    EVENT_TYPES,
    LIFECYCLE_STAGES,
    ONLINE_CHANNELS,
    OUTBOUND_CHANNELS,
    OUTCOMES,
)

# The product categories (`CATEGORIES`) and the channel groups are the core's (`nbo.vocab`).
SEGMENTS: tuple[str, ...] = ("explorer", "loyalist", "bargain_hunter", "occasional")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")

# Codes: the index of a name in its vocabulary tuple.
CH = {name: i for i, name in enumerate(CONTACT_CHANNELS)}  # web 0, app 1, email 2, sms 3, push 4, mail 5
EV_CH = {name: i for i, name in enumerate(EVENT_CHANNELS)}  # web 0, app 1, store 2, call_center 3
EV = {name: i for i, name in enumerate(EVENT_TYPES)}
OUT = {name: i for i, name in enumerate(OUTCOMES)}
LIFE = {name: i for i, name in enumerate(LIFECYCLE_STAGES)}
#: Contact channels that need a consent row (email, sms, push), as codes, in this order.
OPT_IN_CODES: tuple[int, ...] = tuple(CH[c] for c in DEFAULT_OPT_IN_CHANNELS)
#: Outbound contact channels (email, sms, push, mail), as codes, in this order.
OUTBOUND_CODES: tuple[int, ...] = tuple(CH[c] for c in OUTBOUND_CHANNELS)
#: Banner channels (web, app): a contact shown while the customer is on the site or app.
BANNER_CODES: tuple[int, ...] = tuple(CH[c] for c in ONLINE_CHANNELS)

assert EV_CH["web"] == CH["web"] and EV_CH["app"] == CH["app"], "web/app codes must coincide"


class Incentive(BaseModel):
    """One incentive variant of every offer (10 % off, free delivery...): what it costs and how
    much it moves acceptance.

    Cost per acceptance (currency units) = `discount` x the offer's purchase price (its value /
    `SimConfig.organic_margin`: a 10 % discount on a purchase whose margin is 30 % of the price
    gives away a third of the margin) + `fixed_cost` (e.g. the delivery paid for the customer).
    An incentive must cost something: at least one of the two is above 0.

    Appeal: the acceptance logit rises by `appeal` x (0.2 + 1.6 x price sensitivity): a fully
    price-sensitive customer reacts 1.8 times the appeal, an insensitive one a fifth of it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9_]{1,32}$", description="short id, appended to the offer id")
    discount: float = Field(0.0, ge=0, lt=1, description="share of the purchase price given away")
    fixed_cost: float = Field(0.0, ge=0, description="currency units per acceptance (e.g. delivery)")
    appeal: float = Field(gt=0, description="acceptance logit shift at price sensitivity 0.5 is 1.0 x appeal")

    @model_validator(mode="after")
    def _costs_something(self) -> Incentive:
        if self.discount <= 0 and self.fixed_cost <= 0:
            raise ValueError(f"incentive {self.name!r} has no cost: give its discount (share of the price) "
                             "or its fixed_cost (currency units per acceptance)")
        return self

    def cost(self, value: np.ndarray, margin: float) -> np.ndarray:
        """Cost per acceptance (currency units) of offers worth `value` (margin) each."""
        return self.discount * np.asarray(value, dtype=np.float64) / margin + self.fixed_cost


#: The incentive variants `nbo simulate --incentives` adds to every offer.
DEFAULT_INCENTIVES: tuple[Incentive, ...] = (
    Incentive(name="pct10", discount=0.10, appeal=0.5),
    Incentive(name="pct20", discount=0.20, appeal=0.9),
    Incentive(name="free_delivery", fixed_cost=4.0, appeal=0.3),
)


def parse_incentives(text: str, source: str = "<incentives>") -> tuple[Incentive, ...]:
    """Incentive variants from TOML: one `[[incentive]]` table each (`name`, `discount` and/or
    `fixed_cost`, `appeal`). Raises `NboError` with one line naming the table and the field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NboError(f"{source}: TOML syntax error: {exc}") from None
    items = raw.get("incentive")
    if set(raw) != {"incentive"} or not isinstance(items, list) or not items:
        raise NboError(f"{source}: expected one or more [[incentive]] tables and nothing else")
    out = []
    for n, item in enumerate(items, start=1):
        try:
            out.append(Incentive.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            message = str(err["msg"]).removeprefix("Value error, ")
            raise NboError(f"{source}: incentive #{n}{' ' + where if where else ''}: {message}") from None
    names = [i.name for i in out]
    if len(set(names)) != len(names):
        raise NboError(f"{source}: incentive names must be distinct, got {names}")
    return tuple(out)


def load_incentives(spec: str) -> tuple[Incentive, ...]:
    """`default` (`DEFAULT_INCENTIVES`) or the path of a TOML file for `parse_incentives`."""
    if spec == "default":
        return DEFAULT_INCENTIVES
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NboError(f"{path}: cannot read incentives file: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_incentives(text, str(path))


class SimConfig(BaseModel, frozen=True):
    """The simulated world. Rates are per customer per day unless said otherwise."""

    customers: PositiveInt = 1000
    days: PositiveInt = 90
    start: date = date(2025, 1, 1)
    categories: tuple[str, ...] = CATEGORIES
    products_per_category: PositiveInt = 40

    # population
    pre_period_share: float = Field(0.6, ge=0, le=1, description="share of customers signed up before start")
    pre_period_max_days: PositiveInt = 3 * 365
    affinity_concentration: float = Field(0.35, gt=0, description="Dirichlet concentration; small = peaked")
    activity_mean: float = Field(0.175, gt=0, description="mean daily visit rate (sessions + store visits)")

    # behaviour
    intent_persistence_days: float = Field(5.0, gt=0, description="mean days an intent category lasts")
    browse_events_mean: float = Field(2.0, ge=0, description="extra browse events per session (Poisson)")
    cart_rate: float = Field(0.22, ge=0, le=1)
    buy_after_cart: float = Field(0.55, ge=0, le=1)
    store_purchase_rate: float = Field(0.6, ge=0, le=1)
    browse_memory_decay: float = Field(0.7, gt=0, lt=1, description="daily decay of recent browsing")
    drift_start_rate: float = Field(1 / 700, ge=0, description="daily chance an engaged customer starts drifting")
    call_rate: float = Field(0.0015, ge=0)
    complaint_rate: float = Field(0.0004, ge=0)

    # churn and fatigue
    churn_base: float = Field(1 / 2500, ge=0, description="daily churn hazard of a content customer")
    churn_fatigue: float = Field(1.5, ge=0, description="hazard multiplier per unit of fatigue")
    churn_complaint: float = Field(3.0, ge=0)
    churn_drift: float = Field(4.0, ge=0)
    pressure_decay: float = Field(0.85, gt=0, lt=1, description="daily decay of contact pressure")
    fatigue_tolerance: float = Field(0.25, ge=0, description="pressure felt as no fatigue")
    optout_base: float = Field(0.0002, ge=0)
    optout_fatigue: float = Field(0.004, ge=0)

    # what a customer's own purchases are worth (used to value customers kept or lost, not by the world)
    organic_margin: float = Field(
        0.3, ge=0, le=1, description="share of the amount of a purchase no offer prompted that is margin"
    )

    # acceptance (logit scale)
    accept_base: float = -4.2
    accept_affinity: float = 0.55
    accept_browse: float = 0.6
    accept_fatigue: float = 0.45
    # Offer wear-out: acceptance logit lost per recent showing of the same offer to the customer,
    # the showings decaying by `offer_memory_decay` a day. Customers tire of offers that all look
    # alike: 0.1 by default since 2026-11-24; at 0 (the default before) rules against repeats can
    # only cost, and the thesis failed within the year on that ground alone (docs/evaluation.md).
    offer_wearout: float = Field(0.1, ge=0, description="acceptance logit lost per recent showing of the same offer")
    offer_memory_decay: float = Field(0.95, gt=0, lt=1, description="daily decay of the memory of offers shown")

    # consents at signup
    consent_email: float = Field(0.65, ge=0, le=1)
    consent_sms: float = Field(0.35, ge=0, le=1)
    consent_push: float = Field(0.45, ge=0, le=1)

    # default logging policy
    contact_intensity_median: float = Field(0.05, gt=0, description="outbound contacts per day, median customer")
    contact_intensity_spread: float = Field(1.1, ge=0, description="sd of log intensity across customers")
    contact_intensity_max: float = Field(1.5, gt=0)
    banner_rate: float = Field(0.5, ge=0, le=1, description="share of web/app sessions that show a banner")

    # incremental value (issue 21): off by default, so the worlds recorded before are unchanged
    cannibalisation: bool = Field(
        False,
        description="an offer accepted by a customer who buys its category that day anyway is not incremental",
    )
    organic_window_days: PositiveInt = Field(
        7, description="a customer 'buys anyway' when they buy the offer's category within this many days, today included"
    )
    accept_buying_anyway: float = Field(
        2.5, ge=0, description="acceptance logit added for a customer who buys the offer's category that day anyway"
    )
    anyway_value_share: float = Field(
        0.0, ge=0, le=1, description="share of the offer's value still incremental when the customer buys anyway"
    )
    incentives: tuple[Incentive, ...] = Field(
        (), description="incentive variants of every offer (none: each offer has only its plain version)"
    )

    # hour-of-day engagement (issue 22 item 5): off by default, so the worlds recorded before are unchanged
    send_hours: bool = Field(
        False, description="customers engage at their own hours of the day, and a message delivered at an hour "
        "they are not around is accepted less often (simulator/hours.py)",
    )
    hour_effect: float = Field(
        1.2, ge=0, description="acceptance logit lost by an sms or push delivered at an hour the customer is never "
        "around, against their best hour (an e-mail loses 0.6 x this)",
    )
    hour_floor: float = Field(0.1, gt=0, le=1, description="share of each customer's engagement spread evenly over the 24 hours")

    # the logging policy's holdouts (issue 21 item 2): off by default
    control_share: float = Field(
        0.0, ge=0, le=0.5, description="share of customers in the universal control group (by hashed id)"
    )
    control_channels: tuple[ContactChannel, ...] = Field(
        DEFAULT_OPT_IN_CHANNELS, description="channels the control group is never contacted on (opt-in channels)"
    )
    no_offer_rate: float = Field(0.0, ge=0, le=1, description="share of other decisions randomised to no offer")

    @model_validator(mode="after")
    def _control_on_consent_channels(self) -> SimConfig:
        free = [c for c in self.control_channels if c not in DEFAULT_OPT_IN_CHANNELS]
        if free:
            raise ValueError(f"control_channels: {free[0]!r} needs no consent; the control group holds out "
                             f"the opt-in channels only ({', '.join(DEFAULT_OPT_IN_CHANNELS)})")
        return self

    @property
    def holds_out(self) -> bool:
        """The logging policy logs decisions without contact (a control group or no-offer exploration)."""
        return self.control_share > 0 or self.no_offer_rate > 0

    @model_validator(mode="after")
    def _distinct_incentives(self) -> SimConfig:
        names = [i.name for i in self.incentives]
        if len(set(names)) != len(names):
            raise ValueError(f"incentive names must be distinct, got {names}")
        return self

    #: The knobs of `send_hours`, left out of `truth/config.json` when it is off (the file of a world
    #: without the option stays what it was).
    SEND_HOUR_KEYS: ClassVar[frozenset[str]] = frozenset({"send_hours", "hour_effect", "hour_floor"})

    @property
    def n_categories(self) -> int:
        return len(self.categories)

    @property
    def incremental(self) -> bool:
        """The world keeps the books of incremental value (cannibalisation or incentives are on)."""
        return self.cannibalisation or bool(self.incentives)

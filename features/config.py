"""Declared constants and typed inputs of the feature code: windows, thresholds, lifecycle rules
and the request context (the categories and channels are the core's, `nbo.vocab`).

Everything that decides a feature's value is fixed here (not learnt from data), so the features of
a subset of customers equal the corresponding rows of a full run.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import BaseModel, Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from nbo.errors import NboError
from nbo.vocab import ContactChannel

# The declared product categories are the core's: `nbo.vocab.CATEGORIES` (also `features.CATEGORIES`).
#: Days reported for "since when" features when the thing never happened before as_of.
NEVER_DAYS: float = 9999.0
#: Browsing event types with their feature stem; counted over 7 and 30 days.
BROWSE_TYPES: dict[str, str] = {
    "page_view": "page_views",
    "search": "searches",
    "product_view": "product_views",
    "add_to_cart": "cart_adds",
}
BROWSE_WINDOWS: tuple[int, ...] = (7, 30)
PURCHASE_WINDOWS: tuple[int, ...] = (30, 90, 365)
#: Half-lives (days) of the exponentially decayed browsing and contact counts: an event `a` days
#: old weighs 0.5 ** (a / half_life). Interest and contact pressure fade within days; fixed windows
#: (7/30 d) see a week-old visit as much as yesterday's.
DECAY_HALF_LIVES: tuple[int, ...] = (1, 3, 7)
#: Half-life (days) of the per-channel contact pressure.
PRESSURE_HALF_LIFE: int = 3
CONTACT_WINDOWS: tuple[int, ...] = (7, 30)
#: Carry-over of the brand loyalty of Guadagni and Little (1983): each new choice keeps this share
#: of the old loyalty (`features.choice_history.offer_loyalty`). They estimated 0.875 for coffee
#: purchases; later panel studies find 0.7-0.9. Fixed, not fitted, so a subset of customers gets
#: the rows of a full run.
LOYALTY_CARRYOVER: float = 0.8
#: R score: recency_days <= 30 -> 5, <= 90 -> 4, <= 180 -> 3, <= 365 -> 2, else (or never) 1.
RECENCY_THRESHOLDS: tuple[float, ...] = (30.0, 90.0, 180.0, 365.0)
#: F score: purchases_365d 0 -> 1, >= 1 -> 2, >= 3 -> 3, >= 6 -> 4, >= 12 -> 5.
FREQUENCY_THRESHOLDS: tuple[float, ...] = (1.0, 3.0, 6.0, 12.0)
#: M score: spend_365d 0 -> 1, > 0 -> 2, >= 200 -> 3, >= 500 -> 4, >= 1000 -> 5 (currency units).
MONETARY_THRESHOLDS: tuple[float, ...] = (200.0, 500.0, 1000.0)
DEVICES: tuple[str, ...] = ("desktop", "mobile", "tablet", "unknown")
Device = Literal["desktop", "mobile", "tablet", "unknown"]


class LifecycleRules(BaseModel, frozen=True):
    """Lifecycle stage rules; the first stage whose rule holds wins, in this order:

    1. lapsed:  tenure_days > lapsed_after_days and recency_days > lapsed_after_days
    2. at_risk: tenure_days > at_risk_after_days and recency_days > at_risk_after_days
    3. new:     tenure_days <= new_max_tenure_days or purchases_total <= 1
    4. loyal:   tenure_days >= loyal_min_tenure_days and purchases_365d >= loyal_min_purchases_365d
    5. diversified: categories_bought_365d >= diversified_min_categories
    6. rooted:  everyone else (a repeat buyer in one or two categories)

    A customer who never bought has recency_days = NEVER_DAYS, so is `new` until the at-risk
    window has passed since signup, then `at_risk`, then `lapsed`.
    """

    new_max_tenure_days: PositiveFloat = 30.0
    at_risk_after_days: PositiveFloat = 90.0
    lapsed_after_days: PositiveFloat = 180.0
    loyal_min_tenure_days: NonNegativeFloat = 365.0
    loyal_min_purchases_365d: PositiveInt = 12
    diversified_min_categories: PositiveInt = 3

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleRules:
        if self.lapsed_after_days <= self.at_risk_after_days:
            raise ValueError("lapsed_after_days must be greater than at_risk_after_days")
        return self


class Context(BaseModel, frozen=True):
    """What the caller knows at request time. Only `channel` is required.

    `hour_of_day` and `day_of_week` (Monday = 0) default to those of `as_of` when left empty.
    """

    channel: ContactChannel
    hour_of_day: int | None = Field(None, ge=0, le=23)
    day_of_week: int | None = Field(None, ge=0, le=6)
    page_category: str | None = Field(None, max_length=64)
    session_categories: list[str] = Field(default_factory=list, max_length=50)
    device: Device | None = None
    #: The attributes the customer faces now per candidate offer, {offer_id: {name: value}}
    #: (`features.offer_attributes`; checked at the edge by `check_offer_attributes`).
    offer_attributes: dict[str, dict[str, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _short_strings(self) -> Context:
        long = [c for c in self.session_categories if len(c) > 64]
        if long:
            raise ValueError(f"session_categories: {len(long)} value(s) longer than 64 characters")
        return self


def check_as_of(as_of: object) -> pd.Timestamp:
    """`as_of` as a tz-naive UTC Timestamp; a missing or tz-aware value is refused (no default)."""
    if as_of is None:
        raise NboError("as_of is required (a tz-naive UTC timestamp)")
    ts = pd.Timestamp(as_of)
    if ts is pd.NaT:
        raise NboError("as_of must be a timestamp, got NaT")
    if ts.tzinfo is not None:
        raise NboError(f"as_of must be tz-naive UTC, got {ts.isoformat()}; convert with tz_convert('UTC').tz_localize(None)")
    return ts
#: Declared BG/NBD parameters of the `p_alive_bgnbd` feature (features/purchase_cycle.py), as
#: (r, alpha in days, a, b): a weak prior, not fitted to any world, so the feature is a fixed
#: function of each customer's own purchases. r = 1, alpha = 30: purchase rates spread
#: exponentially around one a month; a = 1, b = 3: a dropout chance per repeat purchase spread
#: around 1/4. The tree learns the mapping from the column; the fitted model is training's
#: `bgnbd` churn baseline (`features.bgnbd.BetaGeoModel`).
BGNBD_PRIOR: tuple[float, float, float, float] = (1.0, 30.0, 1.0, 3.0)

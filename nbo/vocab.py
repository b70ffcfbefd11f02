"""The closed vocabularies of nbo, defined once.

Every table, feature, policy, simulated world and endpoint refers to these tuples, so adding a
channel, an outcome or a product category is a one-line change here and validation everywhere
follows. Nothing else in nbo spells these lists out (the simulator's integer codes are positions
in them).
"""

from __future__ import annotations

from typing import Literal, get_args

EventChannel = Literal["web", "app", "store", "call_center"]
EventType = Literal[
    "page_view",
    "search",
    "product_view",
    "add_to_cart",
    "purchase",
    "store_visit",
    "complaint",
    "call",
]
ContactChannel = Literal["web", "app", "email", "sms", "push", "mail"]
OfferKind = Literal["acquisition", "cross_sell", "upsell", "retention", "loyalty"]
Outcome = Literal["accepted", "declined", "ignored", "clicked", "pending"]
AgeBand = Literal["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
Lifecycle = Literal["new", "rooted", "diversified", "loyal", "at_risk", "lapsed"]
#: Why a decision made no contact (the `no_offers` table): the customer is in the universal
#: control group; a randomised "no offer" draw (exploration); the policy had nothing to make
#: (nothing eligible, allowed or worth its cost).
NoOfferReason = Literal["control", "explore", "policy"]

EVENT_CHANNELS: tuple[str, ...] = get_args(EventChannel)
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
CONTACT_CHANNELS: tuple[str, ...] = get_args(ContactChannel)
OFFER_KINDS: tuple[str, ...] = get_args(OfferKind)
OUTCOMES: tuple[str, ...] = get_args(Outcome)
AGE_BANDS: tuple[str, ...] = get_args(AgeBand)
LIFECYCLE_STAGES: tuple[str, ...] = get_args(Lifecycle)
NO_OFFER_REASONS: tuple[str, ...] = get_args(NoOfferReason)

#: The declared product categories, in their declared order (per-category feature columns, the
#: simulated catalogue and `top_category_code` follow it; ties go to the category declared first).
#: Events whose category is empty or not in this list feed no per-category feature but count in
#: every total.
CATEGORIES: tuple[str, ...] = ("travel", "books", "electronics", "fashion", "home", "beauty", "sports", "grocery")

#: Channels on which nbo reaches out to the customer (as opposed to showing a banner while the
#: customer is on our site or app). Cross-channel fatigue caps count these.
OUTBOUND_CHANNELS: tuple[str, ...] = ("email", "sms", "push", "mail")
#: Channels that need an explicit opt-in by default (GDPR-style); the policy file can change it.
DEFAULT_OPT_IN_CHANNELS: tuple[str, ...] = ("email", "sms", "push")
#: Outcomes that close an exposure; `pending` is an exposure still waiting for an answer.
FINAL_OUTCOMES: tuple[str, ...] = ("accepted", "declined", "ignored", "clicked")
#: Channels of our digital properties: an event there is an online visit, a contact there is a
#: banner shown while the customer is on the site or app (not an outbound message).
ONLINE_CHANNELS: tuple[str, ...] = ("web", "app")

"""Cap kinds: every rule that limits contacts by the customer's contact history, defined once.

A cap kind reads one *measure* of the customer's history in the window of its last `days` days
(`(now - days x 24 h, now]`, later timestamps included) and refuses when that measure plus what
the contact being decided would add to it exceeds `max`:

    measure + MEASURE_ADDS[measure] > max   ->   refused with the kind's `reason`

The measures are what the stores count; each store implements each measure once
(`serving.contact_store.base.measure` in Python, `_RESERVE` in the Redis Lua script):

    contacts            contacts (answers with >= 1 offer) on any of the limit's `channels`   adds 1
    shows               shows of the offer, on any channel                                    adds 1
    offer_declines      1 if the offer's last decline is in the window, else 0                adds 0
    category_declines   1 if the last decline in the offer's category is in the window        adds 0

So a decline cooldown is a cap of 0 declines: after a decline at `d` the offer is refused while
`now - d < days`. A kind's `level` says what a refusal refuses: the whole contact (`contact`,
checked once per decision) or one offer (`offer`, checked per offer, the same on every channel).
Kinds are checked in the order of `CAP_KINDS`, contact level first; the first refusal names the
reason.

Adding a cap kind over these measures is one entry in `CAP_KINDS` plus its setting in
`serving.policy.ContactPolicy`: the SQLite and in-memory stores (through
`serving.contact_store.base`), the Redis Lua script (its configuration is `lua_config`),
`ContactPolicy.longest_window_days` and the rule-set variants (`without_family`) follow.
`tests/serving/test_caps.py` holds the Python and the Lua verdicts equal on random histories.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from nbo.vocab import CONTACT_CHANNELS

if TYPE_CHECKING:
    from serving.policy import ContactPolicy

Level = Literal["contact", "offer"]
Measure = Literal["contacts", "shows", "offer_declines", "category_declines"]
#: Families of kinds, for rule-set variants: `fatigue` limits how often a customer is contacted,
#: `repeat` how often one offer (or category) comes back.
Family = Literal["fatigue", "repeat"]

#: What the contact being decided adds to each measure: one contact and one show; no decline.
MEASURE_ADDS: dict[str, int] = {"contacts": 1, "shows": 1, "offer_declines": 0, "category_declines": 0}
#: "No limit" in the rule-set variants (a cap the simulation can never reach).
UNLIMITED = 10**9


@dataclass(frozen=True, slots=True)
class Limit:
    """One cap kind as it applies to one decision: at most `max` in the last `days` days."""

    reason: str
    measure: str
    max: int
    days: int
    channels: tuple[str, ...] = ()  # the channels counted ("contacts" only)
    #: The largest measure that still allows the contact (`max` less what the contact adds to the
    #: measure, `MEASURE_ADDS`): refused when the measure exceeds it.
    allowed: int = field(init=False)

    def __post_init__(self) -> None:
        if self.measure not in MEASURE_ADDS:
            raise ValueError(f"unknown measure {self.measure!r}; known: {sorted(MEASURE_ADDS)}")
        object.__setattr__(self, "allowed", self.max - MEASURE_ADDS[self.measure])

    @property
    def adds(self) -> int:
        """What the contact being decided adds to the measure."""
        return MEASURE_ADDS[self.measure]


#: A kind's settings in a policy for a decision on `channel`: (max, days, channels counted), or
#: None when the kind does not apply there.
Settings = Callable[["ContactPolicy", str], "tuple[int, int, tuple[str, ...]] | None"]


@dataclass(frozen=True)
class CapKind:
    """One kind of cap: its reason code, what it refuses, what it counts, and where its settings are."""

    reason: str
    level: Level
    measure: Measure
    family: Family
    settings: Settings
    #: The same policy with this kind switched off (it never refuses).
    disable: Callable[[ContactPolicy], ContactPolicy]
    doc: str

    def limit(self, policy: ContactPolicy, channel: str) -> Limit | None:
        s = self.settings(policy, channel)
        return None if s is None else Limit(self.reason, self.measure, s[0], s[1], s[2])


def _channel(p: ContactPolicy, ch: str) -> tuple[int, int, tuple[str, ...]] | None:
    cap = p.caps.get(ch)  # type: ignore[call-overload]
    return None if cap is None else (cap.max, cap.days, (ch,))


def _outbound(p: ContactPolicy, ch: str) -> tuple[int, int, tuple[str, ...]] | None:
    o = p.outbound
    return (o.max, o.days, tuple(o.channels)) if ch in o.channels else None


def _set(p: ContactPolicy, field: str, **update: object) -> ContactPolicy:
    return p.model_copy(update={field: getattr(p, field).model_copy(update=update)})


CAP_KINDS: tuple[CapKind, ...] = (
    CapKind("cap_channel", "contact", "contacts", "fatigue", _channel,
            lambda p: p.model_copy(update={"caps": {}}),
            "at most `caps.<channel>.max` contacts on the channel in `days` days"),
    CapKind("cap_outbound", "contact", "contacts", "fatigue", _outbound,
            lambda p: _set(p, "outbound", max=UNLIMITED, days=1),
            "at most `outbound.max` contacts on the outbound channels together in `days` days"),
    CapKind("cap_offer", "offer", "shows", "repeat",
            lambda p, ch: (p.offer_cap.max, p.offer_cap.days, ()),
            lambda p: _set(p, "offer_cap", max=UNLIMITED, days=1),
            "at most `offer_cap.max` shows of one offer in `days` days, any channel"),
    CapKind("cooldown_offer", "offer", "offer_declines", "repeat",
            lambda p, ch: (0, p.cooldown.offer_days, ()),
            lambda p: _set(p, "cooldown", offer_days=0),
            "no offer declined in the last `cooldown.offer_days` days"),
    CapKind("cooldown_category", "offer", "category_declines", "repeat",
            lambda p, ch: (0, p.cooldown.category_days, ()),
            lambda p: _set(p, "cooldown", category_days=0),
            "no offer of a category with a decline in the last `cooldown.category_days` days"),
)
#: Reason codes of the kinds that refuse a whole contact / one offer, in checking order.
CONTACT_REASONS: tuple[str, ...] = tuple(k.reason for k in CAP_KINDS if k.level == "contact")
OFFER_REASONS: tuple[str, ...] = tuple(k.reason for k in CAP_KINDS if k.level == "offer")


@dataclass(frozen=True)
class Limits:
    """The caps of one policy for a decision on one channel, in checking order."""

    contact: tuple[Limit, ...]
    offer: tuple[Limit, ...]


_CACHE: dict[tuple[int, str], tuple[object, Limits]] = {}
_CACHE_SIZE = 1024
_LOCK = threading.Lock()


def limits(policy: ContactPolicy, channel: str) -> Limits:
    """The caps `policy` sets for a decision on `channel` (cached: policies are frozen)."""
    hit = _CACHE.get((id(policy), channel))
    if hit is not None and hit[0] is policy:  # the entry keeps the policy alive: its id is not reused
        return hit[1]
    found = Limits(
        tuple(lim for k in CAP_KINDS if k.level == "contact" and (lim := k.limit(policy, channel)) is not None),
        tuple(lim for k in CAP_KINDS if k.level == "offer" and (lim := k.limit(policy, channel)) is not None),
    )
    with _LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[(id(policy), channel)] = (policy, found)
    return found


def offer_limits(policy: ContactPolicy) -> tuple[Limit, ...]:
    """The offer-level caps of `policy` (the same on every channel)."""
    return limits(policy, "").offer


def longest_window_days(policy: ContactPolicy) -> int:
    """The longest window any cap kind of `policy` looks back on any channel (days)."""
    return max(lim.days for ch in CONTACT_CHANNELS for lims in [limits(policy, ch)] for lim in (*lims.contact, *lims.offer))


def without_family(policy: ContactPolicy, family: Family) -> ContactPolicy:
    """`policy` with every cap kind of `family` switched off (the rest unchanged)."""
    for kind in CAP_KINDS:
        if kind.family == family:
            policy = kind.disable(policy)
    return policy


def lua_config(policy: ContactPolicy, channel: str) -> dict[str, object]:
    """The caps of a decision on `channel` as the Redis reservation script reads them."""
    lims = limits(policy, channel)

    def enc(lim: Limit) -> dict[str, object]:
        return {"r": lim.reason, "m": lim.measure, "max": lim.max, "days": lim.days, "add": lim.adds,
                "ch": list(lim.channels)}

    return {"contact": [enc(lim) for lim in lims.contact], "offer": [enc(lim) for lim in lims.offer]}

"""The contact policy: caps, cooldowns, quiet hours, consent and arbitration levers.

One typed, frozen object loaded once at the edge (service start, CLI) from `policy.toml` and passed
down. Every window is a whole number of days and is read as "the last `days` x 24 hours before the
decision", i.e. a contact at `ts` counts at `now` when `ts > now - days`. Quiet hours are read in
the customer's local time when their time zone is known (`customers.timezone`), else in the
policy's `quiet_hours.timezone` (UTC by default; see docs/policy.md).
"""

from __future__ import annotations

import re
import tomllib
from datetime import datetime, timedelta
from datetime import timezone as _utc_tz
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from nbo.control import DEFAULT_SALT
from nbo.errors import ConfigError
from serving.caps import longest_window_days
from nbo.vocab import CATEGORIES, DEFAULT_OPT_IN_CHANNELS, OUTBOUND_CHANNELS, ContactChannel, EventType, OfferKind

DEFAULT_POLICY_PATH = Path("policy.toml")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Cap(_Frozen):
    """At most `max` contacts in any window of `days` days."""

    max: NonNegativeInt
    days: PositiveInt


class OutboundCap(Cap):
    """A cap across several channels (by default the outbound ones: email, sms, push, mail)."""

    channels: tuple[ContactChannel, ...] = OUTBOUND_CHANNELS


class Cooldown(_Frozen):
    """After a decline: no same offer for `offer_days`, no offer of its category for `category_days`."""

    offer_days: NonNegativeInt = 30
    category_days: NonNegativeInt = 7


def _minutes(text: str) -> int:
    """Minutes after midnight of `HH:MM` (or `H:MM`)."""
    match = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", text)
    if match is None:
        raise ValueError(f"expected HH:MM, got {text!r}")
    h, m = int(match[1]), int(match[2])
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise ValueError(f"expected HH:MM between 00:00 and 23:59, got {text!r}")
    return h * 60 + m


def minutes_of(text: str) -> int:
    """Minutes after midnight of a valid `HH:MM` (ValueError otherwise)."""
    return _minutes(text)


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (e.g. `Europe/Paris`); ValueError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as 'Europe/Paris')") from None


class QuietHours(_Frozen):
    """No contact on `channels` from `start` (inclusive) to `end` (exclusive), local time; may
    wrap midnight. Local time is the customer's time zone when known, else `timezone`."""

    channels: tuple[ContactChannel, ...] = ("sms", "push")
    start: str = "21:00"
    end: str = "08:00"
    #: The time zone of customers whose own is not known (an IANA name; UTC by default).
    timezone: str = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        _minutes(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)
        return value

    def in_window(self, local: datetime) -> bool:
        """True if the local wall-clock time of `local` is inside the window (any channel)."""
        start, end, t = _minutes(self.start), _minutes(self.end), local.hour * 60 + local.minute
        if start <= end:  # start == end: never quiet
            return start <= t < end
        return t >= start or t < end

    def is_quiet(self, channel: str, now: datetime, tz: str | None = None) -> bool:
        """True if `channel` may not be used at `now` (naive UTC) for a customer in time zone `tz`
        (None: `timezone`)."""
        if channel not in self.channels:
            return False
        name = tz or self.timezone
        if name != "UTC":
            now = now.replace(tzinfo=_utc_tz.utc).astimezone(zone(name))
        return self.in_window(now)

    def next_open(self, channel: str, now: datetime, tz: str | None = None) -> datetime:
        """The earliest moment at or after `now` (naive UTC) when `channel` may be used for a
        customer in time zone `tz` (None: `timezone`): `now` itself outside quiet hours, else the
        next local `end` of the quiet hours, as naive UTC."""
        if not self.is_quiet(channel, now, tz):
            return now
        name = tz or self.timezone
        end = _minutes(self.end)
        local = now if name == "UTC" else now.replace(tzinfo=_utc_tz.utc).astimezone(zone(name)).replace(tzinfo=None)
        opens = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
        if opens <= local:
            opens += timedelta(days=1)
        if name == "UTC":
            return opens
        return opens.replace(tzinfo=zone(name)).astimezone(_utc_tz.utc).replace(tzinfo=None)


class Exploration(_Frozen):
    """With probability `rate` per slot, choose from an exploration distribution instead of the best.

    `epsilon_greedy` explores uniformly; `softmax` explores with weights exp(expected_value / temperature).
    """

    rate: float = Field(0.05, ge=0.0, le=1.0)
    method: Literal["epsilon_greedy", "softmax"] = "epsilon_greedy"
    temperature: PositiveFloat = 1.0
    #: Share of the decisions that would make an offer randomised to "no offer" instead (logged
    #: with its propensity), so the log holds what doing nothing earns next to every offer.
    no_offer_rate: float = Field(0.0, ge=0.0, le=1.0)


class Arbitration(_Frozen):
    """Levers of the arbiter (see serving.ranking).

    `objective`: what an offer is worth. `response` (the default): p_accept x value x lever - cost,
    every acceptance credited. `uplift`: the expected *incremental* value against no contact,
    tau x base value x lever - p_accept x incentive cost - cost - `fatigue_cost` of the channel
    (tau: the uplift model's incremental conversion); among the incentive variants of one offer the
    cheapest that pays is kept, a costlier one only when it adds more than `incentive_hurdle`.
    """

    kind_weights: dict[OfferKind, NonNegativeFloat] = {}
    offer_weights: dict[str, NonNegativeFloat] = {}
    min_expected_value: float = 0.0
    max_per_category: PositiveInt = 1
    exploration: Exploration = Exploration()
    objective: Literal["response", "uplift"] = "response"
    #: Currency units: the expected incremental value a costlier incentive variant must add over
    #: the cheapest paying variant of the same offer to replace it (uplift objective).
    incentive_hurdle: NonNegativeFloat = 0.0
    #: Currency units charged per contact on a channel for the customer's fatigue (uplift objective).
    fatigue_cost: dict[ContactChannel, NonNegativeFloat] = {}

    def weight(self, offer_id: str, kind: str) -> float:
        """The lever of one offer: kind weight x offer weight (each 1.0 unless set)."""
        return self.kind_weights.get(kind, 1.0) * self.offer_weights.get(offer_id, 1.0)  # type: ignore[call-overload]


class ControlGroup(_Frozen):
    """The universal control group: `share` of customers (a random sample, by hashed id with
    `salt`, `nbo.control`) never contacted on `channels` by any outbound programme, so every
    programme's lift is measured against doing nothing. Only channels that need consent can hold
    one (the control group is refused like a withdrawn consent)."""

    share: float = Field(0.0, ge=0.0, le=0.5)
    channels: tuple[ContactChannel, ...] = DEFAULT_OPT_IN_CHANNELS
    salt: str = Field(DEFAULT_SALT, min_length=1, max_length=64)

    def holds(self, channel: str) -> bool:
        """True if the group is held out of `channel` (a share above 0 and the channel listed)."""
        return self.share > 0.0 and channel in self.channels


class Consent(_Frozen):
    """Channels that need an explicit opt-in (no consent row means no contact)."""

    opt_in_channels: tuple[ContactChannel, ...] = DEFAULT_OPT_IN_CHANNELS


# ------------------------------------------------------------------------------ programmes
def _known_categories(values: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [c for c in values if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown category {unknown[0]!r} (one of {', '.join(CATEGORIES)})")
    return values


class EventTrigger(_Frozen):
    """Fires on an event of `type` (of one of `categories`; empty: any category) posted while nbo
    runs (`POST /events`, `nbo ingest`)."""

    kind: Literal["event"]
    type: EventType
    categories: tuple[str, ...] = ()

    _categories = field_validator("categories")(classmethod(lambda cls, v: _known_categories(v)))


#: Lifecycle transitions a programme can wait for: the first purchase, or entering a stage
#: (`nbo.vocab.LIFECYCLE_STAGES`, `features.lifecycle`) the customer was not in before.
LifecycleTarget = Literal["first_purchase", "rooted", "diversified", "loyal", "at_risk", "lapsed"]


class LifecycleTrigger(_Frozen):
    """Fires when the customer makes a first purchase (`to = "first_purchase"`) or enters the
    lifecycle stage `to`: on an event that moves them (`POST /events`, `nbo ingest`), or by the
    passing of time (drift to at-risk, lapsed), seen by the sweep (`nbo programmes run`)."""

    kind: Literal["lifecycle"]
    to: LifecycleTarget


class BrowseTrigger(_Frozen):
    """Fires `hours` after the customer's last browse (page or product view, search, add to cart)
    of a category (one of `categories`; empty: any) without a purchase in that category since;
    seen by the sweep (`nbo programmes run`)."""

    kind: Literal["browse_without_purchase"]
    hours: PositiveFloat
    categories: tuple[str, ...] = ()

    _categories = field_validator("categories")(classmethod(lambda cls, v: _known_categories(v)))


Trigger = Annotated[EventTrigger | LifecycleTrigger | BrowseTrigger, Field(discriminator="kind")]


class Programme(_Frozen):
    """An event-triggered outbound programme (`[[programmes]]`): when `trigger` fires for a customer,
    the decision pipeline is asked for an offer on `channels` (in this order of preference: the
    first channel on which it makes one is used) under every cap, consent, quiet hours and the
    control group; an offer goes to the outbox (serving/programmes.py)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    trigger: Trigger
    channels: tuple[ContactChannel, ...] = Field(min_length=1)
    enabled: bool = True

    @field_validator("channels")
    @classmethod
    def _outbound(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        inbound = [c for c in value if c not in OUTBOUND_CHANNELS]
        if inbound:
            raise ValueError(f"{inbound[0]!r} is not an outbound channel (one of {', '.join(OUTBOUND_CHANNELS)})")
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value


class ProgrammeSettings(_Frozen):
    """`[programme_settings]`: how programmes behave together.

    `complaint_pause_hours`: after a complaint event, no programme contacts the customer for this
    many hours. `sweep_lookback_hours`: how far back the sweep (`nbo programmes run`) looks for a
    lifecycle drift or a browse whose wait ended (run it at least this often; a trigger already
    fired is never fired again, so overlapping sweeps are harmless).
    """

    complaint_pause_hours: NonNegativeFloat = 72.0
    sweep_lookback_hours: PositiveFloat = 24.0


def _default_caps() -> dict[str, Cap]:
    return {
        "email": Cap(max=2, days=7),
        "sms": Cap(max=1, days=14),
        "push": Cap(max=3, days=7),
        "mail": Cap(max=1, days=30),
        "web": Cap(max=10, days=1),
        "app": Cap(max=10, days=1),
    }


class ContactPolicy(_Frozen):
    """The whole contact policy. Channels absent from `caps` have no per-channel cap."""

    caps: dict[ContactChannel, Cap] = Field(default_factory=_default_caps)
    outbound: OutboundCap = OutboundCap(max=4, days=7)
    offer_cap: Cap = Cap(max=3, days=30)
    cooldown: Cooldown = Cooldown()
    quiet_hours: QuietHours = QuietHours()
    consent: Consent = Consent()
    arbitration: Arbitration = Arbitration()
    control_group: ControlGroup = ControlGroup()
    #: Event-triggered programmes (`[[programmes]]`); none by default: nothing is sent unasked.
    programmes: tuple[Programme, ...] = ()
    programme_settings: ProgrammeSettings = ProgrammeSettings()

    @model_validator(mode="after")
    def _unique_programmes(self) -> ContactPolicy:
        names = [p.name for p in self.programmes]
        twice = [n for n in names if names.count(n) > 1]
        if twice:
            raise ValueError(f"programmes: the name {twice[0]!r} is used twice (a programme's name keys its outbox rows)")
        return self

    @model_validator(mode="after")
    def _control_on_consent_channels(self) -> ContactPolicy:
        free = [c for c in self.control_group.channels if c not in self.consent.opt_in_channels]
        # Without a share there is no group to put anywhere (and a policy written back, e.g. by the
        # console, spells out the default channels whatever its opt-in channels).
        if free and self.control_group.share > 0.0:
            raise ValueError(
                f"control_group.channels: {free[0]!r} needs no consent (not in consent.opt_in_channels); "
                "the control group holds out opt-in channels only"
            )
        return self

    @property
    def holds_out(self) -> bool:
        """Decisions may be held out (a control group or randomised no-offer): every decision
        without contact is then logged with its propensity."""
        return self.control_group.share > 0.0 or self.arbitration.exploration.no_offer_rate > 0.0

    @property
    def longest_window_days(self) -> int:
        """The longest look-back any cap kind needs (days); stores must keep at least this much history.

        Derived from the cap kinds (`serving.caps.CAP_KINDS`), so a new kind is counted here too."""
        return longest_window_days(self)


def active_programmes(policy: ContactPolicy) -> tuple[Programme, ...]:
    """The policy's enabled programmes (none by default)."""
    return tuple(p for p in policy.programmes if p.enabled)


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "[key]")
        if not loc and err["type"] == "value_error":  # a rule across sections names its keys itself
            parts.append(str(err["msg"]).removeprefix("Value error, "))
            continue
        parts.append(f"key '{loc or '<root>'}': {err['msg']}")
    return "; ".join(parts)


def parse_policy(text: str, source: str = "<policy>") -> ContactPolicy:
    """Parse and validate a policy from TOML text; `source` names it in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # the message carries "(at line L, column C)"
        raise ConfigError(f"{source}: TOML syntax error: {exc}") from None
    try:
        return ContactPolicy.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_errors(exc)}") from None


def load_policy(path: Path | str = DEFAULT_POLICY_PATH) -> ContactPolicy:
    """Load `policy.toml` (or another file) into a validated `ContactPolicy`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read policy file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: policy file is not UTF-8 text") from None
    return parse_policy(text, str(path))

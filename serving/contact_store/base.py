"""The contact store interface and the cap logic shared by every backend.

A *contact* is one answer with at least one offer on one channel (one e-mail, one banner slot...),
whatever the number of offers in it: channel and outbound caps count contacts. A *show* is one
offer in one contact: the per-offer cap counts shows. A contact counts from the moment it is
reserved; feedback never removes it (a reservation never confirmed is still a contact).
A show's outcome only moves up `OUTCOME_ORDER` (`accepted` is final). Declines are kept apart
from outcomes: every show's first decline sets the cooldowns and no later feedback lifts them.

All times are UTC. `now` may be a tz-aware datetime (converted to UTC) or a naive one (taken as
UTC), or a pandas Timestamp; stores keep epoch seconds.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from nbo.errors import ConfigError
from serving.caps import Limit, limits, offer_limits
from serving.policy import ContactPolicy

DAY = 86_400.0
#: Outcomes a caller may report (`pending` is the state of a fresh reservation).
FEEDBACK_OUTCOMES: frozenset[str] = frozenset({"accepted", "declined", "ignored", "clicked"})
#: The order of outcomes (docs/policy.md §5): a show's stored outcome only moves up this order, so
#: `accepted` is final and the stored outcome is the highest one reported, whatever the order in
#: which the reports arrive (retries, late webhooks). A report that does not move it changes nothing.
OUTCOME_ORDER: tuple[str, ...] = ("pending", "ignored", "clicked", "declined", "accepted")
OUTCOME_RANK: dict[str, int] = {o: i for i, o in enumerate(OUTCOME_ORDER)}


def supersedes(outcome: str, current: str) -> bool:
    """True if a report of `outcome` replaces the stored `current` outcome of a show."""
    return OUTCOME_RANK[outcome] > OUTCOME_RANK[current]


def to_epoch(ts: datetime) -> float:
    """Seconds since 1970-01-01 UTC; naive datetimes are UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def from_epoch(seconds: float) -> datetime:
    """A naive UTC datetime (the convention of nbo's tables)."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class OfferRef:
    """An offer to reserve: its id and its category (for category cooldowns)."""

    offer_id: str
    category: str


@dataclass(frozen=True)
class ReserveResult:
    """What the store recorded: `reserved` offers (in the order given) and the refused ones."""

    decision_id: str
    reserved: tuple[OfferRef, ...]
    refused: tuple[tuple[str, str], ...]  # (offer_id, reason code)

    @property
    def ok(self) -> bool:
        return bool(self.reserved)


@dataclass(frozen=True)
class ReserveRequest:
    """One decision's offers to reserve (an argument of `ContactStore.check_and_reserve_many`)."""

    customer_id: str
    channel: str
    offers: tuple[OfferRef, ...]
    decision_id: str
    propensities: Mapping[str, float]
    model_versions: Mapping[str, str] | None = None
    #: For a decision that makes no contact: why and with what probability (`check_and_reserve`'s `no_offer`).
    no_offer: tuple[str, float] | None = None


@dataclass(frozen=True)
class ContactRecord:
    """One show as recorded by the store (epoch seconds)."""

    decision_id: str
    offer_id: str
    category: str
    channel: str
    ts: float


@dataclass(frozen=True)
class ContactHistory:
    """A customer's recent contacts (within the store's horizon) and their last declines."""

    customer_id: str
    now: float
    contacts: tuple[ContactRecord, ...] = ()
    last_decline_offer: Mapping[str, float] = field(default_factory=dict)
    last_decline_category: Mapping[str, float] = field(default_factory=dict)

    def channel_count(self, channels: Iterable[str], days: float) -> int:
        """Distinct contacts on any of `channels` in the last `days` days."""
        if not self.contacts:  # most customers of a campaign: nothing to count
            return 0
        since = self.now - days * DAY
        chans = set(channels)
        return len({c.decision_id for c in self.contacts if c.channel in chans and c.ts > since})

    def offer_shows(self, offer_id: str, days: float) -> int:
        """Shows of `offer_id` (any channel) in the last `days` days."""
        since = self.now - days * DAY
        return sum(1 for c in self.contacts if c.offer_id == offer_id and c.ts > since)

    def offer_show_counts(self, days: float) -> dict[str, int]:
        """Shows per offer in the last `days` days (offers never shown are absent)."""
        if not self.contacts:
            return {}
        since = self.now - days * DAY
        counts: dict[str, int] = {}
        for c in self.contacts:
            if c.ts > since:
                counts[c.offer_id] = counts.get(c.offer_id, 0) + 1
        return counts


@dataclass(frozen=True)
class ImportedShow:
    """One show of the data's `contacts` table, as a contact store imports it (`import_history`)."""

    decision_id: str
    offer_id: str
    customer_id: str
    category: str
    channel: str
    ts: float
    propensity: float
    outcome: str
    outcome_ts: float | None
    declined_ts: float | None  # when it was declined (outcome_ts, or ts without one), None if not


def epoch_seconds(column: pd.Series) -> np.ndarray:
    """Seconds since the epoch of a timestamp column, whatever its unit (pandas 3 builds microseconds
    from Python datetimes) or zone (an offset is converted to UTC; naive stamps are UTC already)."""
    ts = pd.to_datetime(column)
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert(None)
    return ts.to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9


def imported_shows(contacts: object, categories: Mapping[str, str], since: float) -> list[ImportedShow]:
    """The shows of a `contacts` table (nbo.contract.CONTACTS, a DataFrame) after `since` (epoch s).

    `categories`: offer id -> category (the catalogue), for category cooldowns; an offer the
    catalogue does not know gets the category "" (it counts for channel, outbound and per-offer caps).
    """
    frame = contacts if isinstance(contacts, pd.DataFrame) else pd.DataFrame(contacts)
    if frame.empty:
        return []
    ts = epoch_seconds(frame["ts"])
    keep = ts > since
    frame = frame.loc[keep]
    ts = ts[keep]
    # Column-wise, not row by row through pandas scalars: ~50,000 shows of the demo world took
    # ~1 s of CPU at every `nbo serve` start (the import runs at each start and is idempotent).
    if "outcome_ts" in frame:
        missing = pd.isna(frame["outcome_ts"]).to_numpy()
        ots_s = np.where(missing, 0.0, epoch_seconds(frame["outcome_ts"]))
        outcome_ts: list[float | None] = [None if m else t for m, t in zip(missing.tolist(), ots_s.tolist(), strict=True)]
    else:
        outcome_ts = [None] * len(frame)
    out: list[ImportedShow] = []
    for d, o, c, ch, p, outcome, o_ts, t in zip(
        frame["decision_id"].tolist(), frame["offer_id"].tolist(), frame["customer_id"].tolist(),
        frame["channel"].tolist(), frame["propensity"].tolist(), frame["outcome"].tolist(), outcome_ts, ts.tolist(),
        strict=True,
    ):
        outcome = str(outcome) if outcome in OUTCOME_RANK else "pending"
        o = str(o)
        out.append(ImportedShow(str(d), o, str(c), categories.get(o, ""), str(ch), float(t),
                                float(p), outcome, o_ts,
                                (o_ts if o_ts is not None else float(t)) if outcome == "declined" else None))
    return out


@dataclass(frozen=True)
class ConsentChange:
    """A consent grant or withdrawal recorded at runtime (`POST /consents`), epoch seconds."""

    channel: str
    ts: float
    granted: bool


@dataclass(frozen=True)
class LiveEvent:
    """One event of the customer's life posted while nbo runs (`POST /events`, `nbo ingest`):
    a row of the data contract's `events` table plus its `event_id` (ts in epoch seconds).
    The same (customer_id, event_id) is one event: posting it again changes nothing."""

    event_id: str
    customer_id: str
    ts: float
    type: str
    channel: str | None = None
    category: str | None = None
    product_id: str | None = None
    amount: float | None = None

    def content(self) -> tuple[object, ...]:
        """What must match for a repeated event id to be the same event."""
        return (self.ts, self.type, self.channel, self.category, self.product_id, self.amount)


class EventConflict(ValueError):
    """An event id already recorded (or repeated in one call) with other content: nothing written."""

    def __init__(self, event: LiveEvent) -> None:
        super().__init__("event_id already recorded for this customer with other content")
        self.event = event


def unique_events(events: Iterable[LiveEvent]) -> list[LiveEvent]:
    """`events` with repeats of one (customer_id, event_id) dropped, first kept; `EventConflict` if
    a repeat has other content."""
    seen: dict[tuple[str, str], LiveEvent] = {}
    for e in events:
        first = seen.setdefault((e.customer_id, e.event_id), e)
        if first is not e and first.content() != e.content():
            raise EventConflict(e)
    return list(seen.values())


def event_records(events: Iterable[LiveEvent]) -> list[dict[str, object]]:
    """Live events as `export` lists them (oldest first; naive UTC times)."""
    return [{"event_id": e.event_id, "ts": from_epoch(e.ts), "type": e.type, "channel": e.channel,
             "category": e.category, "product_id": e.product_id, "amount": e.amount}
            for e in sorted(events, key=lambda e: (e.ts, e.event_id))]


@dataclass(frozen=True)
class CustomerState:
    """What one decision reads about one customer: the contact rows (the features' live history,
    as `ContactStore.contact_rows`) and the contact history the caps are checked on (as
    `ContactStore.history` at `now`). `ContactStore.read_customer` reads both at once."""

    rows: list[dict[str, object]]
    history: ContactHistory
    #: The customer was erased (`ContactStore.forget`): decide as for an unknown customer, whatever
    #: the caller still holds in memory (a materialised row, the data directory's contacts).
    forgotten: bool = False
    #: Consent changes recorded at runtime (`ContactStore.record_consent`), in no particular order:
    #: the decision merges them with the data's consents table (`ConsentBook.state`).
    consents: tuple[ConsentChange, ...] = ()
    #: Events posted while nbo runs (`ContactStore.append_events`), in no particular order: the
    #: decision recomputes the customer's features with them (`serving.live.LiveFeatures`).
    events: tuple[LiveEvent, ...] = ()


#: States of an outbox row (serving/programmes.py): `deciding` while its trigger is being decided
#: (claimed, so no other worker fires it again), `pending` a send waiting for the reader, `sent`
#: and `failed` what the reader acknowledged, `none` a trigger that made no send (`reason` says why),
#: `cancelled` a pending send withdrawn before it went out (a complaint: `reason` says so).
OUTBOX_STATUSES: tuple[str, ...] = ("deciding", "pending", "sent", "failed", "none", "cancelled")
#: Rows that are settled for good: kept `outbox_retention_days` after their last change, then
#: pruned (`ContactStore.outbox_prune`). A pending or deciding row is kept until it settles.
OUTBOX_SETTLED: tuple[str, ...] = ("sent", "failed", "none", "cancelled")
#: What a reader may acknowledge a pending row as (`ContactStore.outbox_ack`).
OUTBOX_ACKS: tuple[str, ...] = ("sent", "failed")


@dataclass(frozen=True)
class OutboxEntry:
    """One trigger of a programme for one customer, and what came of it (epoch seconds).

    `trigger_key` names the occurrence (programme, customer and what fired it): a key is fired once.
    `scheduled`: when the send should go out (outside quiet hours); `decision_id`: the decision
    that reserved the contact (feedback on the send goes to `POST /feedback` with it)."""

    outbox_id: int
    trigger_key: str
    programme: str
    customer_id: str
    fired: float
    status: str
    updated: float
    scheduled: float | None = None
    channel: str | None = None
    offer_id: str | None = None
    decision_id: str | None = None
    reason: str | None = None

    def record(self) -> dict[str, object]:
        """The row as `GET /outbox` lists it (ISO times, UTC)."""
        def iso(t: float | None) -> str | None:
            return None if t is None else from_epoch(t).isoformat() + "Z"

        return {"outbox_id": self.outbox_id, "programme": self.programme, "customer_id": self.customer_id,
                "channel": self.channel, "offer_id": self.offer_id, "decision_id": self.decision_id,
                "status": self.status, "reason": self.reason, "fired": iso(self.fired),
                "scheduled": iso(self.scheduled), "updated": iso(self.updated)}


def outbox_records(rows: Iterable[OutboxEntry]) -> list[dict[str, object]]:
    """The customer's outbox rows as `export` lists them (id order; naive UTC times)."""
    def at(t: float | None) -> datetime | None:
        return None if t is None else from_epoch(t)

    return [{"outbox_id": r.outbox_id, "programme": r.programme, "channel": r.channel, "offer_id": r.offer_id,
             "decision_id": r.decision_id, "status": r.status, "reason": r.reason, "fired": at(r.fired),
             "scheduled": at(r.scheduled), "updated": at(r.updated)} for r in sorted(rows, key=lambda r: r.outbox_id)]


def consent_records(changes: Iterable[ConsentChange]) -> list[dict[str, object]]:
    """Runtime consent changes as `export` lists them (oldest first; naive UTC times)."""
    return [{"channel": c.channel, "ts": from_epoch(c.ts), "granted": c.granted}
            for c in sorted(changes, key=lambda c: (c.ts, c.channel, c.granted))]


def forgotten_key(customer_id: str) -> str:
    """What a store records of an erased customer: the SHA-256 of the id (never the id itself, so
    the store's files do not hold it after `forget`), to tell every worker the id is forgotten."""
    return hashlib.sha256(customer_id.encode("utf-8", "surrogatepass")).hexdigest()


def _contacts(history: ContactHistory, limit: Limit, offer: OfferRef | None, shows: Mapping[str, int] | None) -> int:
    return history.channel_count(limit.channels, limit.days)


def _shows(history: ContactHistory, limit: Limit, offer: OfferRef, shows: Mapping[str, int] | None) -> int:
    return shows.get(offer.offer_id, 0) if shows is not None else history.offer_shows(offer.offer_id, limit.days)


def _offer_declines(history: ContactHistory, limit: Limit, offer: OfferRef, shows: Mapping[str, int] | None) -> int:
    declined = history.last_decline_offer.get(offer.offer_id)
    return int(declined is not None and history.now - declined < limit.days * DAY)


def _category_declines(history: ContactHistory, limit: Limit, offer: OfferRef, shows: Mapping[str, int] | None) -> int:
    declined = history.last_decline_category.get(offer.category)
    return int(declined is not None and history.now - declined < limit.days * DAY)


#: The measures of `serving.caps`, in Python (the Redis store has its own in its Lua script).
MEASURES: dict[str, Callable[..., int]] = {
    "contacts": _contacts, "shows": _shows, "offer_declines": _offer_declines, "category_declines": _category_declines,
}


def measure(history: ContactHistory, limit: Limit, offer: OfferRef | None = None,
            shows: Mapping[str, int] | None = None) -> int:
    """`limit`'s measure of `history` in its window (see `serving.caps`); `offer` for offer-level
    measures. `shows`: shows per offer over `limit.days`, computed once for many offers."""
    return MEASURES[limit.measure](history, limit, offer, shows)


_Plan = tuple[tuple[Callable[..., int], Limit, int, str], ...]
#: The offer-level plan of the last policy seen: (policy, plan). `offer_refusal` runs per offer
#: and customer on the decision path, for one policy at a time.
_last_offer_plan: tuple[object, _Plan] = (None, ())


def _plan(lims: tuple[Limit, ...]) -> _Plan:
    return tuple((MEASURES[lim.measure], lim, lim.allowed, lim.reason) for lim in lims)


def _offer_plan(policy: ContactPolicy) -> _Plan:
    global _last_offer_plan
    last = _last_offer_plan
    if last[0] is policy:
        return last[1]
    plan = _plan(offer_limits(policy))
    _last_offer_plan = (policy, plan)
    return plan


def decision_refusal(history: ContactHistory, channel: str, policy: ContactPolicy) -> str | None:
    """The reason code if a contact-level cap (per channel, outbound) forbids any contact now, else None."""
    for lim in limits(policy, channel).contact:
        if MEASURES[lim.measure](history, lim, None, None) > lim.allowed:
            return lim.reason
    return None


def touches(history: ContactHistory, offer: OfferRef, shows: Mapping[str, int]) -> bool:
    """Whether `history` holds anything an offer-level cap of `offer` counts: a show in `shows`
    (`history.offer_show_counts` over the per-offer window), a decline of the offer or of its category.

    Every offer-level measure (`MEASURES`) of an offer the history does not touch is its measure on
    an empty history, so its `offer_refusal` is the empty history's: the arbiter checks only the
    offers a customer's history touches (tests/serving/test_caps.py holds every cap kind to this).
    """
    return offer.offer_id in shows or offer.offer_id in history.last_decline_offer \
        or offer.category in history.last_decline_category


def offer_refusal(
    history: ContactHistory, offer: OfferRef, policy: ContactPolicy, shows: Mapping[str, int] | None = None
) -> str | None:
    """The reason code if an offer-level cap (per offer, decline cooldowns) forbids this offer now.

    `shows` may carry `history.offer_show_counts(policy.offer_cap.days)` computed once for many
    offers (the one cap kind that counts shows is the per-offer cap).
    """
    for fn, lim, allowed, reason in _offer_plan(policy):
        if fn(history, lim, offer, shows) > allowed:
            return reason
    return None


def split_offers(
    history: ContactHistory, channel: str, offers: Iterable[OfferRef], policy: ContactPolicy
) -> tuple[list[OfferRef], list[tuple[str, str]]]:
    """Which offers may be reserved now (duplicates dropped) and which are refused, with reasons."""
    unique: list[OfferRef] = []
    seen: set[str] = set()
    for o in offers:
        if o.offer_id not in seen:
            seen.add(o.offer_id)
            unique.append(o)
    reason = decision_refusal(history, channel, policy)
    if reason is not None:
        return [], [(o.offer_id, reason) for o in unique]
    ok, refused = [], []
    shows = history.offer_show_counts(policy.offer_cap.days)
    for o in unique:
        r = offer_refusal(history, o, policy, shows)
        if r is None:
            ok.append(o)
        else:
            refused.append((o.offer_id, r))
    return ok, refused


def check_outcome(outcome: str) -> None:
    if outcome not in FEEDBACK_OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(FEEDBACK_OUTCOMES)}, got {outcome!r}")


def check_propensities(offers: Iterable[OfferRef], propensities: Mapping[str, float]) -> None:
    for o in offers:
        p = propensities.get(o.offer_id)
        if p is None or not (0.0 < p <= 1.0) or math.isnan(p):
            raise ValueError(f"offer {o.offer_id!r}: propensity must be in (0, 1], got {p!r}")


class ContactStore(ABC):
    """Where contacts, declines and the decision log live; the single source of truth for caps."""

    #: Days of history `history` returns and the store must keep for cap checks.
    horizon_days: int

    def expect_bulk_writes(self) -> None:
        """Many large transactions follow from this thread (batch reservation): tune for throughput.
        A hint; stores without anything to tune ignore it."""

    def window_days(self, policy: ContactPolicy) -> int:
        """`policy.longest_window_days`, derived once for the last policy object seen (every store
        call reads it; a policy is frozen, and a changed one is another object)."""
        last = getattr(self, "_window", None)
        if last is None or last[0] is not policy:
            last = self._window = (policy, policy.longest_window_days)
        return last[1]

    def check_policy(self, policy: ContactPolicy) -> None:
        """Refuse a policy whose longest window reaches past the history this store keeps."""
        days = self.window_days(policy)
        if days > self.horizon_days:
            raise ConfigError(f"policy needs {days} days of history; store keeps {self.horizon_days}")

    @abstractmethod
    def check_and_reserve(
        self,
        customer_id: str,
        channel: str,
        offers: list[OfferRef],
        now: datetime,
        policy: ContactPolicy,
        decision_id: str,
        propensities: Mapping[str, float],
        model_versions: Mapping[str, str] | None = None,
        no_offer: tuple[str, float] | None = None,
    ) -> ReserveResult:
        """Atomically re-check caps and cooldowns, record the allowed offers and log the decision.

        Concurrent calls for one customer are serialised, so no cap is ever exceeded. The decision
        is logged even when nothing is reserved (an empty answer). A `decision_id` seen before is
        an error (ValueError): decisions are never overwritten. `no_offer`: for a decision that
        makes no contact, its reason (`control`, `explore`, `policy`: the contract's `no_offers`)
        and the probability with which the policy made none (`serving.holdout.no_offer_reason`,
        the decision's `slate_propensity`),
        logged with the decision (`no_offer`, `no_offer_propensity` of its `export` row).
        """

    def check_and_reserve_many(
        self, requests: list[ReserveRequest], now: datetime, policy: ContactPolicy
    ) -> list[ReserveResult | None]:
        """`check_and_reserve` for many decisions, in order; None for a decision id seen before.

        Each request is checked and recorded as `check_and_reserve` would, after the requests
        before it (a customer's second request sees the first one's contacts). Backends override
        it to pay one transaction (SQLite) or one round trip (Redis) per call instead of per request.
        """
        out: list[ReserveResult | None] = []
        for r in requests:
            try:
                out.append(self.check_and_reserve(r.customer_id, r.channel, list(r.offers), now, policy, r.decision_id,
                                                  r.propensities, r.model_versions, r.no_offer))
            except ValueError as exc:
                if "already recorded" not in str(exc):
                    raise
                out.append(None)
        return out

    def import_history(self, contacts: object, categories: Mapping[str, str], now: datetime) -> int:
        """Seed the store with the data's contact history (issue 19 item 1); idempotent.

        `contacts`: the data directory's `contacts` table (a company's past e-mails, banners...);
        only shows after `now - horizon_days` are read (older ones cannot count for any cap the
        store allows). Each show counts for the caps and, if declined, for the cooldowns from its
        outcome time, as if nbo had recorded it. A show already imported (same decision_id,
        offer_id) is skipped, so importing the same table again, or a longer one, counts each show
        once. Imported shows are not returned by `contact_rows` / `read_customer` rows (the
        features read them from the data's table already) and carry no decision log entry; `forget`
        erases them with the customer. Returns the number of shows newly imported.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot import a contact history")

    @abstractmethod
    def history(self, customer_id: str, now: datetime) -> ContactHistory:
        """Contacts in the last `horizon_days` before `now` and the last decline per offer/category."""

    def histories(self, customer_ids: list[str], now: datetime) -> dict[str, ContactHistory]:
        """`history` of many customers; customers without any recent contact or decline may be left out."""
        return {c: self.history(c, now) for c in customer_ids}

    @abstractmethod
    def record_outcome(self, decision_id: str, offer_id: str, outcome: str, ts: datetime) -> bool:
        """Record feedback; idempotent. False if the decision (or that offer in it) is unknown."""

    @abstractmethod
    def forget(self, customer_id: str) -> int:
        """Erase everything about the customer (GDPR); returns the number of shows erased.

        Also records the customer as forgotten (`forgotten_key`, not the id), which `read_customer`
        reports, so that every process holding an in-memory copy of the customer drops it."""

    def forgotten(self, customer_id: str) -> bool:
        """True once `forget(customer_id)` ran (stores without the record: False)."""
        return False

    def record_consent(self, customer_id: str, channel: str, granted: bool, ts: datetime) -> bool:
        """Record a consent grant or withdrawal observed at runtime (`POST /consents`), durably,
        for every process sharing the store; never expires (unlike contacts) until `forget`.
        Idempotent: the same (channel, ts, granted) again changes nothing (False)."""
        raise NotImplementedError(f"{type(self).__name__} cannot record consents")

    def consent_changes(self, customer_ids: list[str]) -> dict[str, tuple[ConsentChange, ...]]:
        """The runtime consent changes of these customers (customers without any left out)."""
        return {}

    def append_events(self, events: list[LiveEvent]) -> int:
        """Append events to the event log, all or nothing; returns how many were new. An event whose
        (customer_id, event_id) is recorded already with the same content is skipped (idempotent);
        with other content: `EventConflict`, and nothing of the call is written."""
        raise NotImplementedError(f"{type(self).__name__} cannot record events")

    def live_events(self, customer_ids: list[str]) -> dict[str, tuple[LiveEvent, ...]]:
        """The events posted for these customers (customers without any left out)."""
        return {}

    def compact_events(self, until: float) -> int:
        """Delete the posted events with `ts <= until` (epoch seconds), every customer's; returns
        how many. `serving.live.compact` passes the data directory's horizon: events up to it are
        read from the data's events table, so the log's copies change no feature."""
        return 0

    # ---------------------------------------------------------------- the outbox (programmes)
    def outbox_claim(self, trigger_key: str, programme: str, customer_id: str, fired: datetime) -> int | None:
        """Claim a programme's trigger occurrence: a new outbox row in state `deciding` and its id,
        or None when `trigger_key` was claimed before (by any worker or process): fired once."""
        raise NotImplementedError(f"{type(self).__name__} has no outbox")

    def outbox_settle(self, outbox_id: int, status: str, now: datetime, *, scheduled: datetime | None = None,
                      channel: str | None = None, offer_id: str | None = None, decision_id: str | None = None,
                      reason: str | None = None) -> None:
        """What the claimed trigger came to: `pending` (a send) or `none` (with its `reason`)."""
        raise NotImplementedError(f"{type(self).__name__} has no outbox")

    def outbox_page(self, status: str | None, since: datetime | None, after: int, limit: int) -> list[OutboxEntry]:
        """Up to `limit` rows with an id above `after`, in id order; only `status` (None: any) and
        fired at or after `since` (None: any time)."""
        raise NotImplementedError(f"{type(self).__name__} has no outbox")

    def outbox_ack(self, outbox_ids: list[int], status: str, now: datetime) -> dict[int, str]:
        """Mark pending rows `sent` or `failed` (`OUTBOX_ACKS`); returns each id's status afterwards
        (unknown ids left out). A row no longer pending keeps its status: acknowledging twice is harmless."""
        raise NotImplementedError(f"{type(self).__name__} has no outbox")

    def outbox_cancel(self, customer_id: str, before: datetime, now: datetime, reason: str) -> list[int]:
        """Cancel the customer's pending rows scheduled before `before` (status `cancelled`, with
        `reason`); returns their ids. Rows no longer pending are left as they are."""
        raise NotImplementedError(f"{type(self).__name__} has no outbox")

    def outbox_prune(self, now: datetime, retention_days: float) -> int:
        """Delete the settled rows (`OUTBOX_SETTLED`) last changed more than `retention_days` before
        `now`; returns how many. A pruned row's trigger key is free again: keep the retention
        longer than the sweep's lookback (`ProgrammeSettings` checks it)."""
        raise NotImplementedError(f"{type(self).__name__} has no outbox")

    def lease(self, name: str, owner: str, seconds: float) -> bool:
        """Hold the lease `name` for `seconds` of wall time: True when free, expired or already
        `owner`'s (renewed), False while another owner holds it. One worker of all the processes
        and replicas sharing the store does a periodic job (the programmes' sweep in `nbo serve`)."""
        raise NotImplementedError(f"{type(self).__name__} has no leases")

    def release(self, name: str, owner: str) -> None:
        """Give the lease up if `owner` holds it (another owner's is left alone)."""
        raise NotImplementedError(f"{type(self).__name__} has no leases")

    def outbox_rows(self, customer_id: str) -> list[OutboxEntry]:
        """The customer's outbox rows (any status), in id order: what `export` lists."""
        return []

    @abstractmethod
    def export(self, customer_id: str) -> dict[str, list[dict[str, object]]]:
        """Everything stored about the customer: `decisions` and `contacts` (with outcomes), and
        `consents`, `events` and `outbox` (the runtime consent changes, posted events and the
        programmes' outbox rows, `outbox_records`) where the store keeps them."""

    def contact_rows(self, customer_id: str) -> list[dict[str, object]]:
        """`export(customer_id)["contacts"]`; stores override it to skip reading the decision log."""
        return self.export(customer_id)["contacts"]

    def read_customer(self, customer_id: str, now: datetime) -> CustomerState:
        """`contact_rows(customer_id)` and `history(customer_id, now)` in one read.

        Why: a decision needs both, and each store read has a fixed cost (SQLite: a transaction,
        which starts with a reset page cache after another process wrote; Redis: a round trip).
        Stores override it to read both in one transaction or round trip; the answer is the same.
        The caps are still re-checked atomically by `check_and_reserve`: this read is a pre-filter.
        """
        return CustomerState(self.contact_rows(customer_id), self.history(customer_id, now),
                             self.forgotten(customer_id), self.consent_changes([customer_id]).get(customer_id, ()),
                             self.live_events([customer_id]).get(customer_id, ()))

    def read_customers(self, customer_ids: list[str], now: datetime) -> list[CustomerState]:
        """`read_customer` of several distinct customers, in order: the service's micro-batch
        (`DecisionEngine.decide_many`). Stores override it to read them all in one transaction
        (SQLite) or one pipeline (Redis) instead of one per customer; the answer is the same."""
        return [self.read_customer(c, now) for c in customer_ids]

    def contact_rows_many(self, customer_ids: list[str]) -> dict[str, list[dict[str, object]]]:
        """`contact_rows` of many customers; customers without rows may be left out."""
        return {c: rows for c in customer_ids if (rows := self.contact_rows(c))}

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""

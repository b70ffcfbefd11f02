"""Programmes (issue 22 item 4): triggers declared in policy.toml (`[[programmes]]`) that ask the
decision pipeline for an outbound send, and the outbox a campaign tool reads.

A trigger occurrence is named by a key (programme, customer, and what fired it: an event id, a
lifecycle stage and the last purchase it follows, a category and the browse it follows); the
contact store claims each key once (`ContactStore.outbox_claim`), whichever worker, replica or
sweep sees it first, so a repeated event, an overlapping sweep or a retry fires nothing twice.

Two callers, one path (`fire`):

- `on_events`: after `POST /events` stored a batch (`DecisionEngine.ingest_events`): event
  triggers on the batch's events, lifecycle triggers on the stage each purchase moved the
  customer to (first purchase, rooted...);
- `sweep`: `nbo programmes run --as-of T` (a cron): everything the time passing fires, as of T:
  drift to at-risk or lapsed, browse without purchase for N hours, and the event and lifecycle
  triggers of events posted in the last `sweep_lookback_hours` (events recorded by `nbo ingest`,
  or a batch whose programmes failed after it was stored).

`fire` claims the key, then, unless a complaint of the customer lies within
`complaint_pause_hours`, asks `DecisionEngine.decide` (the one pipeline: consent, caps, quiet
hours, the control group, exploration) for one offer on each of the programme's channels in order,
at the send time `send_time` chooses (outside quiet hours), reserving it like any contact; the
first channel with an offer gives a `pending` outbox row, none gives a `none` row with the reasons.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features import build_customer_features
from nbo.data import Dataset, empty_table
from serving.contact_store.base import LiveEvent, OutboxEntry, epoch_seconds, from_epoch, to_epoch
from serving.live import events_frame
from serving.policy import BrowseTrigger, ContactPolicy, EventTrigger, LifecycleTrigger, Programme, active_programmes

if TYPE_CHECKING:
    from serving.engine import DecisionEngine

log = logging.getLogger(__name__)

#: Event types that count as browsing a category (`browse_without_purchase`).
BROWSE_TYPES: tuple[str, ...] = ("page_view", "product_view", "search", "add_to_cart")
#: Why a trigger made no send (besides the decision's own suppression reasons).
PAUSED = "complaint_pause"


@dataclass(frozen=True)
class Occurrence:
    """One trigger of one programme for one customer, named by `key` (fired once)."""

    programme: Programme
    customer_id: str
    key: str


# ------------------------------------------------------------------------------ the send time
def send_time(engine: DecisionEngine, customer_id: str, channel: str, now: datetime) -> datetime:
    """When a programme's send to `customer_id` on `channel`, triggered at `now`, goes out (naive UTC).

    The one place the time is chosen, by `[programme_settings] send_hour`: `best` (the default)
    the customer's most engaged local hour within 24 h of `now` (`DecisionEngine.send_times`: their
    engagement hours in the data, shrunk toward the population's, in their time zone; `now` itself
    when its hour wins), `now` the trigger's moment. Either way never inside quiet hours, read in
    the customer's time zone (`customers.timezone`, else `quiet_hours.timezone`): `now` the end of
    the quiet window when `now` falls in it (`QuietHours.next_open`).
    """
    quiet = engine.policy.quiet_hours
    if engine.policy.programme_settings.send_hour == "best":
        chooser = engine.send_times()
        if chooser is not None:
            return chooser.send_at(customer_id, now, quiet, channel)
    return quiet.next_open(channel, now, engine.timezones.get(customer_id))


# ------------------------------------------------------------------------------ firing
def fire(engine: DecisionEngine, occurrences: Iterable[Occurrence], now: datetime,
         paused_until: Mapping[str, datetime]) -> list[OutboxEntry]:
    """Claim each occurrence's key and decide its send (module docstring); returns the outbox rows
    written by this call (occurrences claimed before are skipped). `paused_until`: customer ->
    end of the pause after their last complaint."""
    store = engine.store
    written = []
    for occ in occurrences:
        outbox_id = store.outbox_claim(occ.key, occ.programme.name, occ.customer_id, now)
        if outbox_id is None:
            continue
        fields: dict[str, object]
        pause = paused_until.get(occ.customer_id)
        if pause is not None and now < pause:
            fields = {"status": "none", "reason": PAUSED}
        else:
            fields = _decide(engine, occ, outbox_id, now)
        store.outbox_settle(outbox_id, now=now, **fields)  # type: ignore[arg-type]
        written.append(outbox_id)
    return [e for e in _entries(engine, written)]


def _decide(engine: DecisionEngine, occ: Occurrence, outbox_id: int, now: datetime) -> dict[str, object]:
    """The first channel of the programme on which the pipeline makes an offer (reserved)."""
    refusals = []
    for channel in occ.programme.channels:
        at = send_time(engine, occ.customer_id, channel, now)
        decision = engine.decide(occ.customer_id, channel, None, at, k=1, reserve=True,
                                 decision_id=f"prog-{outbox_id}-{channel}")
        if decision.offers:
            return {"status": "pending", "scheduled": at, "channel": channel, "offer_id": decision.offers[0].offer_id,
                    "decision_id": decision.decision_id}
        refusals.append(f"{channel}: {why_none(decision.suppressed)}")
    return {"status": "none", "reason": "; ".join(refusals)}


#: Reasons that stop every offer of a decision, in the order `why_none` names them.
_WHOLE_DECISION = ("control_group", "explore_no_offer", "consent", "quiet_hours", "cap_outbound", "cap_channel")


def why_none(suppressed: Sequence[object]) -> str:
    """Why a decision made no offer, in one reason code: a reason that stops the whole decision
    (the control group, consent, a contact cap...) if any, else the commonest of its suppressions."""
    reasons = Counter(getattr(s, "reason") for s in suppressed)
    for reason in _WHOLE_DECISION:
        if reason in reasons:
            return reason
    return reasons.most_common(1)[0][0] if reasons else "no_offer"


def _entries(engine: DecisionEngine, ids: Sequence[int]) -> list[OutboxEntry]:
    if not ids:
        return []
    wanted = set(ids)
    rows = engine.store.outbox_page(None, None, min(ids) - 1, max(ids) - min(ids) + 1)
    return [e for e in rows if e.outbox_id in wanted]


# ------------------------------------------------------------------------------ what fires
def _matches(categories: tuple[str, ...], category: object) -> bool:
    return isinstance(category, str) and bool(category) and (not categories or category in categories)


def event_occurrences(programmes: Sequence[Programme], events: Iterable[LiveEvent]) -> list[Occurrence]:
    """Event triggers: one occurrence per (programme, event) whose type and category match."""
    out = []
    for e in events:
        for p in programmes:
            t = p.trigger
            if isinstance(t, EventTrigger) and e.type == t.type and (not t.categories or _matches(t.categories, e.category)):
                out.append(Occurrence(p, e.customer_id, f"{p.name}:{e.customer_id}:event:{e.event_id}"))
    return out


def _stages(features: pd.DataFrame) -> tuple[dict[str, str], dict[str, float]]:
    """Lifecycle stage and purchases_total per customer of a customer-feature frame."""
    return (dict(zip(features.index.astype(str), features["lifecycle"].astype(str), strict=True)),
            dict(zip(features.index.astype(str), features["purchases_total"].astype(float), strict=True)))


def lifecycle_occurrences(programmes: Sequence[Programme], before: pd.DataFrame, after: pd.DataFrame,
                          last_purchase: Mapping[str, float]) -> list[Occurrence]:
    """Lifecycle triggers: customers of `after` (customer features) whose stage is a programme's
    `to` and was not in `before` (absent: not a customer yet), or who bought for the first time.
    The key names the stage and the last purchase it follows (`last_purchase`, epoch s): a
    customer drifting to at-risk again after buying again fires again; the same drift, seen by
    the event path and the sweep, once."""
    wanted = [p for p in programmes if isinstance(p.trigger, LifecycleTrigger)]
    if not wanted:
        return []
    stage_before, bought_before = _stages(before)
    stage_after, bought_after = _stages(after)
    out = []
    for cid, stage in stage_after.items():
        for p in wanted:
            to = p.trigger.to  # type: ignore[union-attr]
            if to == "first_purchase":
                if bought_after[cid] >= 1 and bought_before.get(cid, 0.0) < 1:
                    out.append(Occurrence(p, cid, f"{p.name}:{cid}:first_purchase"))
            elif stage == to and stage_before.get(cid) != to:
                anchor = last_purchase.get(cid)
                out.append(Occurrence(p, cid, f"{p.name}:{cid}:{to}:{'never' if anchor is None else repr(anchor)}"))
    return out


def browse_occurrences(programmes: Sequence[Programme], events: pd.DataFrame, as_of: datetime,
                       lookback: timedelta) -> list[Occurrence]:
    """Browse-without-purchase triggers: per customer and category, the last browse (`BROWSE_TYPES`)
    at `b` with no purchase of that category after it, where `b + hours` lies in
    (as_of - lookback, as_of]. `events`: the events table's rows (data and live) before `as_of`."""
    wanted = [p for p in programmes if isinstance(p.trigger, BrowseTrigger)]
    if not wanted or events.empty:
        return []
    frame = events.loc[events["category"].notna() & (events["category"].astype(str) != "")]
    frame = frame.assign(t=epoch_seconds(frame["ts"]))
    last = lambda kinds: (frame.loc[frame["type"].isin(kinds)]  # noqa: E731
                          .groupby(["customer_id", "category"], observed=True)["t"].max())
    browsed = last(BROWSE_TYPES)
    bought = last(("purchase",)).reindex(browsed.index)
    open_ = browsed[~(bought >= browsed)]  # NaN (never bought there) or bought before the browse
    end, start = to_epoch(as_of), to_epoch(as_of - lookback)
    out = []
    for p in wanted:
        t: BrowseTrigger = p.trigger  # type: ignore[assignment]
        due = open_ + t.hours * 3600.0
        hit = open_[(due <= end) & (due > start)]
        for (cid, category), b in hit.items():
            if _matches(t.categories, category):
                out.append(Occurrence(p, str(cid), f"{p.name}:{cid}:browse:{category}:{b!r}"))
    return out


def paused_until(events: pd.DataFrame, policy: ContactPolicy) -> dict[str, datetime]:
    """Customer -> end of the programmes' pause after their last complaint (`complaint_pause_hours`)."""
    hours = policy.programme_settings.complaint_pause_hours
    complaints = events.loc[events["type"] == "complaint"]
    if complaints.empty or hours <= 0:
        return {}
    last = complaints.groupby("customer_id", observed=True)["ts"].max()
    return {str(c): pd.Timestamp(t).to_pydatetime() + timedelta(hours=hours) for c, t in last.items()}


def last_purchases(events: pd.DataFrame) -> dict[str, float]:
    """Customer -> time (epoch s) of their last purchase among `events`."""
    buys = events.loc[events["type"] == "purchase"]
    if buys.empty:
        return {}
    last = buys.groupby("customer_id", observed=True)["ts"].max()
    return {str(c): to_epoch(pd.Timestamp(t).to_pydatetime()) for c, t in last.items()}


def cancel_after_complaints(engine: DecisionEngine, events: Iterable[LiveEvent], now: datetime) -> list[int]:
    """A complaint withdraws the customer's sends already in the outbox: their pending rows
    scheduled before the end of the pause (`complaint_pause_hours` after the complaint) become
    `cancelled` (reason `complaint_pause`). Returns the ids cancelled (a repeat cancels nothing)."""
    hours = engine.policy.programme_settings.complaint_pause_hours
    last: dict[str, float] = {}
    for e in events:
        if e.type == "complaint":
            last[e.customer_id] = max(e.ts, last.get(e.customer_id, e.ts))
    if hours <= 0 or not last:
        return []
    out: list[int] = []
    for cid, t in sorted(last.items()):
        out += engine.store.outbox_cancel(cid, from_epoch(t) + timedelta(hours=hours), now, PAUSED)
    if out:
        log.info("programmes: %d pending send(s) cancelled after a complaint", len(out))
    return out


def _before(events: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    return events.loc[events["ts"] < pd.Timestamp(as_of)]


# ------------------------------------------------------------------------------ the two callers
def on_events(engine: DecisionEngine, events: Sequence[LiveEvent], now: datetime) -> list[OutboxEntry]:
    """The programmes a stored batch of events fires (`DecisionEngine.ingest_events`): event
    triggers on its events of the last `sweep_lookback_hours`, lifecycle triggers of the customers
    who bought in it. Returns the outbox rows written."""
    programmes = active_programmes(engine.policy)
    if not programmes or engine.live is None:
        return []
    lookback = timedelta(hours=engine.policy.programme_settings.sweep_lookback_hours)
    recent = [e for e in events if from_epoch(e.ts) > now - lookback]
    cancel_after_complaints(engine, recent, now)
    occurrences = event_occurrences(programmes, recent)
    customers = sorted({e.customer_id for e in recent})
    live = engine.store.live_events(customers)
    frames: dict[str, pd.DataFrame] = {}
    for cid in customers:
        frames[cid] = _customer_events(engine, cid, live.get(cid, ()))
    lifecycle = [p for p in programmes if isinstance(p.trigger, LifecycleTrigger)]
    buyers = sorted({e.customer_id for e in recent if e.type == "purchase"})
    if lifecycle and buyers:
        batch = {(e.customer_id, e.event_id) for e in events}
        # As of just after the batch's latest purchase (a clock a little behind the event's is tolerated).
        as_of = max(now, max(from_epoch(e.ts) for e in recent if e.type == "purchase") + timedelta(seconds=1))
        for cid in buyers:
            older = tuple(e for e in live.get(cid, ()) if (cid, e.event_id) not in batch)
            before = _customer_features(engine, cid, older, as_of)
            after = _decision_row(engine, cid, as_of)
            occurrences += lifecycle_occurrences(lifecycle, before, after,
                                                 last_purchases(_before(frames[cid], as_of)))
    if not occurrences:
        return []
    pauses: dict[str, datetime] = {}
    for cid, frame in frames.items():
        pauses.update(paused_until(_before(frame, now + timedelta(seconds=engine.live_limits.max_skew_s)), engine.policy))
    return fire(engine, occurrences, now, pauses)


def _customer_events(engine: DecisionEngine, customer_id: str, live: Sequence[LiveEvent]) -> pd.DataFrame:
    assert engine.live is not None
    return engine.live.dataset(customer_id, live, (), empty_table("contacts")).events


def _decision_row(engine: DecisionEngine, customer_id: str, as_of: datetime) -> pd.DataFrame:
    """The customer's stage after the batch: the live row the decision at `as_of` uses
    (`DecisionEngine.customer_view`, which caches it), so a send decided at that moment reuses it
    instead of computing the customer's features a second time."""
    source, row = engine.customer_view(customer_id, as_of)
    if row is None:
        return pd.DataFrame({"lifecycle": pd.Series(dtype=str), "purchases_total": pd.Series(dtype=float)})
    return pd.DataFrame({"lifecycle": [str(row["lifecycle"])], "purchases_total": [float(row["purchases_total"])]},
                        index=pd.Index([customer_id], name="customer_id"))


def _customer_features(engine: DecisionEngine, customer_id: str, live: Sequence[LiveEvent], as_of: datetime) -> pd.DataFrame:
    assert engine.live is not None
    data = engine.live.dataset(customer_id, live, (), empty_table("contacts"))
    return build_customer_features(data, pd.Timestamp(as_of))


@dataclass(frozen=True)
class Stages:
    """Every customer's lifecycle stage and purchases as of `as_of` (what a sweep computed): the
    next sweep of the same process starts from them instead of computing the stages again."""

    as_of: datetime
    features: pd.DataFrame  # `lifecycle`, `purchases_total`, indexed by customer_id


def sweep(engine: DecisionEngine, data: Dataset, as_of: datetime) -> list[OutboxEntry]:
    """The time-driven programmes as of `as_of` (`nbo programmes run`), over every customer of
    `data` (a data directory's tables) with the events posted while nbo runs: lifecycle drift,
    browse without purchase, and the event and lifecycle triggers of the last
    `sweep_lookback_hours` of posted events (module docstring). Returns the outbox rows written."""
    return sweep_from(engine, data, as_of, None)[0]


def sweep_from(engine: DecisionEngine, data: Dataset, as_of: datetime,
               previous: Stages | None) -> tuple[list[OutboxEntry], Stages | None]:
    """`sweep`, and the stages it computed. Lifecycle transitions are those between the stages
    before (as of `as_of - sweep_lookback_hours`, or `previous` when a sweep of this process
    computed them within that window) and as of `as_of`: with `previous`, each customer's
    features are computed once per sweep instead of twice."""
    programmes = active_programmes(engine.policy)
    if not programmes:
        return [], None
    lookback = timedelta(hours=engine.policy.programme_settings.sweep_lookback_hours)
    customers = data.customers["customer_id"].astype(str).tolist()
    live = [e for evs in engine.store.live_events(customers).values() for e in evs]
    horizon = data.events["ts"].max() if len(data.events) else None
    fresh = [e for e in live if horizon is None or pd.isna(horizon) or from_epoch(e.ts) > horizon]
    events = data.events
    if fresh:
        fresh.sort(key=lambda e: (e.ts, e.event_id))
        events = pd.concat([events, events_frame(fresh, data.events)], ignore_index=True)
    full = Dataset(customers=data.customers, consents=data.consents, events=events, offers=data.offers,
                   contacts=data.contacts)
    seen = _before(events, as_of)
    recent = [e for e in live if as_of - lookback < from_epoch(e.ts) <= as_of]
    cancel_after_complaints(engine, recent, as_of)
    engine.store.outbox_prune(as_of, engine.policy.programme_settings.outbox_retention_days)
    occurrences = event_occurrences(programmes, recent)
    stages = None
    if any(isinstance(p.trigger, LifecycleTrigger) for p in programmes):
        if previous is not None and as_of - lookback <= previous.as_of < as_of:
            before = previous.features
        else:
            before = build_customer_features(full, pd.Timestamp(as_of - lookback))
        after = build_customer_features(full, pd.Timestamp(as_of))
        stages = Stages(as_of, after[["lifecycle", "purchases_total"]])
        occurrences += lifecycle_occurrences(programmes, before, after, last_purchases(seen))
    occurrences += browse_occurrences(programmes, seen, as_of, lookback)
    occurrences.sort(key=lambda o: (o.customer_id, o.key))
    if not occurrences:
        return [], stages
    return fire(engine, occurrences, as_of, paused_until(seen, engine.policy)), stages


def periodic_sweep(engine: DecisionEngine) -> Callable[[datetime], list[OutboxEntry]]:
    """`sweep` of `engine` over its data directory (`settings.data_dir`, read on the first call
    and kept): what the in-service sweeper runs every `sweep_every_minutes` (serving/sweeper.py).
    Each run starts from the stages the previous one computed (`sweep_from`)."""
    from nbo.data import load_dataset

    assert engine.settings is not None, "the in-service sweep needs an engine built from settings"
    data_dir = engine.settings.data_dir
    held: list[Dataset] = []
    last: list[Stages | None] = [None]

    def run(now: datetime) -> list[OutboxEntry]:
        if not held:
            held.append(load_dataset(data_dir))
        rows, last[0] = sweep_from(engine, held[0], now, last[0])
        return rows

    return run


def outbox_summary(rows: Sequence[OutboxEntry]) -> dict[str, object]:
    """Counts of outbox rows by status and programme (what `nbo programmes run` prints)."""
    return {"fired": len(rows), "by_status": dict(Counter(r.status for r in rows)),
            "by_programme": dict(Counter(r.programme for r in rows)),
            "pending": int(np.sum([r.status == "pending" for r in rows])) if rows else 0}

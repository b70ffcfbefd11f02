"""One customer's timeline: events, lifecycle stage over time, consents, contacts and outcomes, and
the fatigue budget left per channel.

Everything here is read, never written: the data directory's rows of the customer, the contact
store's view of their history (`ContactDesk.read_customer`, the read `/recommend` makes), and the
caps of the policy in force (`serving.caps.limits`, measured by `serving.contact_store.base.measure`,
the functions the arbiter's checks use). The lifecycle stage at a date is the feature
(`build_customer_features(..., as_of)`) on the customer's own rows: the same definition training
and serving use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from console.backend import ConsoleBackend
from features import build_customer_features
from nbo.vocab import CONTACT_CHANNELS, ONLINE_CHANNELS
from serving.caps import limits
from serving.contact_store.base import ContactHistory, from_epoch, measure

#: How many dates the lifecycle stage is computed at (evenly spaced from signup to now, at most a year).
STAGE_POINTS = 12
#: Rows of each table shown (the latest); the chart shows them all.
MAX_ROWS = 200


@dataclass(frozen=True)
class BudgetLine:
    """One cap on a channel: used of max in the window, and what is left."""

    reason: str
    max: int
    days: int
    used: int
    channels: tuple[str, ...]

    @property
    def left(self) -> int:
        return max(self.max - self.used, 0)


@dataclass(frozen=True)
class ChannelBudget:
    channel: str
    consented: bool
    quiet_now: bool
    lines: tuple[BudgetLine, ...]

    @property
    def left(self) -> int | None:
        """Contacts still allowed now on the channel (the tightest cap), None when uncapped."""
        return min((line.left for line in self.lines), default=None)


@dataclass(frozen=True)
class CustomerView:
    customer_id: str
    known: bool  # has a materialised features row (the models score them)
    in_data: bool  # has a row in the data directory's customers table
    erased: bool  # erased with /forget: nothing of them is shown
    attributes: dict[str, object]
    events: pd.DataFrame
    stages: pd.DataFrame  # as_of, lifecycle
    consents: pd.DataFrame
    contacts: pd.DataFrame  # the data directory's contact history
    recorded: pd.DataFrame  # shows the contact store holds (within its horizon), with outcomes
    budget: tuple[ChannelBudget, ...]
    features: dict[str, object]
    now: datetime

    @property
    def found(self) -> bool:
        return (self.known or self.in_data) and not self.erased


def fatigue_budget(backend: ConsoleBackend, customer_id: str, now: datetime,
                   history: ContactHistory | None = None) -> tuple[tuple[ChannelBudget, ...], pd.DataFrame]:
    """Per contact channel: consent, quiet hours now, and every contact-level cap with what is used
    and left; plus the store's recorded shows of the customer within its horizon."""
    engine = backend.engine
    policy = engine.policy
    if history is None:
        history = engine.desk.read_customer(customer_id, now).history
    consents = engine.consents
    out = []
    for channel in CONTACT_CHANNELS:
        lines = tuple(BudgetLine(lim.reason, lim.max, lim.days, measure(history, lim), lim.channels)
                      for lim in limits(policy, channel).contact)
        out.append(ChannelBudget(channel, consents.allowed(customer_id, channel, now, policy.consent.opt_in_channels),
                                 policy.quiet_hours.is_quiet(channel, now, engine.timezones.get(customer_id)), lines))
    recorded = pd.DataFrame(
        [{"ts": from_epoch(c.ts), "channel": c.channel, "offer_id": c.offer_id, "category": c.category,
          "decision_id": c.decision_id} for c in history.contacts],
        columns=["ts", "channel", "offer_id", "category", "decision_id"],
    ).sort_values("ts")
    return tuple(out), recorded


def lifecycle_over_time(backend: ConsoleBackend, customer_id: str, now: datetime) -> pd.DataFrame:
    """The lifecycle stage at `STAGE_POINTS` dates from signup (at most a year back) to `now`."""
    rows = backend.customer_rows(customer_id)
    if rows.customer is None:
        return pd.DataFrame(columns=["as_of", "lifecycle"])
    signup = pd.Timestamp(rows.customer["signup_ts"])
    end = pd.Timestamp(now)
    start = max(signup + pd.Timedelta(days=1), end - pd.Timedelta(days=365))
    if start >= end:
        return pd.DataFrame(columns=["as_of", "lifecycle"])
    dates = pd.date_range(start, end, periods=STAGE_POINTS).floor("s").unique()
    data = rows.dataset(backend.data().offers, backend.customer_table(customer_id))
    stages = []
    for as_of in dates:
        frame = build_customer_features(data, as_of, [customer_id])
        stages.append(str(frame["lifecycle"].iloc[0]) if len(frame) else "")
    return pd.DataFrame({"as_of": dates, "lifecycle": stages})


#: Materialised features shown on the customer page (when present), in this order.
SHOWN_FEATURES = ("lifecycle", "recency_days", "frequency_365d", "purchases_365d", "spend_365d", "tenure_days",
                  "top_category", "next_category")


def customer_view(backend: ConsoleBackend, customer_id: str) -> CustomerView:
    """Everything the customer page shows of `customer_id` (`found` is False for an unknown id)."""
    now = backend.clock()
    state = backend.engine.desk.read_customer(customer_id, now)
    if state.forgotten:  # erased (`/forget`): the data directory may still hold rows until `nbo forget`
        empty = pd.DataFrame()
        return CustomerView(customer_id, False, False, True, {}, empty, pd.DataFrame(columns=["as_of", "lifecycle"]),
                            empty, empty, empty, (), {}, now)
    rows = backend.customer_rows(customer_id)
    features = backend.engine.features
    known = customer_id in features.index
    shown: dict[str, object] = {}
    if known:
        row = features.loc[customer_id]
        shown = {name: row[name] for name in SHOWN_FEATURES if name in features.columns}
    budget, recorded = fatigue_budget(backend, customer_id, now, state.history)
    cutoff = pd.Timestamp(now)

    def past(frame: pd.DataFrame) -> pd.DataFrame:  # the service's clock may be before the data's end
        return frame[frame["ts"] < cutoff] if len(frame) else frame
    return CustomerView(
        customer_id=customer_id,
        known=known,
        in_data=rows.customer is not None,
        erased=False,
        attributes={k: v for k, v in (rows.customer or {}).items() if k != "customer_id"},
        events=past(rows.events),
        stages=lifecycle_over_time(backend, customer_id, now) if rows.customer is not None else
        pd.DataFrame(columns=["as_of", "lifecycle"]),
        consents=past(rows.consents),
        contacts=past(rows.contacts),
        recorded=recorded,
        budget=budget,
        features=shown,
        now=now,
    )


def online(events: pd.DataFrame) -> np.ndarray:
    """True for the events on our digital properties (web, app), False for offline ones."""
    if "channel" not in events.columns:
        return np.zeros(len(events), dtype=bool)
    return events["channel"].isin(ONLINE_CHANNELS).to_numpy()

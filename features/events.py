"""Events before `as_of` as integer codes and ages in days: the input of every event feature."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.arrays import DAY_NS, RowsByOwner, age_days, codes, positions
from nbo.vocab import EVENT_CHANNELS, EVENT_TYPES

#: Event type -> its code (position in `nbo.vocab.EVENT_TYPES`).
TYPE: dict[str, int] = {t: i for i, t in enumerate(EVENT_TYPES)}
#: Event channel -> its code (position in `nbo.vocab.EVENT_CHANNELS`).
CHANNEL: dict[str, int] = {c: i for i, c in enumerate(EVENT_CHANNELS)}


@dataclass(frozen=True)
class EventArrays:
    """Events before as_of of the selected customers, as integer codes and ages in days."""

    cust: np.ndarray
    age: np.ndarray
    type: np.ndarray
    channel: np.ndarray
    cat: np.ndarray
    amount: np.ndarray
    raw_cat: object  # the full category column (ExtensionArray); `rows` selects the kept events
    rows: np.ndarray


def optional_column(frame: pd.DataFrame, name: str, dtype: str = "str") -> pd.Series:
    """`frame[name]`, or all missing values when the contract lets the column be absent
    (`events.channel`, `events.category`, `events.amount`, ...; docs/data.md): an unknown channel
    or category is coded -1 and counts in no per-channel or per-category column, an unknown
    amount is spend 0, exactly as an empty cell would."""
    if name in frame.columns:
        return frame[name]
    return pd.Series(np.nan, index=frame.index, dtype=dtype)


def encode_events(events: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp, categories: tuple[str, ...]) -> EventArrays:
    """The events of the customers of `index` with `ts < as_of`; categories coded in `categories`
    (-1 for an empty or undeclared category), empty amounts as 0."""
    cust = positions(index, events["customer_id"])
    age = age_days(events["ts"], as_of)
    keep = np.flatnonzero((cust >= 0) & (age > 0))
    category = optional_column(events, "category")
    amount = optional_column(events, "amount", "float64")
    return EventArrays(
        cust=cust[keep].astype(np.int64, copy=False),
        age=age[keep],
        type=codes(events["type"], EVENT_TYPES)[keep],
        channel=codes(optional_column(events, "channel"), EVENT_CHANNELS)[keep],
        cat=codes(category, categories)[keep],
        amount=np.nan_to_num(amount.to_numpy(dtype=np.float64, na_value=np.nan)[keep], nan=0.0),
        raw_cat=category.array,
        rows=keep,
    )


@dataclass(frozen=True)
class EventLog:
    """Every event coded once and grouped by customer: what `encode_events_at` reads for each
    (customer, moment) row, so a training set asks for thousands of moments without coding or
    scanning the events table once per moment."""

    ts: np.ndarray  # int64 ns
    type: np.ndarray
    channel: np.ndarray
    cat: np.ndarray
    amount: np.ndarray
    raw_cat: object
    by_customer: RowsByOwner
    #: Per event of `by_customer.order`: (customer, rank of its time) as one sortable key, when
    #: every customer's events are in time order in the table (then the events before a moment
    #: are a prefix of the customer's rows); None otherwise.
    key: np.ndarray | None
    times: np.ndarray  # the customers' event times, sorted (int64 ns)


def event_log(events: pd.DataFrame, index: pd.Index, categories: tuple[str, ...]) -> EventLog:
    """The events of the customers of `index` (positions in it), coded as `encode_events` codes them."""
    cust = positions(index, events["customer_id"])
    ts = events["ts"].to_numpy(dtype="datetime64[ns]")
    cust = np.where(np.isnat(ts), -1, cust)  # no time: never before any moment
    ts = ts.view(np.int64)
    category = optional_column(events, "category")
    amount = optional_column(events, "amount", "float64")
    by_customer = RowsByOwner(cust, len(index))
    order = by_customer.order
    key = None
    times = np.sort(ts[order])
    if len(order):
        rank = np.searchsorted(times, ts[order], side="left")  # events strictly earlier
        key = cust[order].astype(np.int64) * (len(order) + 1) + rank
        if (np.diff(key) < 0).any():
            key = None
    return EventLog(
        ts=ts,
        type=codes(events["type"], EVENT_TYPES),
        channel=codes(optional_column(events, "channel"), EVENT_CHANNELS),
        cat=codes(category, categories),
        amount=np.nan_to_num(amount.to_numpy(dtype=np.float64, na_value=np.nan), nan=0.0),
        raw_cat=category.array,
        by_customer=by_customer,
        key=key,
        times=times,
    )


def events_before(log: EventLog, owners: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """Per (customer position, moment): how many of the customer's events have `ts < moment`
    when the log is in time order (`log.key`), else all of the customer's events."""
    owners = np.asarray(owners, dtype=np.int64)
    if log.key is None:
        return log.by_customer.stop[owners] - log.by_customer.start[owners]
    rank = np.searchsorted(log.times, np.asarray(moments, dtype=np.int64), side="left")
    cut = np.searchsorted(log.key, owners * (len(log.key) + 1) + rank, side="left")
    return cut - log.by_customer.start[owners]


def encode_events_at(log: EventLog, owners: np.ndarray, moments: np.ndarray) -> EventArrays:
    """Events seen from a moment of each row's own: row `i` gets the events of customer position
    `owners[i]` with `ts < moments[i]` (int64 ns), ages in days from that moment.

    What `encode_events(events, index, as_of, ...)` gives for one customer and one `as_of`, row by
    row: the same values in the same order (the customer's events in table order), so every
    feature computed from them equals the per-moment one to the last bit (tested).
    """
    owners = np.asarray(owners, dtype=np.int64)
    moments = np.asarray(moments, dtype=np.int64)
    stop = None
    if log.key is not None:
        stop = log.by_customer.start[owners] + events_before(log, owners, moments)
    row, event = log.by_customer.expand(owners, stop)
    age = (moments[row] - log.ts[event]) / DAY_NS
    keep = age > 0
    if not keep.all():
        row, event, age = row[keep], event[keep], age[keep]
    return EventArrays(
        cust=row,
        age=age,
        type=log.type[event],
        channel=log.channel[event],
        cat=log.cat[event],
        amount=log.amount[event],
        raw_cat=log.raw_cat,
        rows=event,
    )

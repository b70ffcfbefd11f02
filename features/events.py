"""Events before `as_of` as integer codes and ages in days: the input of every event feature."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.arrays import age_days, codes, positions
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

"""When each customer is around: their engagement per hour of the day, seen from `as_of`.

The raw material of the send-time chooser (`serving.send_time`): for each customer, in how many
distinct (day, hour) slots of the last `window_days` they did something (a visit, a page, a
purchase, a call; complaints do not count), per hour of the day. Hours are the customer's local
hours when their time zone is known (the contract's optional `customers.timezone`), else UTC, so
a habit ("after dinner") stays one hour across a change of daylight-saving time.

One function for batch and online: the online path passes the one customer's events.
Nothing at or after `as_of` is used.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

HOURS = 24
#: The columns of `engagement_hours`: distinct (day, hour) slots with activity, per hour 0..23.
HOUR_COLUMNS: tuple[str, ...] = tuple(f"engaged_h{h:02d}" for h in range(HOURS))
#: Events that are not engagement: a complaint is not a good moment.
NOT_ENGAGEMENT = ("complaint",)


def engagement_hours(
    events: pd.DataFrame,
    as_of: pd.Timestamp,
    *,
    timezones: Mapping[str, str] | pd.Series | None = None,
    window_days: int = 180,
) -> pd.DataFrame:
    """Per customer with activity in [`as_of` - `window_days`, `as_of`): the number of distinct
    (local date, local hour) slots with an event, one column per hour (`HOUR_COLUMNS`, int64).

    `events`: the contract's events (`customer_id`, `ts` tz-naive UTC, `type`). `timezones`:
    IANA names by customer id (absent or empty: UTC). Customers without activity are absent: the
    chooser gives them the population prior.
    """
    if window_days <= 0:
        raise ValueError(f"window_days must be > 0, got {window_days}")
    as_of = pd.Timestamp(as_of)
    ts = events["ts"]
    keep = (ts < as_of) & (ts >= as_of - pd.Timedelta(days=window_days)) & ~events["type"].isin(NOT_ENGAGEMENT)
    ids = events.loc[keep, "customer_id"].astype(str).to_numpy()
    local = ts[keep].to_numpy(dtype="datetime64[ns]")
    if timezones is not None and len(ids):
        zone = pd.Series(ids).map(timezones).to_numpy(dtype=object)
        for name in pd.unique(zone[pd.notna(zone)]):
            if name in ("", "UTC"):
                continue
            at = np.flatnonzero(zone == name)
            moved = pd.DatetimeIndex(local[at]).tz_localize("UTC").tz_convert(str(name)).tz_localize(None)
            local[at] = moved.to_numpy(dtype="datetime64[ns]")
    slot = local.astype("datetime64[h]").astype(np.int64)  # hours since the epoch, local
    frame = pd.DataFrame({"customer_id": ids, "slot": slot}).drop_duplicates()
    frame["hour"] = frame["slot"] % HOURS
    counts = pd.crosstab(frame["customer_id"], frame["hour"]) if len(frame) else pd.DataFrame()
    counts = counts.reindex(columns=range(HOURS), fill_value=0).astype(np.int64)
    counts.columns = list(HOUR_COLUMNS)
    counts.index = counts.index.astype(str)
    counts.index.name = "customer_id"
    return counts

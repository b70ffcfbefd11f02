"""Consents: the latest row at a given time wins; runtime withdrawals take effect immediately.

Rows with the same timestamp resolve to the withdrawal, whatever their order in the table: when
we cannot tell which came last, we do not contact.

Consents are data, not contact history: `ConsentBook` is built from the `consents` table and
answers "which channels may we use for this customer at `now`". `record` adds a change observed at
runtime in this process; changes recorded in the contact store (`POST /consents`, shared by every
worker and replica) come with each decision's read of the customer and are merged by `state(...,
live=...)` under the same rule. No row for a channel means
no consent on opt-in channels and consent elsewhere; a withdrawal on a non-opt-in channel (e.g. a
mail opt-out) is respected.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

import pandas as pd

from serving.contact_store.base import ConsentChange, to_epoch


class ConsentBook:
    """Consent state per (customer, channel) over time, with runtime overrides. Thread-safe."""

    def __init__(self, consents: pd.DataFrame | None = None) -> None:
        # (ts, withdrawn), sorted: the last row at or before a time is the state then, and among
        # rows of the same ts that is a withdrawal if there is one (False < True).
        self._rows: dict[tuple[str, str], list[tuple[float, bool]]] = defaultdict(list)
        self._lock = threading.Lock()
        if consents is not None and len(consents):
            ts = pd.to_datetime(consents["ts"]).to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9
            for cid, ch, granted, t in zip(
                consents["customer_id"].tolist(), consents["channel"].tolist(), consents["granted"].tolist(), ts.tolist(), strict=True
            ):
                self._add(str(cid), str(ch), bool(granted), float(t))

    def _add(self, customer_id: str, channel: str, granted: bool, t: float) -> None:
        bisect.insort(self._rows[(customer_id, channel)], (t, not granted))

    def record(self, customer_id: str, channel: str, granted: bool, ts: datetime) -> None:
        """A consent change observed at runtime; used from the next decision on."""
        with self._lock:
            self._add(customer_id, channel, granted, to_epoch(ts))

    def state(self, customer_id: str, channel: str, now: datetime,
              live: Iterable[ConsentChange] = ()) -> bool | None:
        """The latest recorded consent at or before `now`: True, False, or None if no row.

        `live`: the customer's consent changes from the contact store (`CustomerState.consents`),
        merged with the book's rows: the latest of all wins, a withdrawal wins a tie."""
        t = to_epoch(now)
        with self._lock:
            rows = self._rows.get((customer_id, channel))
            best: tuple[float, bool] | None = None
            if rows:
                i = bisect.bisect_right(rows, (t, math.inf))  # after every row at `t`
                best = None if i == 0 else rows[i - 1]
        for c in live:
            if c.channel == channel and c.ts <= t and (best is None or (c.ts, not c.granted) > best):
                best = (c.ts, not c.granted)
        return None if best is None else not best[1]

    def states(self, customer_id: str, now: datetime, channels: Iterable[str]) -> dict[str, bool]:
        """Channel -> latest consent for the channels that have a row (what `Arbiter.decide` takes)."""
        out = {}
        for ch in channels:
            s = self.state(customer_id, ch, now)
            if s is not None:
                out[ch] = s
        return out

    def allowed(self, customer_id: str, channel: str, now: datetime, opt_in_channels: Iterable[str]) -> bool:
        """May we contact the customer on `channel` at `now`?"""
        s = self.state(customer_id, channel, now)
        return (channel not in set(opt_in_channels)) if s is None else s

    def forget(self, customer_id: str) -> None:
        """Drop runtime and loaded rows of one customer (the source table is erased elsewhere)."""
        with self._lock:
            for key in [k for k in self._rows if k[0] == customer_id]:
                del self._rows[key]

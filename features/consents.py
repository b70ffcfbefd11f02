"""Consents seen from `as_of`: whether each contact channel is granted."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.arrays import RowsByOwner, age_days, codes, positions
from features.definitions import FeatureGroup
from nbo.vocab import CONTACT_CHANNELS

CONSENTS = FeatureGroup("consents", tuple(f"opt_in_{ch}" for ch in CONTACT_CHANNELS))


def consents(consents: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp) -> dict[str, np.ndarray]:
    """`opt_in_<channel>`: 1 if the latest consent row before as_of granted it, else 0 (none or withdrawn)."""
    cust = index.get_indexer(consents["customer_id"])
    keep = (cust >= 0) & (age_days(consents["ts"], as_of) > 0)
    rows = np.flatnonzero(keep)
    return _latest(consents, cust[rows], rows, len(index))


def consents_at(consents: pd.DataFrame, index: pd.Index, owners: np.ndarray, moments: np.ndarray) -> dict[str, np.ndarray]:
    """`consents` seen from a moment of each row's own: row `i` is customer `index[owners[i]]` at
    `moments[i]` (int64 ns); equals `consents(consents, [that customer], that moment)` row by row."""
    owner = positions(index, consents["customer_id"])
    request, rows = RowsByOwner(owner, len(index)).expand(owners)
    ts = consents["ts"].to_numpy(dtype="datetime64[ns]")[rows]
    keep = ~np.isnat(ts) & (ts.view(np.int64) < np.asarray(moments, dtype=np.int64)[request])
    return _latest(consents, request[keep], rows[keep], len(owners))


def _latest(consents: pd.DataFrame, cust: np.ndarray, rows: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The latest grant per (customer, channel) among consent `rows` (`cust`: their customer rows)."""
    k = len(CONTACT_CHANNELS)
    out = np.zeros((n, k))
    if len(rows):
        key = cust.astype(np.int64) * k + codes(consents["channel"], CONTACT_CHANNELS)[rows]
        ts = consents["ts"].to_numpy(dtype="datetime64[ns]")[rows].view(np.int64)
        granted = consents["granted"].to_numpy(dtype=bool)[rows]
        # The latest row per (customer, channel); of rows with equal times the last one in the
        # table (a stable sort by time, then the last row per key). numpy, not a frame: one
        # customer's few rows are decided on the live decision path.
        order = np.lexsort((np.arange(len(key)), ts, key))
        last = order[np.r_[key[order][1:] != key[order][:-1], True]]
        out.reshape(-1)[key[last]] = granted[last].astype(np.float64)
    return {f"opt_in_{ch}": out[:, j] for j, ch in enumerate(CONTACT_CHANNELS)}

"""Consents seen from `as_of`: whether each contact channel is granted."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.arrays import age_days, codes
from features.definitions import FeatureGroup
from nbo.vocab import CONTACT_CHANNELS

CONSENTS = FeatureGroup("consents", tuple(f"opt_in_{ch}" for ch in CONTACT_CHANNELS))


def consents(consents: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp) -> dict[str, np.ndarray]:
    """`opt_in_<channel>`: 1 if the latest consent row before as_of granted it, else 0 (none or withdrawn)."""
    n, k = len(index), len(CONTACT_CHANNELS)
    cust = index.get_indexer(consents["customer_id"])
    keep = (cust >= 0) & (age_days(consents["ts"], as_of) > 0)
    out = np.zeros((n, k))
    if keep.any():
        key = cust[keep].astype(np.int64) * k + codes(consents["channel"], CONTACT_CHANNELS)[keep]
        ts = consents["ts"].to_numpy(dtype="datetime64[ns]")[keep].view(np.int64)
        granted = consents["granted"].to_numpy(dtype=bool)[keep]
        # The latest row per (customer, channel); of rows with equal times the last one in the
        # table (a stable sort by time, then the last row per key). numpy, not a frame: one
        # customer's few rows are decided on the live decision path.
        order = np.lexsort((np.arange(len(key)), ts, key))
        last = order[np.r_[key[order][1:] != key[order][:-1], True]]
        out.reshape(-1)[key[last]] = granted[last].astype(np.float64)
    return {f"opt_in_{ch}": out[:, j] for j, ch in enumerate(CONTACT_CHANNELS)}

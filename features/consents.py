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
        sub = pd.DataFrame(
            {
                "key": cust[keep].astype(np.int64) * k + codes(consents["channel"], CONTACT_CHANNELS)[keep],
                "ts": consents["ts"].to_numpy()[keep],
                "granted": consents["granted"].to_numpy(dtype=bool)[keep],
            }
        )
        last = sub.sort_values("ts", kind="stable").drop_duplicates("key", keep="last")
        out.reshape(-1)[last["key"].to_numpy()] = last["granted"].to_numpy(dtype=np.float64)
    return {f"opt_in_{ch}": out[:, j] for j, ch in enumerate(CONTACT_CHANNELS)}

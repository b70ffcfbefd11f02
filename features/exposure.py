"""Candidate features for given (customer, offer, context) rows: past exposures, for training.

Training needs the features of each logged exposure as they were at its time, with its own
context (channel, hour, weekday). This builds them with the same code as the online and batch
paths: `build_candidate_features` for the customer × offer columns, `context_columns` for the
context, then keeps the exposed pairs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.candidate import build_candidate_features, context_columns
from features.config import check_as_of


def build_exposure_features(
    customer_features: pd.DataFrame,
    offers: pd.DataFrame,
    contacts: pd.DataFrame,
    exposures: pd.DataFrame,
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """One row per exposure (customer_id, offer_id, channel, ts), in the order given.

    `customer_features` are taken at `as_of` (a snapshot at or before every exposure); the
    context of each row is its exposure's channel and the hour and weekday of its `ts`. Offers
    absent from `offers` get NaN offer columns.
    """
    as_of = check_as_of(as_of)
    if (exposures["ts"] < as_of).any():
        raise ValueError("exposures before the snapshot as_of would use features from their future")
    customers = pd.Index(customer_features.index)
    pairs = build_candidate_features(customer_features, offers, contacts, None, as_of)
    n_o = len(offers)
    cust = customers.get_indexer(exposures["customer_id"])
    off = pd.Index(offers["offer_id"]).get_indexer(exposures["offer_id"])
    if (cust < 0).any():
        missing = exposures["customer_id"].to_numpy()[cust < 0][0]
        raise ValueError(f"exposure for customer {missing!r} missing from customer_features")
    row = np.where(off >= 0, cust.astype(np.int64) * n_o + off, -1)
    out = pairs.iloc[np.where(row >= 0, row, 0)].reset_index(drop=True)
    out["customer_id"] = exposures["customer_id"].to_numpy()
    out["offer_id"] = exposures["offer_id"].to_numpy()
    if (off < 0).any():
        out.loc[off < 0, out.columns[2:]] = np.nan
    ts = pd.DatetimeIndex(exposures["ts"])
    ctx = context_columns(
        channel=exposures["channel"].to_numpy(dtype=object),
        hour=ts.hour.to_numpy(),
        day_of_week=ts.dayofweek.to_numpy(),
        offers=offers,
        offer_pos=off,
    )
    for name, values in ctx.items():
        out[name] = values
    return out

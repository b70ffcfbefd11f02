"""Labels for the two models, defined so that nothing at or after the training `as_of` is used.

- Propensity: each contact is an exposure; the label is "accepted within `window_days`". An
  exposure is usable only when its whole window ended before `as_of` (label observed).
- Churn: for customers active at a snapshot date (signed up before it and bought in the previous
  `active_days`), the label is "no purchase in the next `horizon_days`"; the snapshot is chosen so
  that the horizon ends before `as_of`.
"""

from __future__ import annotations

import pandas as pd

from nbo.data import Dataset


def propensity_labels(contacts: pd.DataFrame, as_of: pd.Timestamp, window_days: int = 7) -> pd.DataFrame:
    """Exposures whose acceptance window closed before `as_of`, with `label` 0/1."""
    if window_days <= 0:
        raise ValueError("window_days must be positive")
    window = pd.Timedelta(days=window_days)
    usable = contacts[contacts["ts"] + window <= as_of].copy()
    accepted = (
        (usable["outcome"] == "accepted")
        & usable["outcome_ts"].notna()
        & (usable["outcome_ts"] <= usable["ts"] + window)
    )
    usable["label"] = accepted.astype("int8")
    return usable.sort_values(["ts", "decision_id", "offer_id"], kind="stable").reset_index(drop=True)


def churn_snapshots(as_of: pd.Timestamp, horizon_days: int, count: int, step_days: int) -> list[pd.Timestamp]:
    """Snapshot dates, oldest first, whose horizon ends at or before `as_of`."""
    last = (as_of - pd.Timedelta(days=horizon_days)).normalize()
    return [last - pd.Timedelta(days=step_days * k) for k in range(count - 1, -1, -1)]


def churn_labels(
    data: Dataset, snapshot: pd.Timestamp, horizon_days: int = 90, active_days: int = 365
) -> pd.Series:
    """1 if an active customer makes no purchase in [snapshot, snapshot + horizon), indexed by id."""
    purchases = data.events[data.events["type"] == "purchase"]
    before = purchases[(purchases["ts"] < snapshot) & (purchases["ts"] >= snapshot - pd.Timedelta(days=active_days))]
    signed = data.customers.loc[data.customers["signup_ts"] < snapshot, "customer_id"]
    active = pd.Index(before["customer_id"].unique()).intersection(pd.Index(signed))
    end = snapshot + pd.Timedelta(days=horizon_days)
    after = purchases[(purchases["ts"] >= snapshot) & (purchases["ts"] < end)]
    bought = pd.Index(after["customer_id"].unique())
    label = pd.Series(1, index=active.sort_values(), dtype="int8", name="label")
    label[label.index.isin(bought)] = 0
    label.index.name = "customer_id"
    return label

"""Recency, frequency and monetary value (RFM) per customer, seen from `as_of`.

Scores use fixed thresholds (`features.config`), never data quantiles, so a subset's features
equal the corresponding rows of a full run.
"""

from __future__ import annotations

import numpy as np

from features.arrays import count, last_age
from features.config import FREQUENCY_THRESHOLDS, MONETARY_THRESHOLDS, PURCHASE_WINDOWS, RECENCY_THRESHOLDS
from features.definitions import FeatureGroup
from features.events import TYPE, EventArrays

RFM = FeatureGroup(
    "rfm",
    (
        "recency_days",
        "tenure_days",
        *(f"{stem}_{w}d" for w in PURCHASE_WINDOWS for stem in ("purchases", "spend")),
        "purchases_total",
        "spend_total",
        "avg_basket_365d",
        "r_score",
        "f_score",
        "m_score",
        "rfm_score",
    ),
)


def rfm(ev: EventArrays, n: int, tenure: np.ndarray) -> dict[str, np.ndarray]:
    """The `RFM` columns of `n` customers; `tenure` is days since signup."""
    buy = ev.type == TYPE["purchase"]
    cust, age, amount = ev.cust[buy], ev.age[buy], ev.amount[buy]
    out: dict[str, np.ndarray] = {"recency_days": last_age(cust, age, n), "tenure_days": tenure}
    for w in PURCHASE_WINDOWS:
        inside = age <= w
        out[f"purchases_{w}d"] = count(cust[inside], n)
        out[f"spend_{w}d"] = count(cust[inside], n, amount[inside])
    out["purchases_total"] = count(cust, n)
    out["spend_total"] = count(cust, n, amount)
    bought = out["purchases_365d"]
    out["avg_basket_365d"] = np.divide(out["spend_365d"], bought, out=np.zeros(n), where=bought > 0)
    out["r_score"] = 5.0 - np.searchsorted(RECENCY_THRESHOLDS, out["recency_days"], side="left")
    out["f_score"] = 1.0 + np.searchsorted(FREQUENCY_THRESHOLDS, bought, side="right")
    spend = out["spend_365d"]
    out["m_score"] = 1.0 + (spend > 0) + np.searchsorted(MONETARY_THRESHOLDS, spend, side="right")
    out["rfm_score"] = out["r_score"] + out["f_score"] + out["m_score"]
    return out

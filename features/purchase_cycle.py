"""The customer's purchase cycle, seen from `as_of`: how regularly they buy, how late they are
against their own rhythm, and the BG/NBD probability that they are still a customer.

Purchases are counted as purchase *days* (several purchases on one day are one occasion; days
are 24-hour periods counted back from `as_of`, as for the active days). With x the number of
purchase days after the first one (repeat occasions), T the age of the first purchase and t_x
the time from the first to the last purchase, the BG/NBD summary of Fader, Hardie and Lee (2005)
is (x, t_x, T); `p_alive_bgnbd` evaluates their P(alive) with the declared parameters
`features.config.BGNBD_PRIOR` (`features.bgnbd`).
"""

from __future__ import annotations

import numpy as np

from features.arrays import count, distinct
from features.bgnbd import BetaGeoParams, p_alive
from features.config import BGNBD_PRIOR, NEVER_DAYS
from features.definitions import FeatureGroup
from features.events import TYPE, EventArrays

PURCHASE_CYCLE = FeatureGroup(
    "purchase_cycle",
    (
        "repeat_purchase_days",
        "first_purchase_days",
        "purchase_gap_mean_days",
        "purchase_gap_std_days",
        "purchase_gap_cv",
        "recency_gap_ratio",
        "p_alive_bgnbd",
    ),
)


def purchase_summary(ev: EventArrays, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) per customer in days: repeat purchase days, first-to-last purchase, first
    purchase to `as_of`. Customers without a purchase get x = 0, t_x = 0, T = NaN."""
    buy = ev.type == TYPE["purchase"]
    cust, age = ev.cust[buy], ev.age[buy]
    first = np.full(n, -np.inf)
    np.maximum.at(first, cust, age)
    last = np.full(n, np.inf)
    np.minimum.at(last, cust, age)
    day = np.floor(age).astype(np.int64)
    keys = distinct(cust * (int(day.max(initial=0)) + 1) + day) if len(cust) else np.zeros(0, np.int64)
    occasions = count(keys // (int(day.max(initial=0)) + 1), n) if len(keys) else np.zeros(n)
    x = np.maximum(occasions - 1, 0.0)
    bought = np.isfinite(first)
    T = np.where(bought, first, np.nan)
    t_x = np.where(x > 0, first - last, 0.0)
    return x, t_x, T


def purchase_cycle(ev: EventArrays, n: int, recency_days: np.ndarray) -> dict[str, np.ndarray]:
    """The `PURCHASE_CYCLE` columns of `n` customers; `recency_days` from `rfm` (9999 if never)."""
    buy = ev.type == TYPE["purchase"]
    cust = ev.cust[buy]
    day = np.floor(ev.age[buy]).astype(np.int64)
    width = int(day.max(initial=0)) + 1
    keys = np.sort(distinct(cust * width + day))  # sorted: consecutive purchase days of a customer
    ucust, uday = keys // width, keys % width
    same = ucust[1:] == ucust[:-1]
    gaps = (uday[1:] - uday[:-1])[same].astype(float)  # days between consecutive purchase days
    gap_cust = ucust[1:][same]
    k = count(gap_cust, n)
    total = count(gap_cust, n, gaps)
    squares = count(gap_cust, n, gaps**2)
    mean = np.divide(total, k, out=np.full(n, np.nan), where=k > 0)
    var = np.divide(squares, k, out=np.full(n, np.nan), where=k > 1) - np.where(k > 1, mean**2, np.nan)
    std = np.sqrt(np.maximum(var, 0.0))
    x, t_x, T = purchase_summary(ev, n)
    bought = ~np.isnan(T)
    alive = np.full(n, np.nan)
    alive[bought] = p_alive(BetaGeoParams(*BGNBD_PRIOR), x[bought], t_x[bought], T[bought])
    return {
        "repeat_purchase_days": x,
        "first_purchase_days": np.where(bought, T, NEVER_DAYS),
        "purchase_gap_mean_days": mean,
        "purchase_gap_std_days": std,
        "purchase_gap_cv": np.divide(std, mean, out=np.full(n, np.nan), where=(k > 1) & (mean > 0)),
        "recency_gap_ratio": np.divide(recency_days, mean, out=np.full(n, np.nan), where=k > 0),
        "p_alive_bgnbd": alive,
    }

"""Behaviour seen from `as_of`: browsing (totals, per category, decayed), interest per category,
visits and their rhythm, where the customer shows up and spends, store visits and service contacts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.arrays import count, distinct_days, is_any, last_age, main_category_days, per_category, per_category_last_age
from features.config import BROWSE_TYPES, BROWSE_WINDOWS, DECAY_HALF_LIVES
from features.definitions import FeatureGroup
from features.events import CHANNEL, TYPE, EventArrays
from nbo.vocab import ONLINE_CHANNELS


def _behaviour_columns(categories: tuple[str, ...]) -> tuple[str, ...]:
    names = [f"{stem}_{w}d" for stem in BROWSE_TYPES.values() for w in BROWSE_WINDOWS]
    for cat in categories:
        names += [f"{cat}_{stem}_{w}d" for stem in BROWSE_TYPES.values() for w in BROWSE_WINDOWS]
        names += [f"{cat}_purchases_30d", f"{cat}_purchases_365d", f"{cat}_views_365d"]
        names += [f"{cat}_browse_hl{h}d" for h in DECAY_HALF_LIVES]
        names += [f"{cat}_days_since_browse", f"{cat}_days_since_purchase", f"{cat}_active_days_365d"]
        names += [f"{cat}_main_days_365d"]
    names += [
        "views_365d",
        "abandoned_carts_30d",
        *(f"days_since_{channel}_visit" for channel in ONLINE_CHANNELS),
        "days_since_activity",
        "active_days_30d",
        "active_days_365d",
        "silence_score",
        "silence_surprise",
        "activity_trend_30d",
        "online_visit_share_365d",
        "online_spend_share_365d",
        "store_spend_share_365d",
        "store_visits_30d",
        "store_visits_90d",
        "complaints_90d",
        "calls_90d",
    ]
    return tuple(names)


BEHAVIOUR = FeatureGroup("behaviour", _behaviour_columns)


def _silence_surprise(active_days: np.ndarray, silence: np.ndarray, first_age: np.ndarray) -> np.ndarray:
    """How unlikely the current silence is for a customer still coming at their own pace.

    The customer's rate of active days is uncertain: with `a` active days seen over the `w` days
    between the first event and the last one, a Gamma(a + 1/2, w + 5) belief about the rate
    gives P(no activity in `s` days) = (1 + s / (w + 5)) ** -(a + 1/2); the feature is minus its
    log (0 without activity). Unlike `silence_score` (s x a / w), one visit long ago is weak
    evidence of a pace, and a silence longer than the history counts less than linearly.
    """
    s = np.minimum(silence, 365.0)
    w = np.maximum(np.minimum(first_age, 365.0) - s, 0.0)
    return np.where(active_days > 0, (active_days + 0.5) * np.log1p(s / (w + 5.0)), 0.0)


def _abandoned_carts(ev: EventArrays, n: int) -> np.ndarray:
    """Cart adds in 30 days not followed (before as_of) by a purchase of the same raw category.

    The match is on the raw category text, so undeclared categories match too; an empty category
    matches a purchase with an empty category.
    """
    add = (ev.type == TYPE["add_to_cart"]) & (ev.age <= 30)
    if not add.any():
        return np.zeros(n)
    buy = ev.type == TYPE["purchase"]
    sel = add | buy
    raw, _ = pd.factorize(ev.raw_cat[ev.rows[sel]], use_na_sentinel=True)
    raw = raw.astype(np.int64) + 1  # 0 = empty category
    width = int(raw.max()) + 1
    key = ev.cust[sel] * width + raw
    age = ev.age[sel]
    is_add = add[sel]
    last_buy = pd.Series(age[~is_add]).groupby(key[~is_add]).min()
    after = last_buy.reindex(key[is_add]).to_numpy()
    abandoned = np.isnan(after) | (after >= age[is_add])
    return count(ev.cust[sel][is_add][abandoned], n)


def behaviour(ev: EventArrays, n: int, categories: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Browsing counts (totals and per category), visits, channel shares, service contacts.

    Returns (the `BEHAVIOUR` columns, per-category matrices used by breadth).
    """
    k = len(categories)
    out: dict[str, np.ndarray] = {}
    mats: dict[str, np.ndarray] = {}
    for etype, stem in BROWSE_TYPES.items():
        is_type = ev.type == TYPE[etype]
        for w in BROWSE_WINDOWS:
            m = is_type & (ev.age <= w)
            out[f"{stem}_{w}d"] = count(ev.cust[m], n)
            mat = per_category(ev.cust[m], ev.cat[m], n, k)
            mats[f"{stem}_{w}d"] = mat
            for j, cat in enumerate(categories):
                out[f"{cat}_{stem}_{w}d"] = mat[j]
    buy = ev.type == TYPE["purchase"]
    for w in (30, 365):
        m = buy & (ev.age <= w)
        mat = per_category(ev.cust[m], ev.cat[m], n, k)
        mats[f"purchases_{w}d"] = mat
        for j, cat in enumerate(categories):
            out[f"{cat}_purchases_{w}d"] = mat[j]
    mats["purchases_ever"] = per_category(ev.cust[buy], ev.cat[buy], n, k)
    # Long-run interest: page and product views over a year, per category (affinity estimate).
    seen = ((ev.type == TYPE["page_view"]) | (ev.type == TYPE["product_view"])) & (ev.age <= 365)
    mat = per_category(ev.cust[seen], ev.cat[seen], n, k)
    out["views_365d"] = count(ev.cust[seen], n)
    for j, cat in enumerate(categories):
        out[f"{cat}_views_365d"] = mat[j]
    # Recent interest, decayed: a visit yesterday weighs more than one a week ago.
    browse = is_any(ev.type, [TYPE[t] for t in BROWSE_TYPES])
    b_cust, b_cat, b_age = ev.cust[browse], ev.cat[browse], ev.age[browse]
    for h in DECAY_HALF_LIVES:
        mat = per_category(b_cust, b_cat, n, k, 0.5 ** (b_age / h))
        for j, cat in enumerate(categories):
            out[f"{cat}_browse_hl{h}d"] = mat[j]
    since_browse = per_category_last_age(b_cust, b_cat, b_age, n, k)
    since_buy = per_category_last_age(ev.cust[buy], ev.cat[buy], ev.age[buy], n, k)
    # Interest episodes, not clicks: distinct days with a browse or a purchase in the category.
    year = (browse | buy) & (ev.age <= 365)
    cat_days = distinct_days(ev.cust[year], ev.age[year], n, ev.cat[year], k)
    main_days = main_category_days(ev.cust[year], ev.age[year], ev.cat[year], n, k)
    for j, cat in enumerate(categories):
        out[f"{cat}_days_since_browse"] = since_browse[j]
        out[f"{cat}_days_since_purchase"] = since_buy[j]
        out[f"{cat}_active_days_365d"] = cat_days[j]
        out[f"{cat}_main_days_365d"] = main_days[j]
    out["abandoned_carts_30d"] = _abandoned_carts(ev, n)
    for channel in ONLINE_CHANNELS:
        m = ev.channel == CHANNEL[channel]
        out[f"days_since_{channel}_visit"] = last_age(ev.cust[m], ev.age[m], n)
    out["days_since_activity"] = last_age(ev.cust, ev.age, n)  # any event, online or offline
    # Silence measured against the customer's own rhythm: a daily visitor silent for 20 days has
    # probably left, a monthly one has not. Rate = active days / days since the first event (<= 365).
    for w in (30, 365):
        m = ev.age <= w
        out[f"active_days_{w}d"] = distinct_days(ev.cust[m], ev.age[m], n)[0]
    # Where the customer shows up: days with a web/app visit among days with a web/app or store visit.
    year = ev.age <= 365
    site = year & ((ev.channel == CHANNEL["web"]) | (ev.channel == CHANNEL["app"]))
    shop = year & (ev.channel == CHANNEL["store"])
    site_days = distinct_days(ev.cust[site], ev.age[site], n)[0]
    both_days = distinct_days(ev.cust[site | shop], ev.age[site | shop], n)[0]
    out["online_visit_share_365d"] = np.divide(site_days, both_days, out=np.zeros(n), where=both_days > 0)
    first = np.zeros(n)
    np.maximum.at(first, ev.cust, ev.age)
    span = np.clip(first, 1.0, 365.0)
    out["silence_score"] = np.where(out["active_days_365d"] > 0,
                                    np.minimum(out["days_since_activity"], 365.0) * out["active_days_365d"] / span, 0.0)
    out["silence_surprise"] = _silence_surprise(out["active_days_365d"], out["days_since_activity"], first)
    # Fading engagement: the last 30 days' rate of active days over the year's (1 = steady).
    rate_30 = out["active_days_30d"] / np.minimum(span, 30.0)
    rate_365 = out["active_days_365d"] / span
    out["activity_trend_30d"] = np.divide(rate_30, rate_365, out=np.zeros(n), where=rate_365 > 0)
    year_buy = buy & (ev.age <= 365)
    spend = count(ev.cust[year_buy], n, ev.amount[year_buy])
    online = year_buy & ((ev.channel == CHANNEL["web"]) | (ev.channel == CHANNEL["app"]))
    store = year_buy & (ev.channel == CHANNEL["store"])
    for name, m in (("online", online), ("store", store)):
        part = count(ev.cust[m], n, ev.amount[m])
        out[f"{name}_spend_share_365d"] = np.divide(part, spend, out=np.zeros(n), where=spend > 0)
    visit = ev.type == TYPE["store_visit"]
    for w in (30, 90):
        out[f"store_visits_{w}d"] = count(ev.cust[visit & (ev.age <= w)], n)
    for etype, name in (("complaint", "complaints_90d"), ("call", "calls_90d")):
        out[name] = count(ev.cust[(ev.type == TYPE[etype]) & (ev.age <= 90)], n)
    return out, mats

"""Customer features seen from `as_of`: RFM, behaviour, breadth, lifecycle, contact history, consents.

One function of (data, as_of). Rows are counted with numpy `bincount` over integer customer codes,
never a per-customer `apply`, so a million customers and twenty million events take seconds. Only
rows with `ts < as_of` are read; a contact outcome observed at or after `as_of` is still pending.
Events before a customer's signup count like any other event (the log is the truth; signup_ts
only sets tenure).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.config import (
    BROWSE_TYPES,
    BROWSE_WINDOWS,
    CATEGORIES,
    CONTACT_WINDOWS,
    DECAY_HALF_LIVES,
    FREQUENCY_THRESHOLDS,
    MONETARY_THRESHOLDS,
    NEVER_DAYS,
    PRESSURE_HALF_LIFE,
    PURCHASE_WINDOWS,
    RECENCY_THRESHOLDS,
    LifecycleRules,
    check_as_of,
)
from nbo.data import Dataset
from nbo.vocab import (
    CONTACT_CHANNELS,
    EVENT_CHANNELS,
    EVENT_TYPES,
    FINAL_OUTCOMES,
    LIFECYCLE_STAGES,
    OUTBOUND_CHANNELS,
    OUTCOMES,
)

_DAY_NS = 86_400 * 10**9
_TYPE = {t: i for i, t in enumerate(EVENT_TYPES)}
_CHANNEL = {c: i for i, c in enumerate(EVENT_CHANNELS)}
_CONTACT_CHANNEL = {c: i for i, c in enumerate(CONTACT_CHANNELS)}


def age_days(ts: pd.Series | np.ndarray, as_of: pd.Timestamp) -> np.ndarray:
    """Days (float) from each timestamp to `as_of`; positive for the past, NaN for NaT."""
    values = np.asarray(ts, dtype="datetime64[ns]")
    raw = values.view("i8")
    out = (as_of.value - raw) / _DAY_NS
    out[np.isnat(values)] = np.nan
    return out


#: Above this many values, string lookups go through Arrow's hash kernels (C++) instead of Python.
_ARROW_MIN_ROWS = 10_000
#: Up to this many values, `codes` looks each one up in a dict instead of factorizing first.
_FEW = 256


@functools.lru_cache(maxsize=64)
def _vocabulary_map(vocabulary: tuple[str, ...]) -> dict[str, int]:
    return {v: i for i, v in enumerate(vocabulary)}


def _arrow_strings(values: object) -> pa.Array | pa.ChunkedArray:
    """Values as an Arrow string array; zero-copy for pandas' pyarrow-backed `str` columns."""
    if isinstance(values, pd.Series | pd.Index):
        values = values.array
    arr = pa.array(values, from_pandas=True) if not isinstance(values, pa.Array | pa.ChunkedArray) else values
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    return arr


def lookup(values: pd.Series | np.ndarray, keys: tuple[str, ...] | list[str] | pd.Index) -> np.ndarray:
    """Position of each value among `keys` (distinct strings), -1 for empty or absent values."""
    n = len(values)
    if n >= _ARROW_MIN_ROWS:
        arr = _arrow_strings(values)
        value_set = _arrow_strings(keys) if isinstance(keys, pd.Index) else pa.array(list(keys), type=arr.type)
        if isinstance(value_set, pa.ChunkedArray):
            value_set = value_set.combine_chunks()
        found = pc.index_in(arr, value_set=value_set.cast(arr.type))
        return found.fill_null(-1).to_numpy().astype(np.int64, copy=False)
    raw, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    known = keys if isinstance(keys, dict) else {k: i for i, k in enumerate(keys)}
    table = np.fromiter((known.get(u, -1) for u in uniques), dtype=np.int64, count=len(uniques))
    return np.append(table, -1)[raw]  # raw == -1 (empty) -> last slot -> -1


def codes(values: pd.Series | np.ndarray, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Position of each value in `vocabulary` (int16), -1 for empty or unknown values."""
    if len(values) >= _ARROW_MIN_ROWS:
        return lookup(values, vocabulary).astype(np.int16)
    if isinstance(values, np.ndarray) and len(values) <= _FEW:  # one customer's rows: a dict beats factorize
        known = _vocabulary_map(vocabulary)
        return np.fromiter((known.get(v, -1) if isinstance(v, str) else -1 for v in values.tolist()), dtype=np.int16, count=len(values))
    raw, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    known = _vocabulary_map(vocabulary)
    table = np.fromiter((known.get(u, -1) for u in uniques), dtype=np.int16, count=len(uniques))
    return np.append(table, np.int16(-1))[raw]


@dataclass(frozen=True)
class _Events:
    """Events before as_of of the selected customers, as integer codes and ages in days."""

    cust: np.ndarray
    age: np.ndarray
    type: np.ndarray
    channel: np.ndarray
    cat: np.ndarray
    amount: np.ndarray
    raw_cat: object  # the full category column (ExtensionArray); `rows` selects the kept events
    rows: np.ndarray


def optional_column(frame: pd.DataFrame, name: str, dtype: str = "str") -> pd.Series:
    """`frame[name]`, or all missing values when the contract lets the column be absent
    (`events.channel`, `events.category`, `events.amount`, ...; docs/data.md): an unknown channel
    or category is coded -1 and counts in no per-channel or per-category column, an unknown
    amount is spend 0, exactly as an empty cell would."""
    if name in frame.columns:
        return frame[name]
    return pd.Series(np.nan, index=frame.index, dtype=dtype)


def _encode_events(events: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp, categories: tuple[str, ...]) -> _Events:
    cust = positions(index, events["customer_id"])
    age = age_days(events["ts"], as_of)
    keep = np.flatnonzero((cust >= 0) & (age > 0))
    category = optional_column(events, "category")
    amount = optional_column(events, "amount", "float64")
    return _Events(
        cust=cust[keep].astype(np.int64, copy=False),
        age=age[keep],
        type=codes(events["type"], EVENT_TYPES)[keep],
        channel=codes(optional_column(events, "channel"), EVENT_CHANNELS)[keep],
        cat=codes(category, categories)[keep],
        amount=np.nan_to_num(amount.to_numpy(dtype=np.float64, na_value=np.nan)[keep], nan=0.0),
        raw_cat=category.array,
        rows=keep,
    )


def _is_any(values: np.ndarray, targets: list[int]) -> np.ndarray:
    """`np.isin` for integer codes and a few targets (no sort or table: ~40 µs less per call)."""
    out = np.zeros(len(values), dtype=bool)
    for t in targets:
        out |= values == t
    return out


def _count(cust: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(cust, weights=weights, minlength=n).astype(np.float64, copy=False)


def _per_category(cust: np.ndarray, cat: np.ndarray, n: int, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(categories, customers) counts (or sums of `weights`); category-major so that each feature
    column is contiguous."""
    known = cat >= 0
    flat = cat[known].astype(np.int64) * n + cust[known]
    w = None if weights is None else weights[known]
    return np.bincount(flat, weights=w, minlength=n * k).reshape(k, n).astype(np.float64)


def _per_category_last_age(cust: np.ndarray, cat: np.ndarray, age: np.ndarray, n: int, k: int) -> np.ndarray:
    """(categories, customers) age in days of the most recent row; NEVER_DAYS when there is none."""
    known = cat >= 0
    return _last_age(cat[known].astype(np.int64) * n + cust[known], age[known], n * k).reshape(k, n)


def _distinct_days(cust: np.ndarray, age: np.ndarray, n: int, group: np.ndarray | None = None, groups: int = 1) -> np.ndarray:
    """(groups, customers) number of distinct days (24-hour periods counted back from as_of) with a row.

    Days are counted from `as_of`, not calendar days, so the value is a function of (data, as_of).
    """
    day = np.floor(age).astype(np.int64)
    g = np.zeros(len(cust), dtype=np.int64) if group is None else group.astype(np.int64)
    keep = g >= 0
    width = int(day.max()) + 1 if len(day) else 1
    key = np.unique((g[keep] * n + cust[keep]) * width + day[keep])
    return np.bincount(key // width, minlength=groups * n).reshape(groups, n).astype(np.float64)


def _main_category_days(cust: np.ndarray, age: np.ndarray, cat: np.ndarray, n: int, k: int) -> np.ndarray:
    """(categories, customers) number of days on which the category had most of the customer's rows
    (declared categories only; a tie goes to the category declared first).

    One day is one draw of the customer's interest: a session strays into other categories now
    and then, and counting every category seen on a day (`_distinct_days`) counts those strays as
    whole days of interest.
    """
    known = cat >= 0
    if not known.any():
        return np.zeros((k, n))
    day = np.floor(age[known]).astype(np.int64)
    width = int(day.max()) + 1
    key = ((cust[known].astype(np.int64) * width + day) * k) + cat[known]
    uniq, count = np.unique(key, return_counts=True)
    group, category = uniq // k, uniq % k
    order = np.lexsort((category, -count, group))  # per day: most rows first, then declared order
    first = np.ones(len(order), dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    win = order[first]
    return _per_category(group[win] // width, category[win], n, k)


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


def _last_age(cust: np.ndarray, age: np.ndarray, n: int) -> np.ndarray:
    """Age in days of each customer's most recent row; NEVER_DAYS when there is none."""
    out = np.full(n, np.inf)
    np.minimum.at(out, cust, age)
    out[np.isinf(out)] = NEVER_DAYS
    return out


def _rfm(ev: _Events, n: int, tenure: np.ndarray) -> dict[str, np.ndarray]:
    buy = ev.type == _TYPE["purchase"]
    cust, age, amount = ev.cust[buy], ev.age[buy], ev.amount[buy]
    out: dict[str, np.ndarray] = {"recency_days": _last_age(cust, age, n), "tenure_days": tenure}
    for w in PURCHASE_WINDOWS:
        inside = age <= w
        out[f"purchases_{w}d"] = _count(cust[inside], n)
        out[f"spend_{w}d"] = _count(cust[inside], n, amount[inside])
    out["purchases_total"] = _count(cust, n)
    out["spend_total"] = _count(cust, n, amount)
    count = out["purchases_365d"]
    out["avg_basket_365d"] = np.divide(out["spend_365d"], count, out=np.zeros(n), where=count > 0)
    out["r_score"] = 5.0 - np.searchsorted(RECENCY_THRESHOLDS, out["recency_days"], side="left")
    out["f_score"] = 1.0 + np.searchsorted(FREQUENCY_THRESHOLDS, count, side="right")
    spend = out["spend_365d"]
    out["m_score"] = 1.0 + (spend > 0) + np.searchsorted(MONETARY_THRESHOLDS, spend, side="right")
    out["rfm_score"] = out["r_score"] + out["f_score"] + out["m_score"]
    return out


def _abandoned_carts(ev: _Events, n: int) -> np.ndarray:
    """Cart adds in 30 days not followed (before as_of) by a purchase of the same raw category.

    The match is on the raw category text, so undeclared categories match too; an empty category
    matches a purchase with an empty category.
    """
    add = (ev.type == _TYPE["add_to_cart"]) & (ev.age <= 30)
    if not add.any():
        return np.zeros(n)
    buy = ev.type == _TYPE["purchase"]
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
    return _count(ev.cust[sel][is_add][abandoned], n)


def _behaviour(ev: _Events, n: int, categories: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Browsing counts (totals and per category), visits, channel shares, service contacts.

    Returns (features, per-category matrices used by breadth).
    """
    k = len(categories)
    out: dict[str, np.ndarray] = {}
    mats: dict[str, np.ndarray] = {}
    for etype, stem in BROWSE_TYPES.items():
        is_type = ev.type == _TYPE[etype]
        for w in BROWSE_WINDOWS:
            m = is_type & (ev.age <= w)
            out[f"{stem}_{w}d"] = _count(ev.cust[m], n)
            mat = _per_category(ev.cust[m], ev.cat[m], n, k)
            mats[f"{stem}_{w}d"] = mat
            for j, cat in enumerate(categories):
                out[f"{cat}_{stem}_{w}d"] = mat[j]
    buy = ev.type == _TYPE["purchase"]
    for w in (30, 365):
        m = buy & (ev.age <= w)
        mat = _per_category(ev.cust[m], ev.cat[m], n, k)
        mats[f"purchases_{w}d"] = mat
        for j, cat in enumerate(categories):
            out[f"{cat}_purchases_{w}d"] = mat[j]
    mats["purchases_ever"] = _per_category(ev.cust[buy], ev.cat[buy], n, k)
    # Long-run interest: page and product views over a year, per category (affinity estimate).
    seen = ((ev.type == _TYPE["page_view"]) | (ev.type == _TYPE["product_view"])) & (ev.age <= 365)
    mat = _per_category(ev.cust[seen], ev.cat[seen], n, k)
    out["views_365d"] = _count(ev.cust[seen], n)
    for j, cat in enumerate(categories):
        out[f"{cat}_views_365d"] = mat[j]
    # Recent interest, decayed: a visit yesterday weighs more than one a week ago.
    browse = _is_any(ev.type, [_TYPE[t] for t in BROWSE_TYPES])
    b_cust, b_cat, b_age = ev.cust[browse], ev.cat[browse], ev.age[browse]
    for h in DECAY_HALF_LIVES:
        mat = _per_category(b_cust, b_cat, n, k, 0.5 ** (b_age / h))
        for j, cat in enumerate(categories):
            out[f"{cat}_browse_hl{h}d"] = mat[j]
    since_browse = _per_category_last_age(b_cust, b_cat, b_age, n, k)
    since_buy = _per_category_last_age(ev.cust[buy], ev.cat[buy], ev.age[buy], n, k)
    # Interest episodes, not clicks: distinct days with a browse or a purchase in the category.
    year = (browse | buy) & (ev.age <= 365)
    cat_days = _distinct_days(ev.cust[year], ev.age[year], n, ev.cat[year], k)
    main_days = _main_category_days(ev.cust[year], ev.age[year], ev.cat[year], n, k)
    for j, cat in enumerate(categories):
        out[f"{cat}_days_since_browse"] = since_browse[j]
        out[f"{cat}_days_since_purchase"] = since_buy[j]
        out[f"{cat}_active_days_365d"] = cat_days[j]
        out[f"{cat}_main_days_365d"] = main_days[j]
    out["abandoned_carts_30d"] = _abandoned_carts(ev, n)
    for channel in ("web", "app"):
        m = ev.channel == _CHANNEL[channel]
        out[f"days_since_{channel}_visit"] = _last_age(ev.cust[m], ev.age[m], n)
    out["days_since_activity"] = _last_age(ev.cust, ev.age, n)  # any event, online or offline
    # Silence measured against the customer's own rhythm: a daily visitor silent for 20 days has
    # probably left, a monthly one has not. Rate = active days / days since the first event (<= 365).
    for w in (30, 365):
        m = ev.age <= w
        out[f"active_days_{w}d"] = _distinct_days(ev.cust[m], ev.age[m], n)[0]
    # Where the customer shows up: days with a web/app visit among days with a web/app or store visit.
    year = ev.age <= 365
    site = year & ((ev.channel == _CHANNEL["web"]) | (ev.channel == _CHANNEL["app"]))
    shop = year & (ev.channel == _CHANNEL["store"])
    site_days = _distinct_days(ev.cust[site], ev.age[site], n)[0]
    both_days = _distinct_days(ev.cust[site | shop], ev.age[site | shop], n)[0]
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
    spend = _count(ev.cust[year_buy], n, ev.amount[year_buy])
    online = year_buy & ((ev.channel == _CHANNEL["web"]) | (ev.channel == _CHANNEL["app"]))
    store = year_buy & (ev.channel == _CHANNEL["store"])
    for name, m in (("online", online), ("store", store)):
        part = _count(ev.cust[m], n, ev.amount[m])
        out[f"{name}_spend_share_365d"] = np.divide(part, spend, out=np.zeros(n), where=spend > 0)
    visit = ev.type == _TYPE["store_visit"]
    for w in (30, 90):
        out[f"store_visits_{w}d"] = _count(ev.cust[visit & (ev.age <= w)], n)
    for etype, name in (("complaint", "complaints_90d"), ("call", "calls_90d")):
        out[name] = _count(ev.cust[(ev.type == _TYPE[etype]) & (ev.age <= 90)], n)
    return out, mats


def _breadth(mats: dict[str, np.ndarray], purchases_365d: np.ndarray, categories: tuple[str, ...]) -> dict[str, object]:
    """Category breadth; ties go to the category declared first."""
    n = len(purchases_365d)
    names = np.array([*categories, ""], dtype=object)
    bought = mats["purchases_365d"]  # (categories, customers)
    k = bought.shape[0]
    top = bought.argmax(axis=0) if k else np.zeros(n, dtype=np.int64)
    top_count = bought.max(axis=0) if k else np.zeros(n)
    top = np.where(top_count > 0, top, len(categories))
    browsed = mats["page_views_30d"] + mats["product_views_30d"] + mats["searches_30d"]
    browsed = np.where(mats["purchases_ever"] > 0, 0.0, browsed)
    nxt = browsed.argmax(axis=0) if k else np.zeros(n, dtype=np.int64)
    nxt_count = browsed.max(axis=0) if k else np.zeros(n)
    nxt = np.where(nxt_count > 0, nxt, len(categories))
    return {
        "categories_bought_365d": (bought > 0).sum(axis=0).astype(np.float64),
        "top_category_share_365d": np.divide(top_count, purchases_365d, out=np.zeros(n), where=purchases_365d > 0),
        "top_category_code": np.where(top < len(categories), top, -1).astype(np.float64),
        "next_category_code": np.where(nxt < len(categories), nxt, -1).astype(np.float64),
        "top_category": pd.array(names[top], dtype="str"),
        "next_category": pd.array(names[nxt], dtype="str"),
    }


def positions(index: pd.Index, values: pd.Series | np.ndarray) -> np.ndarray:
    """Position of each value in `index` (unique ids), -1 when absent; one id is a plain comparison."""
    if len(index) == 1:
        return np.where(np.asarray(values, dtype=object) == index[0], 0, -1)
    if len(values) >= _ARROW_MIN_ROWS:
        return lookup(values, index)
    return index.get_indexer(np.asarray(values, dtype=object))


@dataclass(frozen=True)
class ContactArrays:
    """Contacts before as_of of the customers of an index, as arrays (shared by customer and pair features)."""

    cust: np.ndarray
    age: np.ndarray
    channel: np.ndarray
    outcome: np.ndarray  # codes into OUTCOMES
    final: np.ndarray
    offer_id: object  # the full offer_id column; `rows` selects the kept contacts
    rows: np.ndarray


def encode_contacts(contacts: pd.DataFrame | Mapping[str, np.ndarray], index: pd.Index, as_of: pd.Timestamp) -> ContactArrays:
    """A contact counts if `ts < as_of`; it is final if its outcome is final and observed before as_of.

    `contacts`: a contacts table, or its columns as numpy arrays (object ids, datetime64[ns] times):
    the online path keeps each customer's contacts as arrays and skips the DataFrame."""
    cust = positions(index, contacts["customer_id"])
    age = age_days(contacts["ts"], as_of)
    keep = (cust >= 0) & (age > 0)
    outcome = codes(contacts["outcome"], OUTCOMES)[keep]
    seen = age_days(contacts["outcome_ts"], as_of)[keep] > 0  # NaN (pending) compares False
    return ContactArrays(
        cust=cust[keep].astype(np.int64, copy=False),
        age=age[keep],
        channel=codes(contacts["channel"], CONTACT_CHANNELS)[keep],
        outcome=outcome,
        final=seen & _is_any(outcome, [OUTCOMES.index(o) for o in FINAL_OUTCOMES]),
        offer_id=_column_values(contacts["offer_id"]),
        rows=np.flatnonzero(keep),
    )


def encode_contacts_at(
    contacts: pd.DataFrame, customer_ids: np.ndarray, moments: np.ndarray
) -> ContactArrays:
    """Contacts seen from a moment of each row's own: row `i` sees the contacts of `customer_ids[i]`
    with `ts < moments[i]`, final when their outcome was observed before `moments[i]`.

    What `encode_contacts(contacts, index, as_of)` does for one `as_of`, per row: training asks
    it for each logged exposure at the exposure's time (the service sees the live contact log at
    request time), and the result feeds the same `contact_history` and pair code.
    """
    ids = np.asarray(customer_ids, dtype=object)
    n = len(ids)
    uniq, inverse = np.unique(ids, return_inverse=True) if n else (np.empty(0, dtype=object), np.empty(0, dtype=np.int64))
    owner = positions(pd.Index(uniq, dtype=object), contacts["customer_id"]) if n else np.full(len(contacts), -1)
    mine = np.flatnonzero(owner >= 0)
    order = mine[np.argsort(owner[mine], kind="stable")]  # contact rows grouped by customer
    group = owner[order]
    start = np.searchsorted(group, np.arange(len(uniq)), side="left")
    count = (np.searchsorted(group, np.arange(len(uniq)), side="right") - start)[inverse]
    row = np.repeat(np.arange(n), count)
    offset = np.arange(len(row)) - np.repeat(np.cumsum(count) - count, count)
    pair = order[np.repeat(start[inverse], count) + offset]  # contact row of each (row, contact) pair
    moment = np.asarray(moments, dtype="datetime64[ns]").view(np.int64)[row]
    ts = np.asarray(contacts["ts"], dtype="datetime64[ns]").view(np.int64)[pair]
    age = (moment - ts) / _DAY_NS
    keep = age > 0
    row, pair, age, moment = row[keep], pair[keep], age[keep], moment[keep]
    outcome = codes(contacts["outcome"], OUTCOMES)[pair]
    answered = np.asarray(contacts["outcome_ts"], dtype="datetime64[ns]")[pair]
    seen = ~np.isnat(answered) & (answered.view(np.int64) < moment)
    return ContactArrays(
        cust=row.astype(np.int64, copy=False),
        age=age,
        channel=codes(contacts["channel"], CONTACT_CHANNELS)[pair],
        outcome=outcome,
        final=seen & _is_any(outcome, [OUTCOMES.index(o) for o in FINAL_OUTCOMES]),
        offer_id=_column_values(contacts["offer_id"]),
        rows=pair,
    )


def _column_values(column: object) -> object:
    return column.array if isinstance(column, pd.Series) else np.asarray(column, dtype=object)


def contact_history(contacts: pd.DataFrame | ContactArrays, index: pd.Index, as_of: pd.Timestamp) -> dict[str, np.ndarray]:
    """Contact pressure and response history per customer of `index`, seen from `as_of`.

    A contact counts if its `ts < as_of`; it is finalised if its outcome is final and was observed
    before `as_of`; otherwise it is pending.
    """
    c = contacts if isinstance(contacts, ContactArrays) else encode_contacts(contacts, index, as_of)
    n = len(index)
    cust, age, channel = c.cust, c.age, c.channel
    out: dict[str, np.ndarray] = {}
    # Per (channel, customer) in one bincount per window instead of one per channel (channel-major,
    # so each feature column is contiguous). A bin adds its rows in row order, as the bincount of
    # that channel's rows alone does: the same numbers to the last bit.
    k = len(CONTACT_CHANNELS)
    known = channel >= 0
    key = channel[known].astype(np.int64) * n + cust[known]
    known_age = age[known]
    for w in CONTACT_WINDOWS:
        per = np.bincount(key[known_age <= w], minlength=n * k).reshape(k, n).astype(np.float64)
        for ch, code in _CONTACT_CHANNEL.items():
            out[f"contacts_{ch}_{w}d"] = per[code]
        out[f"contacts_{w}d"] = _count(cust[age <= w], n)
    decayed = 0.5 ** (age / PRESSURE_HALF_LIFE)
    per = np.bincount(key, weights=decayed[known], minlength=n * k).reshape(k, n)
    for ch, code in _CONTACT_CHANNEL.items():
        out[f"pressure_{ch}"] = per[code]
    out["pressure_total"] = _count(cust, n, decayed)
    outbound = _is_any(channel, [_CONTACT_CHANNEL[ch] for ch in OUTBOUND_CHANNELS])
    out["outbound_contacts_7d"] = _count(cust[outbound & (age <= 7)], n)
    out["days_since_last_contact"] = _last_age(cust, age, n)
    out["contacts_total"] = _count(cust, n)
    out["finalised_total"] = _count(cust[c.final], n)
    for value, name in (("accepted", "accepts_total"), ("declined", "declines_total"), ("ignored", "ignores_total")):
        out[name] = _count(cust[c.final & (c.outcome == OUTCOMES.index(value))], n)
    out["pending_contacts"] = out["contacts_total"] - out["finalised_total"]
    fin = out["finalised_total"]
    out["acceptance_rate"] = np.divide(out["accepts_total"], fin, out=np.zeros(n), where=fin > 0)
    return out


#: Response-history totals, in output order (after the per-channel contact counts).
_HISTORY_TOTALS: tuple[str, ...] = (
        "outbound_contacts_7d",
        "days_since_last_contact",
        "contacts_total",
        "finalised_total",
        "accepts_total",
        "declines_total",
        "ignores_total",
        "pending_contacts",
        "acceptance_rate",
)
CONTACT_HISTORY_COLUMNS: tuple[str, ...] = tuple(
    [f"contacts_{ch}_{w}d" for w in CONTACT_WINDOWS for ch in CONTACT_CHANNELS]
    + [f"contacts_{w}d" for w in CONTACT_WINDOWS]
    + [f"pressure_{ch}" for ch in CONTACT_CHANNELS]
    + ["pressure_total"]
    + list(_HISTORY_TOTALS)
)


def _consents(consents: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp) -> dict[str, np.ndarray]:
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


def lifecycle_stage(frame: pd.DataFrame | dict[str, np.ndarray], rules: LifecycleRules) -> np.ndarray:
    """Lifecycle stage per row (see `LifecycleRules`; first rule that holds wins)."""
    tenure = np.asarray(frame["tenure_days"])
    recency = np.asarray(frame["recency_days"])
    conditions = [
        (tenure > rules.lapsed_after_days) & (recency > rules.lapsed_after_days),
        (tenure > rules.at_risk_after_days) & (recency > rules.at_risk_after_days),
        (tenure <= rules.new_max_tenure_days) | (np.asarray(frame["purchases_total"]) <= 1),
        (tenure >= rules.loyal_min_tenure_days)
        & (np.asarray(frame["purchases_365d"]) >= rules.loyal_min_purchases_365d),
        np.asarray(frame["categories_bought_365d"]) >= rules.diversified_min_categories,
    ]
    return np.select(conditions, ["lapsed", "at_risk", "new", "loyal", "diversified"], default="rooted")


def customer_columns(categories: tuple[str, ...]) -> tuple[str, ...]:
    """The numeric columns of `build_customer_features`, in output order."""
    names = ["recency_days", "tenure_days"]
    for w in PURCHASE_WINDOWS:
        names += [f"purchases_{w}d", f"spend_{w}d"]
    names += ["purchases_total", "spend_total", "avg_basket_365d", "r_score", "f_score", "m_score", "rfm_score"]
    for stem in BROWSE_TYPES.values():
        names += [f"{stem}_{w}d" for w in BROWSE_WINDOWS]
    for cat in categories:
        for stem in BROWSE_TYPES.values():
            names += [f"{cat}_{stem}_{w}d" for w in BROWSE_WINDOWS]
        names += [f"{cat}_purchases_30d", f"{cat}_purchases_365d", f"{cat}_views_365d"]
        names += [f"{cat}_browse_hl{h}d" for h in DECAY_HALF_LIVES]
        names += [f"{cat}_days_since_browse", f"{cat}_days_since_purchase", f"{cat}_active_days_365d"]
        names += [f"{cat}_main_days_365d"]
    names += [
        "views_365d",
        "abandoned_carts_30d",
        "days_since_web_visit",
        "days_since_app_visit",
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
        "categories_bought_365d",
        "top_category_share_365d",
        "top_category_code",
        "next_category_code",
    ]
    for w in CONTACT_WINDOWS:
        names += [f"contacts_{ch}_{w}d" for ch in CONTACT_CHANNELS] + [f"contacts_{w}d"]
    names += [f"pressure_{ch}" for ch in CONTACT_CHANNELS] + ["pressure_total"]
    names += _HISTORY_TOTALS
    names += [f"opt_in_{ch}" for ch in CONTACT_CHANNELS]
    names += ["loyalty_member", "lifecycle_code"]
    return tuple(names)


def build_customer_features(
    data: Dataset,
    as_of: pd.Timestamp,
    customer_ids: Iterable[str] | None = None,
    *,
    rules: LifecycleRules | None = None,
    categories: tuple[str, ...] = CATEGORIES,
) -> pd.DataFrame:
    """One row per customer who signed up before `as_of` (optionally only `customer_ids`).

    Indexed by `customer_id`, in the order of `data.customers`. Numeric columns are float64;
    `lifecycle`, `top_category` and `next_category` are text (see docs/features.md).
    """
    as_of = check_as_of(as_of)
    rules = rules or LifecycleRules()
    customers = data.customers
    keep = (customers["signup_ts"] < as_of).to_numpy()
    if customer_ids is not None:
        wanted = pd.Index(pd.Series(list(customer_ids), dtype="str"))
        keep = keep & customers["customer_id"].isin(wanted).to_numpy()
    customers = customers[keep]
    index = pd.Index(customers["customer_id"].astype("str").to_numpy(), name="customer_id", dtype="str")
    n = len(index)
    events = data.events
    if customer_ids is not None:
        events = events[events["customer_id"].isin(index)]
    ev = _encode_events(events, index, as_of, categories)
    tenure = age_days(customers["signup_ts"], as_of)
    out: dict[str, object] = {}
    out.update(_rfm(ev, n, tenure))
    behaviour, mats = _behaviour(ev, n, categories)
    out.update(behaviour)
    out.update(_breadth(mats, out["purchases_365d"], categories))  # type: ignore[arg-type]
    out.update(contact_history(data.contacts, index, as_of))
    out.update(_consents(data.consents, index, as_of))
    # Optional in the contract: unknown (NaN) for everyone when the export has no such column.
    out["loyalty_member"] = optional_column(customers, "loyalty_member", "float64").to_numpy(dtype=np.float64)
    stage = lifecycle_stage(out, rules)  # type: ignore[arg-type]
    out["lifecycle_code"] = pd.Categorical(stage, categories=list(LIFECYCLE_STAGES)).codes.astype(np.float64)
    out["lifecycle"] = pd.array(stage, dtype="str")
    columns = [*customer_columns(categories), "lifecycle", "top_category", "next_category"]
    return pd.DataFrame(out, index=index, columns=columns)

"""Customer x offer features: affinity, exposure history, offer attributes and request context.

The same function serves training, batch scoring and one online request. It works on numpy arrays
(one row per customer x offer pair, customer-major) so one customer x 50 offers costs about a
millisecond. Contact-history columns are recomputed here from the `contacts` passed in, so the
online service can pass a materialised customer row together with the live contact log.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from features.config import CATEGORIES, DEVICES, NEVER_DAYS, Context, check_as_of
from features.customer import CONTACT_HISTORY_COLUMNS, age_days, codes, contact_history
from nbo.vocab import CONTACT_CHANNELS, OFFER_KINDS

#: Customer columns copied onto every candidate row (the propensity model sees them).
CUSTOMER_COLUMNS_FOR_CANDIDATES: tuple[str, ...] = (
    "recency_days",
    "tenure_days",
    "purchases_30d",
    "purchases_365d",
    "spend_365d",
    "avg_basket_365d",
    "r_score",
    "f_score",
    "m_score",
    "categories_bought_365d",
    "top_category_share_365d",
    "abandoned_carts_30d",
    "days_since_web_visit",
    "days_since_app_visit",
    "online_spend_share_365d",
    "lifecycle_code",
    "loyalty_member",
    "contacts_7d",
    "contacts_30d",
    "outbound_contacts_7d",
    "days_since_last_contact",
    "acceptance_rate",
    "accepts_total",
    "declines_total",
    "ignores_total",
)

PAIR_COLUMNS: tuple[str, ...] = (
    "offer_cat_views_30d",
    "offer_cat_searches_30d",
    "offer_cat_cart_adds_30d",
    "offer_cat_purchases_365d",
    "offer_cat_purchase_share_365d",
    "offer_cat_bought_30d",
    "offer_cat_is_top",
    "offer_cat_is_next",
    "offer_exposures",
    "offer_accepts",
    "offer_declines",
    "offer_ignores",
    "offer_days_since_exposure",
    "offer_cat_declines",
)
OFFER_COLUMNS: tuple[str, ...] = (
    *(f"offer_kind_{k}" for k in OFFER_KINDS),
    "offer_kind_code",
    "offer_category_code",
    "offer_value",
    "offer_cost",
)
CONTEXT_COLUMNS: tuple[str, ...] = (
    "ctx_channel_code",
    "ctx_hour_of_day",
    "ctx_day_of_week",
    "ctx_device_code",
    "ctx_session_length",
    "ctx_page_category_match",
    "ctx_session_category_match",
    "ctx_offer_on_channel",
)
CANDIDATE_COLUMNS: tuple[str, ...] = (*CUSTOMER_COLUMNS_FOR_CANDIDATES, *PAIR_COLUMNS, *OFFER_COLUMNS, *CONTEXT_COLUMNS)


def _column(frame: pd.DataFrame, name: str, n: int) -> np.ndarray:
    if name in frame.columns:
        return frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    return np.zeros(n)


def _category_matrix(frame: pd.DataFrame, stems: tuple[str, ...], categories: tuple[str, ...]) -> np.ndarray:
    """(customers, categories + 1) sum of the given per-category columns; last column = 0 (unknown)."""
    n = len(frame)
    mat = np.zeros((n, len(categories) + 1))
    for j, cat in enumerate(categories):
        for stem in stems:
            mat[:, j] += _column(frame, f"{cat}_{stem}", n)
    return mat


def _exposures(
    contacts: pd.DataFrame, customers: pd.Index, offers: pd.DataFrame, offer_cat: np.ndarray, as_of: pd.Timestamp
) -> dict[str, np.ndarray]:
    """Per (customer, offer) pair: exposures and outcomes before as_of; declines per offer category."""
    n_c, n_o = len(customers), len(offers)
    cust = customers.get_indexer(contacts["customer_id"])
    age = age_days(contacts["ts"], as_of)
    keep = (cust >= 0) & (age > 0)
    offer_pos = pd.Index(offers["offer_id"]).get_indexer(contacts["offer_id"].to_numpy()[keep])
    cust, age = cust[keep], age[keep]
    outcome = contacts["outcome"].to_numpy()[keep]
    seen = age_days(contacts["outcome_ts"], as_of)[keep] > 0
    known = offer_pos >= 0
    pair = cust[known].astype(np.int64) * n_o + offer_pos[known]
    size = n_c * n_o
    out = {"offer_exposures": np.bincount(pair, minlength=size).astype(np.float64)}
    for value, name in (("accepted", "offer_accepts"), ("declined", "offer_declines"), ("ignored", "offer_ignores")):
        hit = (seen & (outcome == value))[known]
        out[name] = np.bincount(pair[hit], minlength=size).astype(np.float64)
    last = np.full(size, np.inf)
    np.minimum.at(last, pair, age[known])
    last[np.isinf(last)] = NEVER_DAYS
    out["offer_days_since_exposure"] = last
    # Declines per (customer, offer category); offers absent from `offers` are not counted.
    n_k = int(offer_cat.max()) + 1 if len(offer_cat) else 1
    declined = known & seen & (outcome == "declined")
    cat_key = cust[declined].astype(np.int64) * n_k + offer_cat[offer_pos[declined]]
    by_cat = np.bincount(cat_key, minlength=n_c * n_k).reshape(n_c, n_k)
    rows = np.repeat(np.arange(n_c), n_o)
    out["offer_cat_declines"] = by_cat[rows, np.tile(offer_cat, n_c)].astype(np.float64)
    return out


def _context_rows(
    context: Context | Mapping[str, Context] | None,
    customers: pd.Index,
    offers: pd.DataFrame,
    offer_raw_cat: np.ndarray,
    as_of: pd.Timestamp,
) -> dict[str, np.ndarray]:
    n_c, n_o = len(customers), len(offers)
    if n_c == 0 or n_o == 0:
        return {name: np.zeros(0) for name in CONTEXT_COLUMNS}
    if isinstance(context, Context) or context is None:
        per_customer = [context]
        repeat = n_c
    else:
        per_customer = [context.get(c) for c in customers]
        repeat = 1
    cols = {name: [] for name in CONTEXT_COLUMNS}
    offer_channels = offers["channels"].to_numpy()
    for ctx in per_customer:
        if ctx is None:
            for name in CONTEXT_COLUMNS:
                cols[name].append(np.full(n_o, np.nan))
            continue
        channel = ctx.channel
        cols["ctx_channel_code"].append(np.full(n_o, float(CONTACT_CHANNELS.index(channel))))
        hour = as_of.hour if ctx.hour_of_day is None else ctx.hour_of_day
        dow = as_of.dayofweek if ctx.day_of_week is None else ctx.day_of_week
        cols["ctx_hour_of_day"].append(np.full(n_o, float(hour)))
        cols["ctx_day_of_week"].append(np.full(n_o, float(dow)))
        cols["ctx_device_code"].append(np.full(n_o, float(DEVICES.index(ctx.device or "unknown"))))
        cols["ctx_session_length"].append(np.full(n_o, float(len(ctx.session_categories))))
        page = (offer_raw_cat == ctx.page_category) if ctx.page_category else np.zeros(n_o, dtype=bool)
        cols["ctx_page_category_match"].append(page.astype(np.float64))
        session = np.isin(offer_raw_cat, ctx.session_categories)
        cols["ctx_session_category_match"].append(session.astype(np.float64))
        on = np.fromiter((channel in chans for chans in offer_channels), dtype=bool, count=n_o)
        cols["ctx_offer_on_channel"].append(on.astype(np.float64))
    return {name: np.tile(np.concatenate(parts), repeat) for name, parts in cols.items()}


def build_candidate_features(
    customer_features: pd.DataFrame,
    offers: pd.DataFrame,
    contacts: pd.DataFrame,
    context: Context | Mapping[str, Context] | None,
    as_of: pd.Timestamp,
    *,
    categories: tuple[str, ...] = CATEGORIES,
) -> pd.DataFrame:
    """One row per (customer_id, offer_id), customer-major in the order of the inputs.

    `customer_features` is the output of `build_customer_features` (or its materialised rows);
    its contact-history columns are recomputed from `contacts` as of `as_of`. `context` is one
    `Context` for every customer, a mapping customer_id -> Context (missing ids get NaN context
    features), or None (all context features NaN).
    """
    as_of = check_as_of(as_of)
    customers = pd.Index(customer_features.index, name="customer_id")
    n_c, n_o = len(customers), len(offers)
    rows = np.repeat(np.arange(n_c), n_o)
    offer_idx = np.tile(np.arange(n_o), n_c)
    history = contact_history(contacts, customers, as_of)
    out: dict[str, object] = {
        "customer_id": pd.array(np.repeat(customers.to_numpy(dtype=object), n_o), dtype="str"),
        "offer_id": pd.array(np.tile(offers["offer_id"].to_numpy(dtype=object), n_c), dtype="str"),
    }
    for name in CUSTOMER_COLUMNS_FOR_CANDIDATES:
        values = history[name] if name in CONTACT_HISTORY_COLUMNS else _column(customer_features, name, n_c)
        out[name] = values[rows]

    # Offer's category: declared code (-1 undeclared) and the raw text for context matching.
    offer_raw_cat = offers["category"].to_numpy(dtype=object)
    declared = codes(offers["category"], categories).astype(np.int64)
    slot = np.where(declared >= 0, declared, len(categories))[offer_idx]
    views = _category_matrix(customer_features, ("page_views_30d", "product_views_30d"), categories)
    out["offer_cat_views_30d"] = views[rows, slot]
    out["offer_cat_searches_30d"] = _category_matrix(customer_features, ("searches_30d",), categories)[rows, slot]
    out["offer_cat_cart_adds_30d"] = _category_matrix(customer_features, ("cart_adds_30d",), categories)[rows, slot]
    bought = _category_matrix(customer_features, ("purchases_365d",), categories)[rows, slot]
    out["offer_cat_purchases_365d"] = bought
    total = _column(customer_features, "purchases_365d", n_c)[rows]
    out["offer_cat_purchase_share_365d"] = np.divide(bought, total, out=np.zeros(len(rows)), where=total > 0)
    recent = _category_matrix(customer_features, ("purchases_30d",), categories)[rows, slot]
    out["offer_cat_bought_30d"] = (recent > 0).astype(np.float64)
    top = _column(customer_features, "top_category_code", n_c)[rows]
    nxt = _column(customer_features, "next_category_code", n_c)[rows]
    out["offer_cat_is_top"] = ((top == declared[offer_idx]) & (declared[offer_idx] >= 0)).astype(np.float64)
    out["offer_cat_is_next"] = ((nxt == declared[offer_idx]) & (declared[offer_idx] >= 0)).astype(np.float64)
    raw_codes, _ = pd.factorize(offer_raw_cat)
    out.update(_exposures(contacts, customers, offers, raw_codes.astype(np.int64), as_of))

    kind = codes(offers["kind"], OFFER_KINDS).astype(np.int64)[offer_idx]
    for j, name in enumerate(OFFER_KINDS):
        out[f"offer_kind_{name}"] = (kind == j).astype(np.float64)
    out["offer_kind_code"] = kind.astype(np.float64)
    out["offer_category_code"] = declared[offer_idx].astype(np.float64)
    out["offer_value"] = offers["value"].to_numpy(dtype=np.float64)[offer_idx]
    out["offer_cost"] = offers["cost"].to_numpy(dtype=np.float64)[offer_idx]
    out.update(_context_rows(context, customers, offers, offer_raw_cat, as_of))
    return pd.DataFrame(out, columns=["customer_id", "offer_id", *CANDIDATE_COLUMNS])

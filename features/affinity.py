"""Customer x offer-category affinity: how much the customer browsed, bought and cared about the
offer's category, read from the customer's per-category columns (an undeclared category: none)."""

from __future__ import annotations

import numpy as np

from features.config import DECAY_HALF_LIVES, NEVER_DAYS
from features.customer_rows import CustomerArrays
from features.definitions import FeatureGroup

AFFINITY = FeatureGroup(
    "affinity",
    (
        "offer_cat_views_30d",
        "offer_cat_searches_30d",
        "offer_cat_cart_adds_30d",
        "offer_cat_views_7d",
        "offer_cat_searches_7d",
        "offer_cat_cart_adds_7d",
        "offer_cat_view_share_365d",
        *(f"offer_cat_browse_hl{h}d" for h in DECAY_HALF_LIVES),
        "offer_cat_days_since_browse",
        "offer_cat_days_since_purchase",
        "offer_cat_day_share_365d",
        "offer_cat_day_share_smoothed_365d",
        "offer_cat_main_day_share_365d",
        "offer_cat_purchases_365d",
        "offer_cat_purchase_share_365d",
        "offer_cat_bought_30d",
        "offer_cat_is_top",
        "offer_cat_is_next",
    ),
)
#: Prior of `offer_cat_main_day_share_365d`: days of interest credited to every category before
#: any is seen (a new customer is equally likely to care about each).
MAIN_DAY_PRIOR: float = 0.5


def affinity(cust: CustomerArrays, rows: np.ndarray, declared: np.ndarray) -> dict[str, np.ndarray]:
    """The `AFFINITY` columns of candidate rows: row `i` is customer `rows[i]` (a row of `cust`) with
    an offer of category code `declared[i]` (-1 undeclared)."""
    n = len(rows)
    categories = cust.categories
    out: dict[str, np.ndarray] = {}
    put = out.__setitem__
    slot = np.where(declared >= 0, declared, len(categories))
    put("offer_cat_views_30d", cust.matrix("page_views_30d", "product_views_30d")[rows, slot])
    put("offer_cat_searches_30d", cust.matrix("searches_30d")[rows, slot])
    put("offer_cat_cart_adds_30d", cust.matrix("cart_adds_30d")[rows, slot])
    put("offer_cat_views_7d", cust.matrix("page_views_7d", "product_views_7d")[rows, slot])
    put("offer_cat_searches_7d", cust.matrix("searches_7d")[rows, slot])
    put("offer_cat_cart_adds_7d", cust.matrix("cart_adds_7d")[rows, slot])
    year_views = cust.matrix("views_365d")[rows, slot]
    total_views = cust.columns["views_365d"][rows]
    put("offer_cat_view_share_365d", np.divide(year_views, total_views, out=np.zeros(n), where=total_views > 0))
    for h in DECAY_HALF_LIVES:
        put(f"offer_cat_browse_hl{h}d", cust.matrix(f"browse_hl{h}d")[rows, slot])
    undeclared = declared < 0
    for stem in ("days_since_browse", "days_since_purchase"):
        put(f"offer_cat_{stem}", np.where(undeclared, NEVER_DAYS, cust.matrix(stem)[rows, slot]))
    cat_days = cust.matrix("active_days_365d")
    all_days = cat_days.sum(axis=1)[rows]
    put("offer_cat_day_share_365d", np.divide(cat_days[rows, slot], all_days, out=np.zeros(n), where=all_days > 0))
    # Laplace-smoothed: a customer seen on one day is not 100% into that category (an undeclared
    # category gets 0).
    k = len(categories)
    put("offer_cat_day_share_smoothed_365d", np.where(undeclared, 0.0, (cat_days[rows, slot] + 1.0) / (all_days + k)))
    # Days the category led the customer's browsing and purchases, shrunk towards 1/k: the
    # posterior mean of the customer's interest in it (an undeclared category gets 0).
    main_days = cust.matrix("main_days_365d")
    all_main = main_days.sum(axis=1)[rows]
    put("offer_cat_main_day_share_365d",
        np.where(undeclared, 0.0, (main_days[rows, slot] + MAIN_DAY_PRIOR) / (all_main + MAIN_DAY_PRIOR * k)))
    bought = cust.matrix("purchases_365d")[rows, slot]
    put("offer_cat_purchases_365d", bought)
    total = cust.columns["purchases_365d"][rows]
    put("offer_cat_purchase_share_365d", np.divide(bought, total, out=np.zeros(n), where=total > 0))
    put("offer_cat_bought_30d", cust.matrix("purchases_30d")[rows, slot] > 0)
    put("offer_cat_is_top", (cust.columns["top_category_code"][rows] == declared) & (declared >= 0))
    put("offer_cat_is_next", (cust.columns["next_category_code"][rows] == declared) & (declared >= 0))
    return out

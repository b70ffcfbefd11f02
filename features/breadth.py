"""Category breadth seen from `as_of`: how many categories a customer buys in, the top one, and
the next one (browsed, never bought). Ties go to the category declared first."""

from __future__ import annotations

import numpy as np

from features.definitions import FeatureGroup

BREADTH = FeatureGroup(
    "breadth", ("categories_bought_365d", "top_category_share_365d", "top_category_code", "next_category_code")
)


def breadth(mats: dict[str, np.ndarray], purchases_365d: np.ndarray, categories: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The `BREADTH` columns from the behaviour's per-category matrices; a code is the position in
    `categories`, -1 if none (the text names are `features.labels`)."""
    n = len(purchases_365d)
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
    }

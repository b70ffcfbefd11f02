"""The customer's history with each offer: exposures and answers per (customer, offer), and per
(customer, offer category), from the contact log as the caller sees it (`ContactArrays`)."""

from __future__ import annotations

import numpy as np

from features.config import NEVER_DAYS
from features.contact_history import ContactArrays
from features.definitions import FeatureGroup
from features.offers import OfferArrays, offer_positions
from nbo.vocab import OUTCOMES

OFFER_HISTORY = FeatureGroup(
    "offer_history",
    (
        "offer_exposures",
        "offer_accepts",
        "offer_declines",
        "offer_ignores",
        "offer_days_since_exposure",
        "offer_cat_declines",
        "offer_cat_exposures",
        "offer_cat_accepts",
        "offer_cat_clicks",
    ),
)


def offer_history(c: ContactArrays, n_c: int, offers: OfferArrays) -> dict[str, np.ndarray]:
    """The `OFFER_HISTORY` columns of every (customer, offer) pair, customer-major: exposures and
    final outcomes per offer, and per offer category (same category text)."""
    n_o = len(offers)
    offer_cat = offers.category_group
    offer_pos = offer_positions(offers, c.offer_id[c.rows])
    known = offer_pos >= 0
    pair = c.cust[known] * n_o + offer_pos[known]
    size = n_c * n_o
    out = {"offer_exposures": np.bincount(pair, minlength=size).astype(np.float64)}
    outcome, final = c.outcome[known], c.final[known]
    for value, name in (("accepted", "offer_accepts"), ("declined", "offer_declines"), ("ignored", "offer_ignores")):
        hit = final & (outcome == OUTCOMES.index(value))
        out[name] = np.bincount(pair[hit], minlength=size).astype(np.float64)
    last = np.full(size, np.inf)
    np.minimum.at(last, pair, c.age[known])
    last[np.isinf(last)] = NEVER_DAYS
    out["offer_days_since_exposure"] = last
    # Exposures and answers per (customer, offer category): a click or an acceptance in a category
    # is interest in it. Contacts of offers absent from `offers` are not counted.
    n_k = int(offer_cat.max()) + 1 if len(offer_cat) else 1
    cat_key = c.cust[known] * n_k + offer_cat[offer_pos[known]]
    rows = np.repeat(np.arange(n_c), n_o)
    cols = np.tile(offer_cat, n_c)
    for name, hit in (
        ("offer_cat_declines", final & (outcome == OUTCOMES.index("declined"))),
        ("offer_cat_exposures", None),
        ("offer_cat_accepts", final & (outcome == OUTCOMES.index("accepted"))),
        ("offer_cat_clicks", final & (outcome == OUTCOMES.index("clicked"))),
    ):
        keys = cat_key if hit is None else cat_key[hit]
        by_cat = np.bincount(keys, minlength=n_c * n_k).reshape(n_c, n_k)
        out[name] = by_cat[rows, cols].astype(np.float64)
    return out

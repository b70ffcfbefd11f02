"""The customer's own choices of each offer (issue 20 item 3): what they accepted before, per
(customer, offer) and per (customer, offer category), from the contact log as the caller sees it.

A choice is a final `accepted` outcome observed before the moment of the row (`ContactArrays`:
`as_of` for the service and batch, each exposure's own time for training), dated by its contact's
`ts`. For a store that logs one decision per shopping occasion with the brands on the shelf as
candidates, these are the household's brand purchases.

- `offer_last_chosen`: 1 if this offer is the customer's most recent choice, else 0 (0 without any).
- `offer_cat_last_chosen`: 1 if it is the most recent choice among offers of its category.
- `offer_days_since_choice`: days since the customer last chose this offer (`NEVER_DAYS` if never).
- `offer_choice_share`: this offer's share of the customer's choices (0 without any).
- `offer_cat_choice_share`: its share of the customer's choices in its category (0 without any).
- `offer_loyalty`: the brand loyalty of Guadagni and Little (1983, "A logit model of brand choice
  calibrated on scanner data", Marketing Science 2(3)): an exponential smoothing of past choices
  over choice occasions, sum over the customer's choices of (1 - a) a^j for the j-th most recent
  (j = 0 the latest) that chose this offer, a = `LOYALTY_CARRYOVER`. Between the last choice and
  the share of all choices: recent choices weigh more, old ones are not forgotten.
- `customer_switch_rate`: the share of the customer's consecutive choices that changed offer
  (NaN with fewer than two choices); the same for every offer of the customer.

Choices of offers absent from the catalogue count in the customer's totals (shares, last choice)
but belong to no candidate. Ties in time (two choices at one moment) keep the contact log's order.
"""

from __future__ import annotations

import numpy as np

from features.config import LOYALTY_CARRYOVER, NEVER_DAYS
from features.contact_history import ContactArrays
from features.definitions import FeatureGroup
from features.offers import OfferArrays, offer_positions
from nbo.vocab import OUTCOMES

CHOICE_HISTORY = FeatureGroup(
    "choice_history",
    (
        "offer_last_chosen",
        "offer_cat_last_chosen",
        "offer_days_since_choice",
        "offer_choice_share",
        "offer_cat_choice_share",
        "offer_loyalty",
        "customer_switch_rate",
    ),
)

_ACCEPTED = OUTCOMES.index("accepted")


def choice_history(c: ContactArrays, n_c: int, offers: OfferArrays) -> dict[str, np.ndarray]:
    """The `CHOICE_HISTORY` columns of every (customer, offer) pair, customer-major."""
    n_o = len(offers)
    size = n_c * n_o
    chosen = np.flatnonzero(c.final & (c.outcome == _ACCEPTED))
    cust, age = c.cust[chosen], c.age[chosen]
    # Newest first within each customer (stable: equal ages keep the log's order).
    order = np.lexsort((age, cust))
    cust, age = cust[order], age[order]
    pos = offer_positions(offers, c.offer_id[c.rows[chosen][order]]) if len(chosen) else np.zeros(0, dtype=np.int64)
    known = pos >= 0
    cat = np.where(known, offers.category_group[np.maximum(pos, 0)], -1) if n_o else np.full(len(pos), -1)
    first = np.r_[True, cust[1:] != cust[:-1]] if len(cust) else np.zeros(0, dtype=bool)
    start = np.flatnonzero(first)
    rank = np.arange(len(cust)) - np.repeat(start, np.diff(np.r_[start, len(cust)]))  # 0 = latest
    pair = cust * n_o + np.maximum(pos, 0)

    out: dict[str, np.ndarray] = {}
    last = np.zeros(size)
    latest = first & known
    last[pair[latest]] = 1.0
    out["offer_last_chosen"] = last
    # Latest choice per (customer, category): the first row of each (customer, category) run in
    # newest-first order; categories of the catalogue's offers only.
    n_k = int(offers.category_group.max()) + 1 if n_o else 1
    cat_key = cust * n_k + cat
    cat_last = np.zeros(size)
    if known.any():
        idx = np.flatnonzero(known)
        _, first_in_cat = np.unique(cat_key[idx], return_index=True)
        rows = idx[first_in_cat]
        cat_last[pair[rows]] = 1.0
    out["offer_cat_last_chosen"] = cat_last
    since = np.full(size, np.inf)
    np.minimum.at(since, pair[known], age[known])
    since[np.isinf(since)] = NEVER_DAYS
    out["offer_days_since_choice"] = since
    per_offer = np.bincount(pair[known], minlength=size).astype(np.float64)
    total = np.bincount(cust, minlength=n_c).astype(np.float64)
    per_cat = np.bincount(cat_key[known], minlength=n_c * n_k).astype(np.float64)
    rows_c = np.repeat(np.arange(n_c), n_o)
    cat_of_pair = rows_c * n_k + np.tile(offers.category_group, n_c) if n_o else np.zeros(0, dtype=np.int64)
    out["offer_choice_share"] = np.divide(per_offer, total[rows_c], out=np.zeros(size), where=total[rows_c] > 0)
    denom = per_cat[cat_of_pair] if size else np.zeros(0)
    out["offer_cat_choice_share"] = np.divide(per_offer, denom, out=np.zeros(size), where=denom > 0)
    weight = (1.0 - LOYALTY_CARRYOVER) * LOYALTY_CARRYOVER ** rank.astype(np.float64)
    out["offer_loyalty"] = np.bincount(pair[known], weights=weight[known], minlength=size).astype(np.float64)
    # Switching: consecutive choices (adjacent rows of one customer) with different offers.
    same_customer = ~first[1:] if len(cust) else np.zeros(0, dtype=bool)
    ids = c.offer_id[c.rows[chosen][order]] if len(chosen) else np.zeros(0, dtype=object)
    changed = (ids[1:] != ids[:-1]) if len(cust) > 1 else np.zeros(0, dtype=bool)
    switches = np.bincount(cust[1:][same_customer], weights=changed[same_customer].astype(np.float64), minlength=n_c)
    pairs = np.bincount(cust[1:][same_customer], minlength=n_c).astype(np.float64)
    rate = np.divide(switches, pairs, out=np.full(n_c, np.nan), where=pairs > 0)
    out["customer_switch_rate"] = np.repeat(rate, n_o)
    return out

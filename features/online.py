"""The online path: one customer's rows in memory -> the same features as the batch run.

Both functions call the batch code (`build_customer_features`, `build_candidate_features`) on the
one customer's rows; there is no second implementation to drift.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from features.candidate import build_candidate_features
from features.config import Context, LifecycleRules
from features.customer import build_customer_features
from features.offers import OfferArrays
from nbo.data import Dataset, empty_table
from nbo.vocab import CATEGORIES


def customer_features_online(
    customer: pd.DataFrame,
    events: pd.DataFrame,
    contacts: pd.DataFrame,
    as_of: pd.Timestamp,
    consents: pd.DataFrame | None = None,
    *,
    rules: LifecycleRules | None = None,
    categories: tuple[str, ...] = CATEGORIES,
) -> pd.DataFrame:
    """The customer-feature row(s) of the customer(s) in `customer` from their own rows only."""
    data = Dataset(
        customers=customer,
        consents=empty_table("consents") if consents is None else consents,
        events=events,
        offers=empty_table("offers"),
        contacts=contacts,
    )
    return build_customer_features(data, as_of, rules=rules, categories=categories)


def candidate_features_online(
    customer_row: pd.DataFrame,
    offers: pd.DataFrame | OfferArrays,
    contacts: pd.DataFrame,
    context: Context | Mapping[str, Context] | None,
    as_of: pd.Timestamp,
    *,
    categories: tuple[str, ...] = CATEGORIES,
) -> pd.DataFrame:
    """Candidate features of one customer (a materialised or freshly computed row) x `offers`,
    with the request's context and the customer's live contact history. Prepare `offers` once with
    `prepare_offers` when the catalogue is reused across requests."""
    return build_candidate_features(customer_row, offers, contacts, context, as_of, categories=categories)

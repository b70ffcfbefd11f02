"""Training rows: the candidate features of each logged exposure, as the service would have built
them at the exposure's moment (the point-in-time join of the propensity training set)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.candidate import CANDIDATE_COLUMNS, CANDIDATE_POSITION, PAIR_COLUMNS, candidate_matrix
from features.config import check_as_of
from features.contact_history import encode_contacts_at
from features.context import CONTEXT, CONTEXT_FIT, context_columns, context_fit
from features.customer_rows import CUSTOMER_COLUMNS_FOR_CANDIDATES, CustomerRows
from features.offer_attributes import attribute_columns, decision_attribute_features
from features.offers import OFFER, OfferArrays, offer_columns, offer_positions, prepare_offers
from nbo.contract import ATTRIBUTE_PREFIX
from nbo.errors import NboError
from nbo.vocab import CATEGORIES


def build_exposure_features(
    customer_features: pd.DataFrame,
    offers: pd.DataFrame | OfferArrays,
    contacts: pd.DataFrame,
    exposures: pd.DataFrame,
    as_of: pd.Timestamp,
    *,
    categories: tuple[str, ...] = CATEGORIES,
    attributes: Sequence[str] = (),
    snapshot_rows: np.ndarray | None = None,
) -> pd.DataFrame:
    """Training rows: one per exposure (same order), the candidate features of its (customer, offer):
    customer columns from `customer_features` (the snapshot as of `as_of`), contact-history columns
    from `contacts` as of the exposure's own time (what the service sees: a materialised row plus
    the live contact log), and the context the exposure had: its channel, hour and weekday, and, when
    `exposures` has the columns `page_category` / `session_categories` (see
    `features.session.exposure_sessions`), its page and session (device: unknown).

    Equals `build_candidate_features(customer row, offers, contacts, Context(channel=...,
    hour_of_day=..., day_of_week=..., page_category=..., session_categories=...), exposure ts)` row
    for row (tested). Every exposure must be at or after `as_of` (the point-in-time join:
    features strictly before the exposure). Exposures of customers absent from `customer_features`
    (e.g. signed up after `as_of`) get NaN customer and customer x offer columns.

    `snapshot_rows`: the position in `customer_features` of each exposure's customer row (-1:
    none), when the frame holds one snapshot per (customer, day) rather than one row per customer
    (`build_customer_features_at`: a training set's days in one call); each exposure must then be
    at or after its own row's moment, and `as_of` at or before the earliest of them.
    """
    as_of = check_as_of(as_of)
    offers = prepare_offers(offers, categories)
    ts = exposures["ts"]
    early = ts < as_of
    if early.any():
        raise NboError(f"{int(early.sum())} exposure(s) happen before as_of {as_of}; features would see them")
    opos = offer_positions(offers, exposures["offer_id"].to_numpy(dtype=object))
    if (opos < 0).any():
        missing = exposures["offer_id"].to_numpy(dtype=object)[opos < 0][0]
        raise NboError(f"{int((opos < 0).sum())} exposure(s) of an offer not in offers, e.g. {missing!r}")
    customers = pd.Index(customer_features.index.to_numpy(dtype=object), dtype=object)
    exposure_customers = exposures["customer_id"].to_numpy(dtype=object)
    cpos = customers.get_indexer(exposure_customers) if snapshot_rows is None else np.asarray(snapshot_rows, dtype=np.int64)
    n_e = len(exposures)
    if len(customers) and n_e:
        # One row per opportunity (customer, moment): its customer's snapshot row, and the contact
        # log as the service would see it then (contacts strictly before it). Exposures sharing an
        # opportunity (every offer scored for one visit, as the closed-loop simulation asks) share
        # its customer and contact rows; only the exposed (opportunity, offer) rows are built.
        moments = ts.to_numpy(dtype="datetime64[ns]")
        moment_code, moment_values = pd.factorize(moments.view(np.int64))
        opportunity = pd.factorize(pd.factorize(exposure_customers)[0] * len(moment_values) + moment_code)[0]
        first = np.unique(opportunity, return_index=True)[1]  # each opportunity's first exposure
        per_opportunity = CustomerRows.from_frame(customer_features).take(np.where(cpos >= 0, cpos, 0)[first])
        seen = encode_contacts_at(contacts, exposure_customers[first], moments[first])
        rows = candidate_matrix(per_opportunity, offers, seen, None, as_of, categories=categories,
                                pairs=(opportunity, opos))
    else:
        rows = np.full((n_e, len(CANDIDATE_COLUMNS)), np.nan)
    column = CANDIDATE_POSITION
    unknown = cpos < 0
    if unknown.any():
        rows[np.ix_(unknown, [column[c] for c in (*CUSTOMER_COLUMNS_FOR_CANDIDATES, *PAIR_COLUMNS)])] = np.nan
    computed = {
        OFFER: offer_columns(offers, opos),  # offer columns do not depend on the customer
        CONTEXT: context_columns(
            offers,
            opos,
            channel=exposures["channel"].to_numpy(dtype=object),
            hour=ts.dt.hour.to_numpy(),
            day_of_week=ts.dt.day_of_week.to_numpy(),
            page_category=exposures["page_category"].to_numpy(dtype=object) if "page_category" in exposures else None,
            session_categories=(
                [tuple(s) for s in exposures["session_categories"]] if "session_categories" in exposures else ()
            ),
        ),
    }
    for group, values in computed.items():
        for name, v in group.check(values).items():
            rows[:, column[name]] = v
    fit = context_fit(rows[:, column["ctx_channel_code"]], rows[:, column["online_visit_share_365d"]])
    for name, v in CONTEXT_FIT.check(fit).items():
        rows[:, column[name]] = v
    frame = pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS))
    if attributes:
        # The attributes each exposure carried (`contacts.attr_<name>`), compared among the exposures
        # of its decision: what the request's `offer_attributes` give the service.
        values = np.column_stack([
            exposures[f"{ATTRIBUTE_PREFIX}{a}"].to_numpy(dtype=np.float64) if f"{ATTRIBUTE_PREFIX}{a}" in exposures
            else np.full(n_e, np.nan) for a in attributes
        ])
        decision = pd.factorize(exposures["decision_id"].to_numpy(dtype=object))[0]
        extra = decision_attribute_features(values, decision, attributes)
        frame = pd.concat([frame, pd.DataFrame({c: extra[c] for c in attribute_columns(attributes)})], axis=1)
    frame.insert(0, "offer_id", pd.array(offers.ids[opos], dtype="str"))
    frame.insert(0, "customer_id", pd.array(exposures["customer_id"].to_numpy(dtype=object), dtype="str"))
    return frame

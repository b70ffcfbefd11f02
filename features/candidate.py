"""Customer x offer candidate rows: the propensity model's inputs, one row per (customer, offer).

The same function serves training, batch scoring and one online request. It works on numpy arrays
(one row per customer x offer pair, customer-major) so one customer x 50 offers costs about a
millisecond. Contact-history columns are recomputed here from the `contacts` passed in, so the
online service can pass a materialised customer row together with the live contact log.

The columns are the declarations of `CANDIDATE_GROUPS`, in order: each group is computed by one
function of its own module (customer columns `features.customer_rows`, affinity
`features.affinity`, history with the offer `features.offer_history`, stage `features.stage`,
the offer `features.offers`, the request context `features.context`), and what a function
returns is checked against its group's declaration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np
import pandas as pd

from features.affinity import AFFINITY, affinity
from features.choice_history import CHOICE_HISTORY, choice_history
from features.config import Context, check_as_of
from features.contact_history import ContactArrays, contact_history, encode_contacts
from features.context import CONTEXT, CONTEXT_FIT, context_fit, context_rows
from features.customer_rows import (
    CANDIDATE_CUSTOMER,
    CUSTOMER_COLUMNS_FOR_CANDIDATES,
    CustomerArrays,
    CustomerRows,
    candidate_customer_block,
)
from features.definitions import FeatureGroup, numeric_columns, raise_mismatch
from features.offer_attributes import attribute_columns, attribute_values, decision_attribute_features
from features.offer_history import OFFER_HISTORY, offer_history
from features.offers import OFFER, OfferArrays, offer_columns, prepare_offers
from features.stage import STAGE, stage
from nbo.vocab import CATEGORIES

#: The groups of a candidate row, in column order.
CANDIDATE_GROUPS: tuple[FeatureGroup, ...] = (
    CANDIDATE_CUSTOMER, AFFINITY, OFFER_HISTORY, CHOICE_HISTORY, STAGE, OFFER, CONTEXT, CONTEXT_FIT,
)
#: Model inputs of the propensity model (`build_candidate_features` minus the two ids).
CANDIDATE_COLUMNS: tuple[str, ...] = numeric_columns(CANDIDATE_GROUPS)
#: The customer x offer columns (NaN in a training row of a customer without features).
PAIR_COLUMNS: tuple[str, ...] = numeric_columns((AFFINITY, OFFER_HISTORY, CHOICE_HISTORY, STAGE))
#: Position of each candidate column.
CANDIDATE_POSITION: Mapping[str, int] = MappingProxyType({name: j for j, name in enumerate(CANDIDATE_COLUMNS)})


def candidate_matrix(
    customer_features: pd.DataFrame | CustomerRows,
    offers: pd.DataFrame | OfferArrays,
    contacts: pd.DataFrame | Mapping[str, np.ndarray] | ContactArrays,
    context: Context | Mapping[str, Context] | None,
    as_of: pd.Timestamp,
    *,
    categories: tuple[str, ...] = CATEGORIES,
    dtype: type[np.floating] = np.float64,
    attributes: Sequence[str] = (),
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The candidate features as one array (rows customer-major, columns `CANDIDATE_COLUMNS`, then
    `attribute_columns(attributes)`: the decision-time offer attributes of `context`, each
    customer's offers being one decision; `features.offer_attributes`).

    What `build_candidate_features` returns without the DataFrame around it: the online service
    passes `dtype=np.float32` and feeds the result straight to the model (every value is computed
    in float64 and rounded once when written, exactly as `astype(np.float32)` of the float64
    matrix). `offers` may be prepared once with `prepare_offers` (saves ~0.5 ms per call).

    Each group's function returns its columns, checked against the group's declaration, and each
    column is written once into one preallocated block (column-major while filling, so every write
    is contiguous; one transposing copy at the end): nothing is stacked afterwards, and the customer
    columns are repeated over the offers as one block. For one customer the ids
    go to the contact code as a one-element array, not a `pd.Index` (~10 us per request).

    `pairs` = (customer rows, offer positions): only those (customer, offer) rows, in that order
    (the rows `[c * len(offers) + o]` of the full block, value for value): a training set needs one
    offer per exposure, not every offer of every exposure's customer.
    """
    as_of = check_as_of(as_of)
    offers = prepare_offers(offers, categories)
    ids = customer_features.ids if isinstance(customer_features, CustomerRows) else customer_features.index.to_numpy(dtype=object)
    # `encode_contacts` / `contact_history` read only `len` and `[0]` of a one-customer index.
    customers = ids if len(ids) == 1 else pd.Index(ids, name="customer_id", dtype=object)
    n_c, n_o = len(customers), len(offers)
    extra = attribute_columns(attributes)
    width = len(CANDIDATE_COLUMNS) + len(extra)
    if pairs is None:
        n = n_c * n_o
        rows = np.repeat(np.arange(n_c), n_o)
        offer_idx = np.tile(np.arange(n_o), n_c)
        pick = None
    else:  # attributes compare a customer's offers with each other: they need the whole block
        if extra:
            raise ValueError("candidate_matrix: pairs cannot be combined with attributes")
        rows, offer_idx = (np.asarray(a, dtype=np.int64) for a in pairs)
        n = len(rows)
        pick = rows * n_o + offer_idx  # their rows in the full (customer x offer) layout
    if not n:
        return np.empty((0, width), dtype=dtype)
    # Pre-encoded contacts (`encode_contacts_at`) carry each row's own moment; else seen from as_of.
    encoded = contacts if isinstance(contacts, ContactArrays) else encode_contacts(contacts, customers, as_of)
    history = contact_history(encoded, customers, as_of)
    cust = CustomerArrays(customer_features, categories)
    block = np.empty((width, n), dtype=dtype)  # one row per column while filling
    done = [CANDIDATE_CUSTOMER]

    def put(group: FeatureGroup, values: Mapping[str, np.ndarray], full: bool = False) -> None:
        for name, column in group.check(values).items():
            block[CANDIDATE_POSITION[name]] = column if pick is None or not full else column[pick]
        done.append(group)

    per_customer = candidate_customer_block(history, cust)  # (customer columns, customers), float64
    if pick is not None:
        block[: len(CUSTOMER_COLUMNS_FOR_CANDIDATES)] = per_customer[:, rows]
    else:
        block[: len(CUSTOMER_COLUMNS_FOR_CANDIDATES)] = per_customer if n_o == 1 else np.repeat(per_customer, n_o, axis=1)
    put(AFFINITY, affinity(cust, rows, offers.category_code[offer_idx]))
    put(OFFER_HISTORY, offer_history(encoded, n_c, offers), full=True)  # every (customer, offer)
    put(CHOICE_HISTORY, choice_history(encoded, n_c, offers), full=True)
    put(STAGE, stage(cust.columns["days_since_activity"][rows], cust.columns["purchases_total"][rows], offers.kind_code[offer_idx]))
    put(OFFER, offer_columns(offers, offer_idx))
    context_cols = context_rows(context, customers, offers, as_of)
    if pick is not None:
        context_cols = {name: column[pick] for name, column in context_cols.items()}
    put(CONTEXT, context_cols)
    # From the float64 inputs (not from `block`, which may be float32 already).
    put(CONTEXT_FIT, context_fit(context_cols["ctx_channel_code"], cust.columns["online_visit_share_365d"][rows]))
    if len(done) != len(CANDIDATE_GROUPS):  # a declared group left unwritten would be garbage
        raise_mismatch("candidate features", [g.name for g in done], [g.name for g in CANDIDATE_GROUPS])
    if extra:
        values = _request_attributes(context, customers, offers.ids, attributes)
        columns = decision_attribute_features(values, rows, attributes)
        for j, name in enumerate(extra):
            block[len(CANDIDATE_COLUMNS) + j] = columns[name]
    return np.ascontiguousarray(block.T)


def _request_attributes(
    context: Context | Mapping[str, Context] | None, customers: object, offer_ids: np.ndarray, names: Sequence[str]
) -> np.ndarray:
    """(customers x offers, names) attribute values of each customer's context, customer-major."""
    ids = [str(o) for o in offer_ids]
    if context is None or isinstance(context, Context):
        one = attribute_values(context.offer_attributes if context is not None else None, ids, names)
        return np.tile(one, (len(customers), 1))  # type: ignore[arg-type]
    parts = []
    for c in customers:  # type: ignore[attr-defined]
        ctx = context.get(c)
        parts.append(attribute_values(ctx.offer_attributes if ctx is not None else None, ids, names))
    return np.vstack(parts)


def build_candidate_features(
    customer_features: pd.DataFrame,
    offers: pd.DataFrame | OfferArrays,
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
    offers = prepare_offers(offers, categories)
    block = candidate_matrix(customer_features, offers, contacts, context, as_of, categories=categories)
    n_c, n_o = len(customer_features), len(offers)
    frame = pd.DataFrame(block, columns=list(CANDIDATE_COLUMNS))
    frame.insert(0, "offer_id", pd.array(np.tile(offers.ids, n_c), dtype="str"))
    customer_ids = np.repeat(customer_features.index.to_numpy(dtype=object), n_o)
    frame.insert(0, "customer_id", pd.array(customer_ids, dtype="str"))
    return frame

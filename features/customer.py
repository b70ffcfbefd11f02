"""The customer frame seen from `as_of`: RFM, behaviour, breadth, contact history, consents,
profile, lifecycle and the text labels, one row per customer.

One function of (data, as_of). Each family of columns is computed by one function of its own
module and declared once next to it (a `FeatureGroup`); `CUSTOMER_GROUPS` puts them in column
order, and the frame holds exactly the declared columns (anything else raises). Only rows with
`ts < as_of` are read; a contact outcome observed at or after `as_of` is still pending. Events
before a customer's signup count like any other event (the log is the truth; signup_ts only sets
tenure).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from features.arrays import age_days
from features.behaviour import BEHAVIOUR, behaviour
from features.breadth import BREADTH, breadth
from features.config import LifecycleRules, check_as_of
from features.consents import CONSENTS, consents
from features.contact_history import CONTACT_HISTORY, contact_history
from features.definitions import FeatureGroup, numeric_columns, raise_mismatch, text_columns
from features.events import encode_events, optional_column
from features.labels import LABELS, labels
from features.lifecycle import LIFECYCLE, lifecycle
from features.purchase_cycle import PURCHASE_CYCLE, purchase_cycle
from features.rfm import RFM, rfm
from nbo.data import Dataset
from nbo.vocab import CATEGORIES

#: Copied from the customers table.
PROFILE = FeatureGroup("profile", ("loyalty_member",))
#: The groups of the customer frame, in column order (numeric columns, then the text labels).
CUSTOMER_GROUPS: tuple[FeatureGroup, ...] = (RFM, BEHAVIOUR, BREADTH, CONTACT_HISTORY, CONSENTS, PROFILE,
                                             PURCHASE_CYCLE, LIFECYCLE, LABELS)


def customer_columns(categories: tuple[str, ...]) -> tuple[str, ...]:
    """The numeric columns of `build_customer_features`, in output order (from `CUSTOMER_GROUPS`)."""
    return numeric_columns(CUSTOMER_GROUPS, categories)


def customer_frame(columns: dict[str, object], index: pd.Index, categories: tuple[str, ...]) -> pd.DataFrame:
    """The frame of the computed `columns` in declared order; raises `FeatureDeclarationError` when
    a column was computed but not declared, or declared but not computed."""
    numeric, text = customer_columns(categories), text_columns(CUSTOMER_GROUPS)
    order = [*numeric, *text]
    if len(columns) != len(order) or not all(name in columns for name in order):
        raise_mismatch("customer features", columns, order)
    # The numeric columns as one float64 block (a dict of ~230 columns costs pandas a Series each:
    # 18 ms for the one row of a live decision), then the text labels.
    block = np.empty((len(index), len(numeric)))
    for j, name in enumerate(numeric):
        block[:, j] = columns[name]
    frame = pd.DataFrame(block, index=index, columns=pd.Index(numeric), copy=False)
    labels = pd.DataFrame({name: columns[name] for name in text}, index=index)
    return pd.concat([frame, labels], axis=1)


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
    ev = encode_events(events, index, as_of, categories)
    tenure = age_days(customers["signup_ts"], as_of)
    out: dict[str, object] = {}
    out.update(rfm(ev, n, tenure))
    behaviour_columns, mats = behaviour(ev, n, categories)
    out.update(behaviour_columns)
    out.update(breadth(mats, out["purchases_365d"], categories))  # type: ignore[arg-type]
    out.update(contact_history(data.contacts, index, as_of))
    out.update(consents(data.consents, index, as_of))
    # Optional in the contract: unknown (NaN) for everyone when the export has no such column.
    out["loyalty_member"] = optional_column(customers, "loyalty_member", "float64").to_numpy(dtype=np.float64)
    out.update(purchase_cycle(ev, n, out["recency_days"]))  # type: ignore[arg-type]
    out.update(lifecycle(out, rules))  # type: ignore[arg-type]
    out.update(labels(out, categories))
    return customer_frame(out, index, categories)

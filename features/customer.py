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

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from features.arrays import DAY_NS, RowsByOwner, age_days, codes, positions
from features.behaviour import BEHAVIOUR, behaviour
from features.breadth import BREADTH, breadth
from features.config import LifecycleRules, check_as_of
from features.consents import CONSENTS, consents, consents_at
from features.contact_history import CONTACT_HISTORY, ContactArrays, contact_history, encode_contacts, encode_contacts_at
from features.definitions import FeatureGroup, numeric_columns, raise_mismatch, text_columns
from features.events import (
    EventArrays,
    EventLog,
    encode_events,
    encode_events_at,
    event_log,
    events_before,
    optional_column,
)
from features.labels import LABELS, labels
from features.lifecycle import LIFECYCLE, lifecycle
from features.purchase_cycle import PURCHASE_CYCLE, purchase_cycle
from features.rfm import RFM, rfm
from nbo.data import Dataset
from nbo.vocab import CATEGORIES, EVENT_CHANNELS, EVENT_TYPES

#: Customers per piece of `customer_feature_chunks`: ~430 float64 columns make ~170 MB of output
#: per piece at 50,000 customers (plus the feature code's per-piece work arrays).
CHUNK_CUSTOMERS = 50_000

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
    # Column-major, so that each column is contiguous: filled and handed to Arrow (Parquet)
    # without strided copies (a third of the write's CPU at 200k customers).
    block = np.empty((len(numeric), len(index)))
    for j, name in enumerate(numeric):
        block[j] = columns[name]
    frame = pd.DataFrame(block.T, index=index, columns=pd.Index(numeric), copy=False)
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
    events = data.events
    if customer_ids is not None:
        events = events[events["customer_id"].isin(index)]
    ev = encode_events(events, index, as_of, categories)
    tenure = age_days(customers["signup_ts"], as_of)
    return _customer_frame(ev, tenure, encode_contacts(data.contacts, index, as_of),
                           consents(data.consents, index, as_of), customers, index, rules, categories)


def customer_feature_chunks(
    data: Dataset,
    as_of: pd.Timestamp,
    *,
    chunk_customers: int = CHUNK_CUSTOMERS,
    rules: LifecycleRules | None = None,
    categories: tuple[str, ...] = CATEGORIES,
) -> Iterator[pd.DataFrame]:
    """`build_customer_features(data, as_of)` in pieces of at most `chunk_customers` rows, in the
    order of `data.customers`: concatenated, the pieces equal the whole frame value for value
    (tested). At least one piece (empty when no customer signed up before `as_of`).

    What `nbo features` writes, one Parquet row group per piece, so that memory is bounded by the
    data, the events' codes and one piece's output instead of the whole frame (~3.4 GB of float64
    at 1M customers). The events and contacts are grouped by customer once (a stable sort of
    their customer positions: a customer's rows stay in table order, so every per-customer sum
    adds the same numbers in the same order); each piece reads its customers' contiguous slice,
    never the whole table.
    """
    if chunk_customers < 1:
        raise ValueError(f"chunk_customers must be at least 1, not {chunk_customers}")
    as_of = check_as_of(as_of)
    rules = rules or LifecycleRules()
    customers = data.customers
    customers = customers[(customers["signup_ts"] < as_of).to_numpy()]
    index = pd.Index(customers["customer_id"].astype("str").to_numpy(), name="customer_id", dtype="str")
    n = len(index)
    events = _GroupedEvents(data.events, index, as_of, categories)
    contacts = encode_contacts(data.contacts, index, as_of)
    contacts_by = RowsByOwner(contacts.cust, n)
    consent = consents(data.consents, index, as_of)
    tenure = age_days(customers["signup_ts"], as_of)
    for a in range(0, max(n, 1), chunk_customers):
        b = min(a + chunk_customers, n)
        picked = _slice(contacts_by, a, b)
        chunk_contacts = ContactArrays(
            cust=contacts.cust[picked] - a, age=contacts.age[picked], channel=contacts.channel[picked],
            outcome=contacts.outcome[picked], final=contacts.final[picked], offer_id=contacts.offer_id,
            rows=contacts.rows[picked],
        )
        yield _customer_frame(events.chunk(a, b), tenure[a:b], chunk_contacts,
                              {name: column[a:b] for name, column in consent.items()},
                              customers.iloc[a:b], index[a:b], rules, categories)


def _slice(by: RowsByOwner, a: int, b: int) -> np.ndarray:
    """The rows (positions in the grouped table) of owners a..b-1, owner-major, table order within one."""
    if b <= a:
        return by.order[:0]
    return by.order[by.start[a]:by.stop[b - 1]]


class _GroupedEvents:
    """The events before `as_of` of the customers of `index`, coded once and grouped by customer:
    `chunk(a, b)` is `encode_events` of customers a..b-1 (their rows grouped by customer)."""

    def __init__(self, events: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp, categories: tuple[str, ...]) -> None:
        self.as_of = as_of
        cust = positions(index, events["customer_id"])
        self.ts = events["ts"].to_numpy(dtype="datetime64[ns]")
        cust = np.where(age_days(self.ts, as_of) > 0, cust, -1)  # at or after as_of, or no time: never read
        self.by = RowsByOwner(cust, len(index))
        del cust
        category = optional_column(events, "category")
        self.type = codes(events["type"], EVENT_TYPES)
        self.channel = codes(optional_column(events, "channel"), EVENT_CHANNELS)
        self.cat = codes(category, categories)
        self.amount = optional_column(events, "amount", "float64").to_numpy(dtype=np.float64, na_value=np.nan)
        self.raw_cat = category.array

    def chunk(self, a: int, b: int) -> EventArrays:
        rows = _slice(self.by, a, b)
        sizes = self.by.stop[a:b] - self.by.start[a:b]
        return EventArrays(
            cust=np.repeat(np.arange(b - a, dtype=np.int64), sizes),
            age=age_days(self.ts[rows], self.as_of),
            type=self.type[rows],
            channel=self.channel[rows],
            cat=self.cat[rows],
            amount=np.nan_to_num(self.amount[rows], nan=0.0),
            raw_cat=self.raw_cat,
            rows=rows,
        )


def build_customer_features_at(
    data: Dataset,
    customer_ids: np.ndarray,
    moments: np.ndarray,
    *,
    rules: LifecycleRules | None = None,
    categories: tuple[str, ...] = CATEGORIES,
    log: EventLog | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The customer frame of many (customer, as_of) rows at once: row `i` is
    `build_customer_features(data, moments[i], [customer_ids[i]])`, value for value (tested).

    What a point-in-time training set needs for its exposures (one snapshot per customer and
    exposure day) without one computation per day: every row gets its customer's own events,
    contacts and consents seen from its own moment, and the same feature functions run once over
    all rows. Returns (frame, kept): the frame holds the rows whose customer had signed up before
    its moment (indexed by customer_id, which may repeat), `kept` their positions among the
    requests. `log`: `customer_event_log(data, categories)`, when the caller asks several times
    (it codes and groups the events table once).
    """
    rules = rules or LifecycleRules()
    moments = np.asarray(moments, dtype="datetime64[ns]").view(np.int64)
    table = data.customers
    everyone = _everyone(data)
    owner = positions(everyone, np.asarray(customer_ids, dtype=object))
    signup = table["signup_ts"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    signed = np.zeros(len(owner), dtype=bool)
    signed[owner >= 0] = ~np.isnat(table["signup_ts"].to_numpy()[owner[owner >= 0]])
    signed[signed] = signup[owner[signed]] < moments[signed]
    kept = np.flatnonzero(signed)
    owner, moments = owner[kept], moments[kept]
    customers = table.iloc[owner]
    index = pd.Index(everyone[owner], name="customer_id", dtype="str")
    log = log if log is not None else customer_event_log(data, categories)
    ev = encode_events_at(log, owner, moments)
    tenure = (moments - signup[owner]) / DAY_NS
    contacts = encode_contacts_at(data.contacts, index.to_numpy(dtype=object), moments.view("datetime64[ns]"))
    frame = _customer_frame(ev, tenure, contacts, consents_at(data.consents, everyone, owner, moments),
                            customers, index, rules, categories)
    return frame, kept


def customer_event_log(data: Dataset, categories: tuple[str, ...] = CATEGORIES) -> EventLog:
    """The events of `data` coded and grouped by customer once, for `build_customer_features_at`
    and `customer_event_counts`."""
    return event_log(data.events, _everyone(data), categories)


def customer_event_counts(data: Dataset, log: EventLog, customer_ids: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """How many event rows `build_customer_features_at` reads for each (customer, moment): its
    work, to cut a long list of requests into pieces of bounded memory."""
    owner = positions(_everyone(data), np.asarray(customer_ids, dtype=object))
    counts = np.zeros(len(owner), dtype=np.int64)
    known = owner >= 0
    counts[known] = events_before(log, owner[known], np.asarray(moments, dtype="datetime64[ns]").view(np.int64)[known])
    return counts


def _everyone(data: Dataset) -> pd.Index:
    return pd.Index(data.customers["customer_id"].astype("str").to_numpy(), dtype="str")


def _customer_frame(
    ev: EventArrays,
    tenure: np.ndarray,
    contacts: ContactArrays,
    consent: dict[str, np.ndarray],
    customers: pd.DataFrame,
    index: pd.Index,
    rules: LifecycleRules,
    categories: tuple[str, ...],
) -> pd.DataFrame:
    """The customer frame from the encoded rows of its customers (`ev.cust`, `contacts.cust`: row
    positions in `index`)."""
    n = len(index)
    out: dict[str, object] = {}
    out.update(rfm(ev, n, tenure))
    behaviour_columns, mats = behaviour(ev, n, categories)
    out.update(behaviour_columns)
    out.update(breadth(mats, out["purchases_365d"], categories))  # type: ignore[arg-type]
    out.update(contact_history(contacts, index, pd.NaT))
    out.update(consent)
    # Optional in the contract: unknown (NaN) for everyone when the export has no such column.
    out["loyalty_member"] = optional_column(customers, "loyalty_member", "float64").to_numpy(dtype=np.float64)
    out.update(purchase_cycle(ev, n, out["recency_days"]))  # type: ignore[arg-type]
    out.update(lifecycle(out, rules))  # type: ignore[arg-type]
    out.update(labels(out, categories))
    return customer_frame(out, index, categories)

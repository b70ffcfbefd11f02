"""Contact pressure and response history per customer, seen from `as_of` (or from each row's own
moment, for training rows). Shared by the customer frame and the candidate rows, which recompute
it from the live contact log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.arrays import DAY_NS, age_days, codes, column_values, count, is_any, last_age, positions
from features.config import CONTACT_WINDOWS, PRESSURE_HALF_LIFE
from features.definitions import FeatureGroup
from nbo.vocab import CONTACT_CHANNELS, FINAL_OUTCOMES, OUTBOUND_CHANNELS, OUTCOMES

_CONTACT_CHANNEL = {c: i for i, c in enumerate(CONTACT_CHANNELS)}

CONTACT_HISTORY = FeatureGroup(
    "contact_history",
    (
        *(name for w in CONTACT_WINDOWS for name in (*(f"contacts_{ch}_{w}d" for ch in CONTACT_CHANNELS), f"contacts_{w}d")),
        *(f"pressure_{ch}" for ch in CONTACT_CHANNELS),
        "pressure_total",
        "outbound_contacts_7d",
        "days_since_last_contact",
        "contacts_total",
        "finalised_total",
        "accepts_total",
        "declines_total",
        "ignores_total",
        "pending_contacts",
        "acceptance_rate",
    ),
)
#: The contact-history columns (recomputed from the live contact log by the candidate builder).
CONTACT_HISTORY_COLUMNS: tuple[str, ...] = CONTACT_HISTORY.columns()


@dataclass(frozen=True)
class ContactArrays:
    """Contacts before as_of of the customers of an index, as arrays (shared by customer and pair features)."""

    cust: np.ndarray
    age: np.ndarray
    channel: np.ndarray
    outcome: np.ndarray  # codes into OUTCOMES
    final: np.ndarray
    offer_id: object  # the full offer_id column; `rows` selects the kept contacts
    rows: np.ndarray


def encode_contacts(contacts: pd.DataFrame | Mapping[str, np.ndarray], index: pd.Index, as_of: pd.Timestamp) -> ContactArrays:
    """A contact counts if `ts < as_of`; it is final if its outcome is final and observed before as_of.

    `contacts`: a contacts table, or its columns as numpy arrays (object ids, datetime64[ns] times):
    the online path keeps each customer's contacts as arrays and skips the DataFrame."""
    cust = positions(index, contacts["customer_id"])
    age = age_days(contacts["ts"], as_of)
    keep = (cust >= 0) & (age > 0)
    outcome = codes(contacts["outcome"], OUTCOMES)[keep]
    seen = age_days(contacts["outcome_ts"], as_of)[keep] > 0  # NaN (pending) compares False
    return ContactArrays(
        cust=cust[keep].astype(np.int64, copy=False),
        age=age[keep],
        channel=codes(contacts["channel"], CONTACT_CHANNELS)[keep],
        outcome=outcome,
        final=seen & is_any(outcome, [OUTCOMES.index(o) for o in FINAL_OUTCOMES]),
        offer_id=column_values(contacts["offer_id"]),
        rows=np.flatnonzero(keep),
    )


def encode_contacts_at(
    contacts: pd.DataFrame, customer_ids: np.ndarray, moments: np.ndarray
) -> ContactArrays:
    """Contacts seen from a moment of each row's own: row `i` sees the contacts of `customer_ids[i]`
    with `ts < moments[i]`, final when their outcome was observed before `moments[i]`.

    What `encode_contacts(contacts, index, as_of)` does for one `as_of`, per row: training asks
    it for each logged exposure at the exposure's time (the service sees the live contact log at
    request time), and the result feeds the same `contact_history` and pair code.
    """
    ids = np.asarray(customer_ids, dtype=object)
    n = len(ids)
    uniq, inverse = np.unique(ids, return_inverse=True) if n else (np.empty(0, dtype=object), np.empty(0, dtype=np.int64))
    owner = positions(pd.Index(uniq, dtype=object), contacts["customer_id"]) if n else np.full(len(contacts), -1)
    mine = np.flatnonzero(owner >= 0)
    order = mine[np.argsort(owner[mine], kind="stable")]  # contact rows grouped by customer
    group = owner[order]
    start = np.searchsorted(group, np.arange(len(uniq)), side="left")
    count = (np.searchsorted(group, np.arange(len(uniq)), side="right") - start)[inverse]
    row = np.repeat(np.arange(n), count)
    offset = np.arange(len(row)) - np.repeat(np.cumsum(count) - count, count)
    pair = order[np.repeat(start[inverse], count) + offset]  # contact row of each (row, contact) pair
    moment = np.asarray(moments, dtype="datetime64[ns]").view(np.int64)[row]
    ts = np.asarray(contacts["ts"], dtype="datetime64[ns]").view(np.int64)[pair]
    age = (moment - ts) / DAY_NS
    keep = age > 0
    row, pair, age, moment = row[keep], pair[keep], age[keep], moment[keep]
    outcome = codes(contacts["outcome"], OUTCOMES)[pair]
    answered = np.asarray(contacts["outcome_ts"], dtype="datetime64[ns]")[pair]
    seen = ~np.isnat(answered) & (answered.view(np.int64) < moment)
    return ContactArrays(
        cust=row.astype(np.int64, copy=False),
        age=age,
        channel=codes(contacts["channel"], CONTACT_CHANNELS)[pair],
        outcome=outcome,
        final=seen & is_any(outcome, [OUTCOMES.index(o) for o in FINAL_OUTCOMES]),
        offer_id=column_values(contacts["offer_id"]),
        rows=pair,
    )


def contact_history(contacts: pd.DataFrame | ContactArrays, index: pd.Index, as_of: pd.Timestamp) -> dict[str, np.ndarray]:
    """Contact pressure and response history per customer of `index`, seen from `as_of`.

    A contact counts if its `ts < as_of`; it is finalised if its outcome is final and was observed
    before `as_of`; otherwise it is pending.
    """
    c = contacts if isinstance(contacts, ContactArrays) else encode_contacts(contacts, index, as_of)
    n = len(index)
    cust, age, channel = c.cust, c.age, c.channel
    out: dict[str, np.ndarray] = {}
    # Per (channel, customer) in one bincount per window instead of one per channel (channel-major,
    # so each feature column is contiguous). A bin adds its rows in row order, as the bincount of
    # that channel's rows alone does: the same numbers to the last bit.
    k = len(CONTACT_CHANNELS)
    known = channel >= 0
    key = channel[known].astype(np.int64) * n + cust[known]
    known_age = age[known]
    for w in CONTACT_WINDOWS:
        per = np.bincount(key[known_age <= w], minlength=n * k).reshape(k, n).astype(np.float64)
        for ch, code in _CONTACT_CHANNEL.items():
            out[f"contacts_{ch}_{w}d"] = per[code]
        out[f"contacts_{w}d"] = count(cust[age <= w], n)
    decayed = 0.5 ** (age / PRESSURE_HALF_LIFE)
    # float64 also when there is no contact at all (NumPy then returns integers)
    per = np.bincount(key, weights=decayed[known], minlength=n * k).reshape(k, n).astype(np.float64, copy=False)
    for ch, code in _CONTACT_CHANNEL.items():
        out[f"pressure_{ch}"] = per[code]
    out["pressure_total"] = count(cust, n, decayed)
    outbound = is_any(channel, [_CONTACT_CHANNEL[ch] for ch in OUTBOUND_CHANNELS])
    out["outbound_contacts_7d"] = count(cust[outbound & (age <= 7)], n)
    out["days_since_last_contact"] = last_age(cust, age, n)
    out["contacts_total"] = count(cust, n)
    out["finalised_total"] = count(cust[c.final], n)
    for value, name in (("accepted", "accepts_total"), ("declined", "declines_total"), ("ignored", "ignores_total")):
        out[name] = count(cust[c.final & (c.outcome == OUTCOMES.index(value))], n)
    out["pending_contacts"] = out["contacts_total"] - out["finalised_total"]
    fin = out["finalised_total"]
    out["acceptance_rate"] = np.divide(out["accepts_total"], fin, out=np.zeros(n), where=fin > 0)
    return out

"""Hand-built, contract-valid tables for feature tests, and a seeded synthetic dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbo.contract import TABLES
from nbo.data import Dataset, empty_table
from nbo.validation import validate_frame
from features import build_candidate_features, build_customer_features
from nbo.vocab import CONTACT_CHANNELS, EVENT_CHANNELS, OFFER_KINDS, OUTCOMES

AS_OF = pd.Timestamp("2025-06-01")


def ago(days: float, as_of: pd.Timestamp = AS_OF) -> pd.Timestamp:
    """The moment `days` days before `as_of` (negative: after it)."""
    return as_of - pd.Timedelta(days=days)


_DEFAULTS = {
    "customers": {"region": "north", "age_band": "25-34", "acquisition_channel": "web", "loyalty_member": False},
    "events": {"channel": "web", "category": None, "product_id": None, "amount": None},
    "contacts": {"channel": "email", "propensity": 0.5, "outcome": "pending", "outcome_ts": None},
    "consents": {"granted": True},
    "offers": {
        "kind": "cross_sell",
        "channels": ("web", "app", "email"),
        "value": 10.0,
        "cost": 0.1,
        "valid_from": pd.Timestamp("2025-01-01"),
        "valid_to": pd.Timestamp("2026-01-01"),
        "eligibility": None,
    },
}


def buy_row(cid: str, days: float, amount: float | None, category: str | None = "travel", channel: str = "web") -> dict:
    """An events row: a purchase `days` before AS_OF."""
    return {"customer_id": cid, "ts": ago(days), "type": "purchase", "category": category, "amount": amount, "channel": channel}


def event_row(cid: str, days: float, etype: str, category: str | None = None, channel: str = "web") -> dict:
    """An events row of type `etype`, `days` before AS_OF."""
    return {"customer_id": cid, "ts": ago(days), "type": etype, "category": category, "channel": channel}


def table(name: str, rows: list[dict]) -> pd.DataFrame:
    """A validated table from a few dicts; columns not given take harmless defaults."""
    if not rows:
        return empty_table(name)
    full = [{**_DEFAULTS.get(name, {}), **row} for row in rows]
    if name == "contacts":
        for i, row in enumerate(full):
            row.setdefault("decision_id", f"d{i}")
    if name == "offers":
        for row in full:
            row.setdefault("name", row["offer_id"])
    frame = pd.DataFrame(full)
    return validate_frame(TABLES[name], frame)


def dataset(
    customers: list[dict],
    events: list[dict] = (),
    contacts: list[dict] = (),
    consents: list[dict] = (),
    offers: list[dict] = (),
) -> Dataset:
    return Dataset(
        customers=table("customers", list(customers)),
        events=table("events", list(events)),
        contacts=table("contacts", list(contacts)),
        consents=table("consents", list(consents)),
        offers=table("offers", list(offers)),
    )


CATS = ("travel", "books", "electronics", "fashion", "home", "beauty", "sports", "grocery")


def synthetic(customers: int = 60, events: int = 3000, contacts: int = 600, seed: int = 0) -> Dataset:
    """A seeded, contract-valid dataset with every event type, unknown categories and NaN amounts."""
    rng = np.random.default_rng(seed)
    start = AS_OF - pd.Timedelta(days=500)
    span = 560 * 86_400  # seconds; reaches past AS_OF so that leakage is possible
    ids = np.array([f"c{i:04d}" for i in range(customers)], dtype=object)
    cust = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_ts": start + pd.to_timedelta(rng.integers(0, 480 * 86_400, customers), unit="s"),
            "region": "north",
            "age_band": None,
            "acquisition_channel": rng.choice(EVENT_CHANNELS, customers),
            "loyalty_member": rng.random(customers) < 0.3,
        }
    )
    types = np.array(["page_view", "search", "product_view", "add_to_cart", "purchase", "store_visit", "complaint", "call"])
    etype = rng.choice(types, events, p=[0.3, 0.1, 0.2, 0.1, 0.2, 0.05, 0.025, 0.025])
    cats = np.array([*CATS, "garden", None], dtype=object)
    amount = np.where(etype == "purchase", rng.gamma(2.0, 40.0, events).round(2), np.nan)
    amount[(etype == "purchase") & (rng.random(events) < 0.1)] = np.nan
    ev = pd.DataFrame(
        {
            "customer_id": rng.choice(ids, events),
            "ts": start + pd.to_timedelta(rng.integers(0, span, events), unit="s"),
            "channel": rng.choice(EVENT_CHANNELS, events),
            "type": etype,
            "category": rng.choice(cats, events),
            "product_id": None,
            "amount": amount,
        }
    )
    n_offers = 12
    offers = pd.DataFrame(
        {
            "offer_id": [f"o{i:02d}" for i in range(n_offers)],
            "name": [f"offer {i}" for i in range(n_offers)],
            "category": [[*CATS, "garden"][i % 9] for i in range(n_offers)],
            "kind": [OFFER_KINDS[i % len(OFFER_KINDS)] for i in range(n_offers)],
            "channels": [tuple(CONTACT_CHANNELS[: 1 + i % 6]) for i in range(n_offers)],
            "value": rng.uniform(1, 50, n_offers).round(2),
            "cost": rng.uniform(0, 1, n_offers).round(2),
            "valid_from": pd.Timestamp("2024-01-01"),
            "valid_to": pd.Timestamp("2027-01-01"),
            "eligibility": None,
        }
    )
    cts = start + pd.to_timedelta(rng.integers(0, span, contacts), unit="s")
    outcome = rng.choice(OUTCOMES, contacts)
    delay = pd.to_timedelta(rng.integers(60, 20 * 86_400, contacts), unit="s")
    co = pd.DataFrame(
        {
            "decision_id": [f"d{i:05d}" for i in range(contacts)],
            "customer_id": rng.choice(ids, contacts),
            "offer_id": rng.choice(offers["offer_id"], contacts),
            "channel": rng.choice(CONTACT_CHANNELS, contacts),
            "ts": cts,
            "propensity": rng.uniform(0.05, 1.0, contacts),
            "outcome": outcome,
            "outcome_ts": (cts + delay).where(outcome != "pending"),
        }
    )
    cons = pd.DataFrame(
        {
            "customer_id": rng.choice(ids, 200),
            "channel": rng.choice(CONTACT_CHANNELS, 200),
            "granted": rng.random(200) < 0.7,
            "ts": start + pd.to_timedelta(rng.choice(span, 200, replace=False), unit="s"),
        }
    ).drop_duplicates(["customer_id", "channel", "ts"])
    raw = {"customers": cust, "events": ev, "offers": offers, "contacts": co, "consents": cons}
    return Dataset(**{k: validate_frame(TABLES[k], v) for k, v in raw.items()})


CANDIDATE_OFFERS = [
    {"offer_id": "trip", "category": "travel", "kind": "cross_sell", "channels": ("web", "email"), "value": 40.0, "cost": 0.5},
    {"offer_id": "trip2", "category": "travel", "kind": "upsell", "channels": ("email",), "value": 20.0, "cost": 0.1},
    {"offer_id": "book", "category": "books", "kind": "retention", "channels": ("app",), "value": 5.0, "cost": 0.0},
    {"offer_id": "seed", "category": "garden", "kind": "loyalty", "channels": ("web",), "value": 1.0, "cost": 0.0},
]


def candidate_data() -> Dataset:
    """Two customers and four offers (one of an undeclared category) with a known history."""
    c = "a"
    return dataset(
        customers=[{"customer_id": c, "signup_ts": ago(400)}, {"customer_id": "b", "signup_ts": ago(30)}],
        events=[
            {"customer_id": c, "ts": ago(3), "type": "page_view", "category": "travel"},
            {"customer_id": c, "ts": ago(4), "type": "product_view", "category": "travel"},
            {"customer_id": c, "ts": ago(40), "type": "product_view", "category": "travel"},  # outside 30d
            {"customer_id": c, "ts": ago(5), "type": "search", "category": "travel"},
            {"customer_id": c, "ts": ago(6), "type": "add_to_cart", "category": "travel"},
            {"customer_id": c, "ts": ago(10), "type": "purchase", "category": "travel", "amount": 10.0},
            {"customer_id": c, "ts": ago(100), "type": "purchase", "category": "travel", "amount": 10.0},
            {"customer_id": c, "ts": ago(200), "type": "purchase", "category": "books", "amount": 10.0},
            {"customer_id": c, "ts": ago(2), "type": "page_view", "category": "garden"},
        ],
        contacts=[
            {"customer_id": c, "offer_id": "trip", "ts": ago(10), "outcome": "declined", "outcome_ts": ago(9)},
            {"customer_id": c, "offer_id": "trip", "ts": ago(3), "outcome": "pending"},
            {"customer_id": c, "offer_id": "trip2", "ts": ago(30), "outcome": "declined", "outcome_ts": ago(29)},
            {"customer_id": c, "offer_id": "book", "ts": ago(20), "outcome": "accepted", "outcome_ts": ago(19)},
            {"customer_id": c, "offer_id": "book", "ts": ago(25), "outcome": "ignored", "outcome_ts": ago(24)},
            {"customer_id": c, "offer_id": "book", "ts": ago(1), "outcome": "declined", "outcome_ts": AS_OF},  # pending
            {"customer_id": c, "offer_id": "seed", "ts": AS_OF, "outcome": "accepted", "outcome_ts": ago(-1)},  # ignored
        ],
        offers=CANDIDATE_OFFERS,
    )


def candidate_rows(context=None) -> pd.DataFrame:
    """The candidate rows of `candidate_data()`, indexed by (customer_id, offer_id)."""
    data = candidate_data()
    customers = build_customer_features(data, AS_OF)
    out = build_candidate_features(customers, data.offers, data.contacts, context, AS_OF)
    return out.set_index(["customer_id", "offer_id"])


@pytest.fixture(scope="session")
def synth() -> Dataset:
    return synthetic()

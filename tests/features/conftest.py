"""Hand-built, contract-valid tables for feature tests, and a seeded synthetic dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbo.contract import TABLES
from nbo.data import Dataset, empty_table, validate_frame
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


@pytest.fixture(scope="session")
def synth() -> Dataset:
    return synthetic()

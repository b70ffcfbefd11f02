"""A hand-built, contract-valid dataset of two customers and two offers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nbo.contract import TABLES
from nbo.data import Dataset, write_dataset
from nbo.validation import validate_frame


def tiny_dataset() -> Dataset:
    raw = {
        "customers": pd.DataFrame(
            {
                "customer_id": ["c1", "c2"],
                "signup_ts": ["2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z"],
                "region": ["north", "south"],
                "age_band": ["25-34", None],
                "acquisition_channel": ["web", "store"],
                "loyalty_member": [True, False],
            }
        ),
        "consents": pd.DataFrame(
            {
                "customer_id": ["c1", "c1", "c2"],
                "channel": ["email", "email", "sms"],
                "granted": [True, False, True],
                "ts": ["2025-01-01T00:00:00Z", "2025-03-01T00:00:00Z", "2025-02-01T00:00:00Z"],
            }
        ),
        "events": pd.DataFrame(
            {
                "customer_id": ["c1", "c1", "c2"],
                "ts": ["2025-02-01T10:00:00Z", "2025-02-01T10:05:00Z", "2025-02-10T12:00:00Z"],
                "channel": ["web", "web", "store"],
                "type": ["page_view", "purchase", "purchase"],
                "category": ["travel", "travel", "books"],
                "product_id": [None, "p1", "p2"],
                "amount": [None, 120.0, 15.5],
            }
        ),
        "offers": pd.DataFrame(
            {
                "offer_id": ["o1", "o2"],
                "name": ["City break", "Book club"],
                "category": ["travel", "books"],
                "kind": ["cross_sell", "loyalty"],
                "channels": [("web", "app", "email"), ("email",)],
                "value": [40.0, 10.0],
                "cost": [0.05, 0.02],
                "valid_from": ["2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z"],
                "valid_to": ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"],
                "eligibility": ["tenure_days > 30", None],
            }
        ),
        "contacts": pd.DataFrame(
            {
                "decision_id": ["d1", "d2"],
                "customer_id": ["c1", "c2"],
                "offer_id": ["o1", "o2"],
                "channel": ["email", "sms"],
                "ts": ["2025-02-02T09:00:00Z", "2025-02-11T09:00:00Z"],
                "propensity": [0.5, 1.0],
                "outcome": ["accepted", "pending"],
                "outcome_ts": ["2025-02-03T09:00:00Z", None],
            }
        ),
    }
    return Dataset(**{name: validate_frame(TABLES[name], frame) for name, frame in raw.items()})


def write_tiny_csv(directory: Path) -> Path:
    write_dataset(tiny_dataset(), directory, "csv")
    return directory

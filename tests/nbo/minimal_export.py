"""A seeded purchases-only export: what a company has before it logs offers or contacts.

`customers` holds only `customer_id` and `signup_ts`; `events` only `customer_id`, `ts`, `type`
and `amount` (purchases with an amount, a few page views without one). Customers buy at their
own Poisson rate until a customer-specific end (some stop early: churn to learn).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2025-01-01")


def minimal_export(customers: int = 300, days: int = 480, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Raw frames (text timestamps, as a CSV export has them) for `customers.csv` and `events.csv`."""
    rng = np.random.default_rng(seed)
    ids = [f"h{i:05d}" for i in range(customers)]
    signup = rng.uniform(0, days / 3, customers)
    rate = rng.gamma(2.0, 1 / 40, customers)  # purchases per day, mean one every 20 days
    end = np.where(rng.random(customers) < 0.5, rng.uniform(signup, days), days)  # half stop buying
    rows: list[tuple[str, float, str, float | None]] = []
    for i, cid in enumerate(ids):
        n = rng.poisson(rate[i] * (end[i] - signup[i]))
        for t in np.sort(rng.uniform(signup[i], end[i], n)):
            rows.append((cid, t, "purchase", round(float(rng.gamma(2.0, 15.0)), 2)))
        for t in rng.uniform(signup[i], days, rng.poisson(2)):
            rows.append((cid, t, "page_view", None))
    events = pd.DataFrame(rows, columns=["customer_id", "day", "type", "amount"])
    events["ts"] = (START + pd.to_timedelta(events.pop("day"), unit="D")).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    customers_frame = pd.DataFrame(
        {"customer_id": ids, "signup_ts": (START + pd.to_timedelta(signup, unit="D")).strftime("%Y-%m-%dT%H:%M:%SZ")}
    )
    return {"customers": customers_frame, "events": events[["customer_id", "ts", "type", "amount"]]}


def write_minimal_export(directory: Path, **kwargs: object) -> Path:
    """`customers.csv` and `events.csv` only, nothing else, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in minimal_export(**kwargs).items():  # type: ignore[arg-type]
        frame.to_csv(directory / f"{name}.csv", index=False)
    return directory

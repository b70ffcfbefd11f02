"""A small seeded world of choices with prices: households buy one of three brands per shopping
occasion, every two weeks, by a logit on the shelf prices (strongly price-sensitive) and a
favourite brand; a third of them stop buying at some point (so churn has both classes).

The contact log is what a store would write: one decision per occasion, the three brands as
candidates with `attr_price`, the bought one `accepted`, the others `ignored`. Training on it
picks the choice objective by itself (every decision has exactly one acceptance).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

BRANDS = ("brand_a", "brand_b", "brand_c")
#: As the simulated world of test_engine.py, so `start_nbo_serve`'s clock (its NOW) suits both.
AS_OF = pd.Timestamp("2025-01-01") + pd.Timedelta(days=240)
POLICY = """
[caps]
web = { max = 100, days = 1 }
[offer_cap]
max = 100
days = 1
[arbitration]
max_per_category = 99
[arbitration.exploration]
rate = 0.0
"""


@dataclasses.dataclass(frozen=True)
class PricedWorld:
    root: Path
    data: Path
    features: Path
    tracking_uri: str
    policy: Path
    customers: tuple[str, ...]


def priced_tables(households: int = 300, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    start = AS_OF - pd.Timedelta(days=14 * 30)
    favourite = rng.integers(0, len(BRANDS), households)
    stops = np.where(rng.random(households) < 0.35, rng.integers(8, 30, households), 30)
    customers, events, contacts = [], [], []
    for h in range(households):
        cid = f"h{h:04d}"
        customers.append({"customer_id": cid, "signup_ts": start - pd.Timedelta(days=7)})
        for j in range(int(stops[h])):
            ts = start + pd.Timedelta(days=14 * j, hours=11)
            prices = np.round(rng.uniform(1.0, 3.0, len(BRANDS)), 2)
            utility = -3.0 * prices + 1.0 * (np.arange(len(BRANDS)) == favourite[h])
            p = np.exp(utility - utility.max())
            chosen = int(rng.choice(len(BRANDS), p=p / p.sum()))
            events.append({"customer_id": cid, "ts": ts, "type": "purchase", "channel": "store", "category": "grocery",
                           "product_id": BRANDS[chosen], "amount": float(prices[chosen])})
            for b, brand in enumerate(BRANDS):
                contacts.append({"decision_id": f"{cid}-{j}", "customer_id": cid, "offer_id": brand, "channel": "web",
                                 "ts": ts, "propensity": 1.0, "outcome": "accepted" if b == chosen else "ignored",
                                 "outcome_ts": ts, "attr_price": float(prices[b])})
    offers = pd.DataFrame({
        "offer_id": list(BRANDS), "name": list(BRANDS), "category": "grocery", "kind": "cross_sell", "channels": "web",
        "value": 1.0, "cost": 0.0, "valid_from": start - pd.Timedelta(days=365), "valid_to": AS_OF + pd.Timedelta(days=365),
        "eligibility": "",
    })
    return {"customers": pd.DataFrame(customers), "events": pd.DataFrame(events), "offers": offers,
            "contacts": pd.DataFrame(contacts)}


def build_priced_world(root: Path) -> PricedWorld:
    """Write the tables as CSV, train and promote both models, materialise the features."""
    from features import build_customer_features, write_materialised
    from models.tracking import MODEL_NAMES, resolve_tracking
    from nbo.data import load_dataset
    from training.registry import promote
    from training.train import TrainConfig, fit_and_log

    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    tables = priced_tables()
    for name, frame in tables.items():
        out = frame.copy()
        for col in out.columns:
            if pd.api.types.is_datetime64_any_dtype(out[col]):
                out[col] = out[col].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.to_csv(data_dir / f"{name}.csv", index=False)
    data = load_dataset(data_dir)
    tracking = resolve_tracking(f"sqlite:///{root / 'mlflow.db'}")
    client = tracking.activate()
    for which in ("propensity", "churn"):
        fit_and_log(which, data, TrainConfig(as_of=AS_OF, window_days=1, num_boost_round=150), tracking, progress=False)
        # Churn here is pure recency (households stop for good), which the recency baseline ranks
        # as well as any model: the gate would keep it out. This world tests prices, not churn.
        promote(client, MODEL_NAMES[which], force=which == "churn")
    write_materialised(build_customer_features(data, AS_OF), root / "features.parquet", AS_OF)
    policy = root / "policy.toml"
    policy.write_text(POLICY)
    return PricedWorld(root, data_dir, root / "features.parquet", tracking.uri, policy,
                       tuple(tables["customers"]["customer_id"]))

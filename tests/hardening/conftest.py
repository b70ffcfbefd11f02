"""A tiny trained world shared by the hardening tests: simulated data, both champions, features.

Built once per session (~20 s on 2 cores, most of it MLflow creating its SQLite schema) under
pytest's base temporary directory; tests copy what they break and never write into it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

START = date(2025, 1, 1)
DAYS = 240
CUSTOMERS = 300
AS_OF = pd.Timestamp(START) + pd.Timedelta(days=DAYS)
#: A campaign / service clock the morning after the materialisation (outside quiet hours).
NOW = AS_OF + pd.Timedelta(hours=10)


@dataclasses.dataclass(frozen=True)
class TinyWorld:
    root: Path
    data: Path
    features: Path
    tracking_uri: str
    customer: str  # a customer with rows in customers, events and contacts


@functools.cache
def _build(root: Path) -> TinyWorld:
    from features import build_customer_features, write_materialised
    from nbo.data import load_dataset
    from simulator import SimConfig, Simulator, write_simulation
    from training.registry import promote
    from models.tracking import MODEL_NAMES, resolve_tracking
    from training.train import TrainConfig, fit_and_log

    sim = Simulator(SimConfig(customers=CUSTOMERS, days=DAYS, start=START), seed=1)
    sim.run(progress=False)
    write_simulation(sim, root / "data")
    data = load_dataset(root / "data")
    tracking = resolve_tracking(f"sqlite:///{root / 'mlflow.db'}")
    client = tracking.activate()
    for which in ("propensity", "churn"):
        fit_and_log(which, data, TrainConfig(as_of=AS_OF, num_boost_round=20), tracking, data_dir=root / "data",
                    progress=False)
        promote(client, MODEL_NAMES[which], force=True)  # champions to serve; the gate is tested in tests/training
    write_materialised(build_customer_features(data, AS_OF), root / "features.parquet", AS_OF)
    return _world(root)


def _world(root: Path) -> TinyWorld:
    from nbo.data import load_table

    active = set(load_table(root / "data", "events")["customer_id"]) & set(
        load_table(root / "data", "contacts")["customer_id"])
    return TinyWorld(root, root / "data", root / "features.parquet", f"sqlite:///{root / 'mlflow.db'}",
                     sorted(active)[0])


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> TinyWorld:
    """300 customers x 240 days, both models trained (20 rounds) and promoted, features as of AS_OF."""
    reuse = os.environ.get("NBO_TINY_WORLD")  # development: a world built before by this fixture
    if reuse and (Path(reuse) / "features.parquet").exists():
        return _world(Path(reuse))
    base = Path(tmp_path_factory.getbasetemp()) / "nbo-tiny-world"
    base.mkdir(exist_ok=True)
    return _build(base)

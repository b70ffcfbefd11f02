"""What the console reads: the service's decision engine, its clock and keys, and the data behind them.

In `nbo serve` one `ConsoleBackend` is built per worker from the running service
(`console.service`), so the console decides with the very engine `/recommend` uses. Tests build
one from an engine directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nbo.data import Dataset, load_dataset

if TYPE_CHECKING:
    from serving.engine import DecisionEngine


@dataclass
class CustomerRows:
    """One customer's rows of every table of the data directory (copies, in time order)."""

    customer: dict[str, object] | None
    events: pd.DataFrame
    consents: pd.DataFrame
    contacts: pd.DataFrame

    def dataset(self, offers: pd.DataFrame, customers: pd.DataFrame) -> Dataset:
        """A `Dataset` holding this customer only (features computed on it are this customer's)."""
        return Dataset(customers=customers, consents=self.consents, events=self.events, offers=offers,
                       contacts=self.contacts)


@dataclass
class ConsoleBackend:
    """Everything the console's pages need, built once per process."""

    engine: DecisionEngine
    keys: tuple[bytes, ...]
    clock: Callable[[], datetime]
    work_dir: Path
    data_dir: Path
    policy_path: Path | None = None
    tracking_uri: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _data: Dataset | None = field(default=None, repr=False)
    _index: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_engine(cls, engine: DecisionEngine, keys: tuple[bytes, ...], clock: Callable[[], datetime],
                    work_dir: Path) -> ConsoleBackend:
        """A backend over an engine built from settings (`DecisionEngine.from_settings`)."""
        settings = engine.settings
        if settings is None:
            raise ValueError("the console needs an engine built from settings (data directory, policy, tracking)")
        return cls(engine=engine, keys=keys, clock=clock, work_dir=Path(work_dir), data_dir=Path(settings.data_dir),
                   policy_path=settings.policy_path, tracking_uri=settings.tracking_uri)

    # ------------------------------------------------------------------ the data directory
    def data(self) -> Dataset:
        """The data directory's tables, read on first use (the events table is only needed here)."""
        with self._lock:
            if self._data is None:
                data = load_dataset(self.data_dir)
                self._index = {name: getattr(data, name).groupby("customer_id", sort=False, observed=True).indices
                               for name in ("customers", "events", "consents", "contacts")}
                self._data = data
            return self._data

    def customer_rows(self, customer_id: str) -> CustomerRows:
        """The rows of `customer_id` in every table (empty frames for an unknown id)."""
        data = self.data()

        def rows(name: str) -> pd.DataFrame:
            frame = getattr(data, name)
            where = self._index[name].get(customer_id)
            out = frame.iloc[where] if where is not None else frame.iloc[0:0]
            return out.sort_values("ts", kind="stable") if "ts" in out.columns else out.copy()

        customers = rows("customers")
        customer = customers.iloc[0].to_dict() if len(customers) else None
        return CustomerRows(customer, rows("events"), rows("consents"), rows("contacts"))

    def customer_table(self, customer_id: str) -> pd.DataFrame:
        data = self.data()
        where = self._index["customers"].get(customer_id)
        return data.customers.iloc[where] if where is not None else data.customers.iloc[0:0]

    def known_ids(self) -> pd.Index:
        """Ids with a materialised features row (what the models score)."""
        return self.engine.features.index

    def find(self, prefix: str, limit: int = 20) -> list[str]:
        """Up to `limit` ids starting with `prefix`: those with features first, then the data's."""
        found: list[str] = []
        for ids in (self.known_ids(), pd.Index(self.data().customers["customer_id"])):
            if len(found) >= limit:
                break
            hits = ids[ids.str.startswith(prefix)] if prefix else ids
            for cid in hits[: limit * 2].tolist():
                if cid not in found:
                    found.append(cid)
                if len(found) >= limit:
                    break
        return found

    # ------------------------------------------------------------------ the policy
    def policy_text(self) -> str:
        """The policy in force as TOML: the file the service loaded, else the built-in default."""
        if self.policy_path is not None:
            try:
                return Path(self.policy_path).read_text(encoding="utf-8")
            except OSError:
                pass
        from console.policy_toml import policy_to_toml

        return policy_to_toml(self.engine.policy)

"""The universal control group's one rule: who is in it, from the customer id alone.

A customer's place in [0, 1) is the first 8 bytes of SHA-256(salt + ":" + customer_id), read as an
integer / 2^64: stable across processes, machines and restarts, independent of every trait, so the
customers below the share are a random sample of the base. The serving policy (`[control_group]`
of policy.toml) and the simulator's logging policy both ask this function.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

DEFAULT_SALT = "nbo-control"


def control_unit(customer_id: str, salt: str = DEFAULT_SALT) -> float:
    """The customer's place in [0, 1) (uniform over ids)."""
    digest = hashlib.sha256(f"{salt}:{customer_id}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_control(customer_ids: Iterable[str], share: float, salt: str = DEFAULT_SALT) -> np.ndarray:
    """Bool per customer: in the control group of this `share` (0 <= share <= 1)."""
    ids = list(customer_ids)
    if share <= 0.0:
        return np.zeros(len(ids), dtype=bool)
    return np.fromiter((control_unit(c, salt) < share for c in ids), dtype=bool, count=len(ids))

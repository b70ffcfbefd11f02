"""An offer's incentive, as model inputs: what a variant gives away and what its plain offer is worth.

The candidate features know an offer by its `value` (a variant's value is its plain offer's margin
less the incentive's cost, docs/data.md) and cannot tell a cheap plain offer from a generous
variant of a dear one. The uplift model (`models.uplift`) adds these three columns to the
candidate matrix; they are not part of the propensity feature set (no feature-set version moves).
One definition for the training set (`training.uplift`) and the decision pipeline (`serving`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.definitions import FeatureGroup

INCENTIVE = FeatureGroup(
    "incentive",
    (
        "offer_incentive_cost",  # currency units given away per acceptance (0: plain offer)
        "offer_base_value",  # the plain offer's margin: value + incentive_cost (currency units)
        "offer_incentive_share",  # incentive_cost / base value (0..1)
    ),
)
INCENTIVE_FEATURES: tuple[str, ...] = INCENTIVE.columns()


def incentive_costs(offers: pd.DataFrame) -> np.ndarray:
    """Incentive cost per offer (currency units per acceptance; 0 for a plain offer or a table
    without the column)."""
    if "incentive_cost" not in offers.columns:
        return np.zeros(len(offers))
    return pd.to_numeric(offers["incentive_cost"], errors="coerce").fillna(0.0).to_numpy(np.float64)


def incentive_columns(offers: pd.DataFrame) -> np.ndarray:
    """(offers, 3) float64: the `INCENTIVE` columns of each offer of the table, in table order."""
    cost = incentive_costs(offers)
    base = offers["value"].to_numpy(np.float64) + cost
    share = np.divide(cost, base, out=np.zeros_like(cost), where=base > 0)
    return np.column_stack([cost, base, share])


def with_incentives(X: np.ndarray, offers: pd.DataFrame, offer_pos: np.ndarray) -> np.ndarray:
    """Candidate rows `X` (float32, rows of the offers at positions `offer_pos` of `offers`) with
    the `INCENTIVE` columns appended: the uplift model's input."""
    extra = incentive_columns(offers)[np.asarray(offer_pos, dtype=np.int64)]
    return np.hstack([np.asarray(X, dtype=np.float32), extra.astype(np.float32)])

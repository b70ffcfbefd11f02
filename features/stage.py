"""The customer's relationship stage crossed with the offer's kind (`stage_kind_code`)."""

from __future__ import annotations

import numpy as np

from features.definitions import FeatureGroup
from nbo.vocab import OFFER_KINDS

STAGE = FeatureGroup("stage", ("stage_kind_code",))
#: Upper edges (days since the last activity) of the recency part of the relationship stage in
#: `stage_kind_code`: active in the last 2 weeks, month, 2 months, 4 months, or longer ago.
STAGE_RECENCY_EDGES: tuple[float, ...] = (14.0, 30.0, 60.0, 120.0)


def stage_kind_code(days_since_activity: np.ndarray, purchases_total: np.ndarray, kind_code: np.ndarray) -> np.ndarray:
    """The customer's relationship stage crossed with the offer's kind, as one category code.

    Stage: the recency bucket of the last activity (`STAGE_RECENCY_EDGES`: <= 14, 30, 60, 120 days,
    or longer / never), plus 5 for a customer who has bought before. Code: stage x number of
    offer kinds + kind code (0-49); NaN for an unknown kind or a customer without features.
    Offer kinds are meant for stages (a retention offer for someone going quiet, an acquisition
    offer for someone who never bought): one categorical column lets the model learn a shift per
    (stage, kind) pair from few rows, where splitting on recency and kind separately needs many.
    """
    edges = np.asarray(STAGE_RECENCY_EDGES)
    days = np.asarray(days_since_activity, dtype=np.float64)
    bought = np.asarray(purchases_total, dtype=np.float64) >= 1
    stage = np.searchsorted(edges, days, side="left") + np.where(bought, len(edges) + 1, 0)
    code = (stage * len(OFFER_KINDS) + np.asarray(kind_code)).astype(np.float64)
    return np.where((np.asarray(kind_code) >= 0) & ~np.isnan(days), code, np.nan)



def stage(days_since_activity: np.ndarray, purchases_total: np.ndarray, kind_code: np.ndarray) -> dict[str, np.ndarray]:
    """The `STAGE` columns of candidate rows."""
    return {"stage_kind_code": stage_kind_code(days_since_activity, purchases_total, kind_code)}

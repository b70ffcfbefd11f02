"""Lifecycle stage of each customer (`LifecycleRules`: the first rule that holds wins)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.config import LifecycleRules
from features.definitions import FeatureGroup
from nbo.vocab import LIFECYCLE_STAGES

LIFECYCLE = FeatureGroup("lifecycle", ("lifecycle_code",))


def lifecycle_stage(frame: pd.DataFrame | dict[str, np.ndarray], rules: LifecycleRules) -> np.ndarray:
    """Lifecycle stage per row (see `LifecycleRules`; first rule that holds wins)."""
    tenure = np.asarray(frame["tenure_days"])
    recency = np.asarray(frame["recency_days"])
    conditions = [
        (tenure > rules.lapsed_after_days) & (recency > rules.lapsed_after_days),
        (tenure > rules.at_risk_after_days) & (recency > rules.at_risk_after_days),
        (tenure <= rules.new_max_tenure_days) | (np.asarray(frame["purchases_total"]) <= 1),
        (tenure >= rules.loyal_min_tenure_days)
        & (np.asarray(frame["purchases_365d"]) >= rules.loyal_min_purchases_365d),
        np.asarray(frame["categories_bought_365d"]) >= rules.diversified_min_categories,
    ]
    return np.select(conditions, ["lapsed", "at_risk", "new", "loyal", "diversified"], default="rooted")


def lifecycle(frame: pd.DataFrame | dict[str, np.ndarray], rules: LifecycleRules) -> dict[str, np.ndarray]:
    """The `LIFECYCLE` columns: the stage's index in `nbo.vocab.LIFECYCLE_STAGES`."""
    stage = lifecycle_stage(frame, rules)
    return {"lifecycle_code": pd.Categorical(stage, categories=list(LIFECYCLE_STAGES)).codes.astype(np.float64)}

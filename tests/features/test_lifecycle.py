"""Lifecycle stages (features/lifecycle.py): rules in order, configurable and checked."""

from __future__ import annotations

import numpy as np
import pytest

from features import NEVER_DAYS, LifecycleRules, lifecycle_stage


def _stage(**kw: float) -> str:
    row = {"tenure_days": 400.0, "recency_days": 10.0, "purchases_total": 5.0, "purchases_365d": 5.0,
           "categories_bought_365d": 1.0}
    row.update(kw)
    return str(lifecycle_stage({k: np.array([v]) for k, v in row.items()}, LifecycleRules())[0])


def test_lifecycle_rules_in_order() -> None:
    assert _stage(recency_days=181) == "lapsed"
    assert _stage(recency_days=NEVER_DAYS, tenure_days=200) == "lapsed"
    assert _stage(recency_days=NEVER_DAYS, tenure_days=100) == "at_risk"
    assert _stage(recency_days=91) == "at_risk"
    assert _stage(recency_days=NEVER_DAYS, tenure_days=20, purchases_total=0) == "new"
    assert _stage(tenure_days=25, purchases_total=4) == "new"
    assert _stage(purchases_total=1) == "new"
    assert _stage(purchases_365d=12, categories_bought_365d=4) == "loyal"
    assert _stage(purchases_365d=12, tenure_days=300, categories_bought_365d=4) == "diversified"
    assert _stage(categories_bought_365d=3) == "diversified"
    assert _stage() == "rooted"


def test_lifecycle_rules_are_configurable_and_checked() -> None:
    rules = LifecycleRules(loyal_min_purchases_365d=5)
    row = {"tenure_days": np.array([400.0]), "recency_days": np.array([10.0]), "purchases_total": np.array([5.0]),
           "purchases_365d": np.array([5.0]), "categories_bought_365d": np.array([1.0])}
    assert lifecycle_stage(row, rules)[0] == "loyal"
    with pytest.raises(ValueError, match="lapsed_after_days"):
        LifecycleRules(at_risk_after_days=200, lapsed_after_days=100)
    with pytest.raises(ValueError):
        rules.loyal_min_purchases_365d = 3  # frozen

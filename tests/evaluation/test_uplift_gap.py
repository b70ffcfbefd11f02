"""The gap decomposition's mechanics (evaluation/uplift_gap.py) on hand-made numbers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from evaluation.uplift_gap import mix, one_step, summary

# Offer 0 plain (base 10), offer 1 its variant with an incentive of 2, offer 2 another plain offer (base 20).
CATALOGUE = SimpleNamespace(base_value=np.array([10.0, 10.0, 20.0]), incentive_cost=np.array([0.0, 2.0, 0.0]),
                            cost=np.array([0.1, 0.1, 0.1]), base=np.array([0, 0, 2]))


def _record(p: np.ndarray, tau: np.ndarray, eligible: np.ndarray) -> dict[str, np.ndarray]:
    n = len(p)
    return {"day": np.zeros(n, dtype=int), "channel": np.zeros(n, dtype=int), "p": p, "tau": tau,
            "q": np.full(p.shape, 0.1), "eligible": eligible, "price_sensitivity": np.linspace(0.0, 1.0, n)}


def test_hybrids_take_one_part_from_the_truth() -> None:
    model = (np.array([[0.2, 0.1]]), np.array([[0.1, 0.1]]))  # shares 0.5 and 1.0
    truth = (np.array([[0.4, 0.2]]), np.array([[0.1, 0.05]]))  # shares 0.25 and 0.25
    p, tau = mix("uplift_true_accept", model, truth)
    np.testing.assert_allclose(p, [[0.4, 0.2]])
    np.testing.assert_allclose(tau, [[0.2, 0.2]])  # true p x the model's share
    p, tau = mix("uplift_true_share", model, truth)
    np.testing.assert_allclose(p, [[0.2, 0.1]])
    np.testing.assert_allclose(tau, [[0.05, 0.025]])  # the model's p x the true share
    with pytest.raises(ValueError, match="unknown hybrid"):
        mix("oracle", model, truth)


def test_one_step_sorts_each_loss_by_kind() -> None:
    # True values (tau x base - p x incentive - cost): row 0 offers 0.9 / 0.7 / 1.9 -> the oracle picks 2;
    # row 1 pays only with offer 0 (0.4); row 2 nothing pays; row 3 nothing is eligible.
    p = np.array([[0.1, 0.1, 0.1], [0.1, 0.2, 0.0], [0.0, 0.0, 0.0], [0.1, 0.1, 0.1]])
    tau = np.array([[0.1, 0.1, 0.1], [0.05, 0.05, 0.0], [0.0, 0.0, 0.0], [0.1, 0.1, 0.1]])
    eligible = np.array([[True] * 3, [True] * 3, [True] * 3, [False] * 3])
    rec = _record(p, tau, eligible)
    truth = one_step(rec, p, tau, CATALOGUE)
    assert truth["kind"].tolist() == ["same pick", "same pick", "both none", "both none"]
    assert (truth["loss"] == 0).all()
    # The model: row 0 takes the plain offer 0 (other offer), row 1 the costlier variant 1,
    # row 2 contacts with offer 2 although nothing pays.
    tau_m = np.array([[0.3, 0.0, 0.0], [0.05, 0.3, 0.0], [0.0, 0.0, 0.1], [0.1, 0.1, 0.1]])
    steps = one_step(rec, p, tau_m, CATALOGUE)
    assert steps["kind"].tolist() == ["other offer", "costlier variant", "contact that does not pay", "both none"]
    np.testing.assert_allclose(steps["value"], [0.9, 0.5 - 0.4 - 0.1, -0.1, 0.0])
    np.testing.assert_allclose(steps["loss"], [1.0, 0.4 - 0.0, 0.1, 0.0])
    s = summary(pd.concat([steps] * 3, ignore_index=True))
    assert s["contacts"] == 9 and s["oracle_contacts"] == 6
    assert s["share_of_oracle"] == pytest.approx((0.9 + 0.0 - 0.1) / (1.9 + 0.4))
    assert s["by_kind"].loc["other offer", "share_of_gap"] == pytest.approx(1.0 / 1.5)

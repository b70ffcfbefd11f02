"""Qini and uplift curves: exact values on a hand-made log, and the order of good and bad scores."""

from __future__ import annotations

import numpy as np
import pytest

from training.uplift_metrics import qini_curve


def test_exact_values_on_a_hand_made_log() -> None:
    # Best first: a treated buyer, a control non-buyer, a treated non-buyer, a control buyer.
    score = np.array([4.0, 3.0, 2.0, 1.0])
    t = np.array([1, 0, 1, 0])
    y = np.array([1, 0, 0, 1])
    c = qini_curve(score, t, y, bins=4)
    np.testing.assert_allclose(c.fraction, [0, 0.25, 0.5, 0.75, 1.0])
    # cut 1: R_T 1, no control -> 1; cut 2: 1 - 0 x 1/1 = 1; cut 3: 1 - 0 x 2/1 = 1; cut 4: 1 - 1 x 2/2 = 0
    np.testing.assert_allclose(c.qini, [0, 1, 1, 1, 0])
    # uplift: cut 2 (1/1 - 0/1) x 2 = 2; cut 3 (1/2 - 0) x 3 = 1.5; cut 4 (1/2 - 1/2) x 4 = 0
    np.testing.assert_allclose(c.uplift, [0, 0, 2, 1.5, 0])
    assert c.coefficient == pytest.approx(np.trapezoid([0, 1, 1, 1, 0], [0, 0.25, 0.5, 0.75, 1]) / 2)


def test_the_true_effect_ranks_above_the_base_rate_and_random() -> None:
    rng = np.random.default_rng(0)
    n = 40_000
    tau = rng.random(n) * 0.2
    base = rng.random(n) * 0.3
    t = rng.random(n) < 0.5
    y = rng.random(n) < base + tau * t
    good = qini_curve(tau, t, y).coefficient
    response = qini_curve(base + tau, t, y).coefficient
    random = qini_curve(np.zeros(n), t, y).coefficient
    assert good > response > random - 0.005
    assert abs(random) < 0.003  # noise: about 0.001 over seeds
    assert qini_curve(-tau, t, y).coefficient < -0.01


def test_one_arm_is_refused() -> None:
    with pytest.raises(ValueError, match="treated and control"):
        qini_curve(np.ones(3), np.ones(3), np.ones(3))

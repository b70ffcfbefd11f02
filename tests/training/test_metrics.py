"""Metrics on hand-computable cases."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import binary_metrics, calibration_error, top_decile


def test_perfect_ranking() -> None:
    y = np.array([0] * 90 + [1] * 10)
    p = np.linspace(0, 1, 100)
    m = binary_metrics(y, p)
    assert m.auc == pytest.approx(1.0)
    lift, capture = top_decile(y, p)
    assert lift == pytest.approx(10.0)
    assert capture == pytest.approx(1.0)


def test_single_class_gives_nan_not_error() -> None:
    m = binary_metrics(np.zeros(5), np.full(5, 0.2))
    assert np.isnan(m.auc)
    assert m.brier == pytest.approx(0.04)


def test_calibration_error_zero_when_calibrated() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 200_000)
    y = (rng.uniform(0, 1, p.size) < p).astype(float)
    assert calibration_error(y, p) < 0.01
    assert calibration_error(y, p * 0.5) > 0.2

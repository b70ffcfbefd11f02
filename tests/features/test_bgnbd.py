"""BG/NBD (features/bgnbd.py, the estimator in features/bgnbd_estimator.py): known properties and
parameter recovery on data simulated from the model."""

from __future__ import annotations

import numpy as np
import pytest

from features.bgnbd import BetaGeoParams, log_likelihood, p_alive, p_no_purchase
from features.bgnbd_estimator import BetaGeoModel

TRUE = BetaGeoParams(r=0.8, alpha=20.0, a=0.9, b=3.0)


def simulate(params: BetaGeoParams, n: int, seed: int) -> np.ndarray:
    """(x, t_x, T) of `n` customers drawn from the model itself (Fader, Hardie and Lee 2005, sec. 2)."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params.r, 1 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    T = rng.uniform(100, 400, n)
    out = np.zeros((n, 3))
    for i in range(n):
        t, x, t_x = 0.0, 0, 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T[i]:
                break
            x, t_x = x + 1, t
            if rng.uniform() < p[i]:  # drops out after this repeat purchase
                break
        out[i] = (x, t_x, T[i])
    return out


def test_no_repeat_purchase_means_alive() -> None:
    alive = p_alive(TRUE, np.zeros(3), np.zeros(3), np.array([1.0, 50.0, 500.0]))
    np.testing.assert_array_equal(alive, 1.0)


def test_p_alive_falls_with_silence_and_rises_with_recent_buying() -> None:
    x = np.full(4, 5.0)
    silent = p_alive(TRUE, x, np.array([100.0, 100.0, 100.0, 100.0]), np.array([100.0, 150.0, 250.0, 400.0]))
    assert silent[0] > silent[1] > silent[2] > silent[3]
    assert silent[0] == pytest.approx(1 / (1 + 0.9 / (3.0 + 5 - 1)))  # bought at the end: only the dropout coin
    recent = p_alive(TRUE, x[:3], np.array([50.0, 150.0, 240.0]), np.full(3, 250.0))
    assert recent[0] < recent[1] < recent[2]


def test_no_purchase_probability_is_between_dropout_and_one_and_falls_with_the_horizon() -> None:
    X = (np.array([2.0, 2.0]), np.array([30.0, 30.0]), np.array([60.0, 60.0]))
    short, long_ = p_no_purchase(TRUE, *X, 10.0), p_no_purchase(TRUE, *X, 200.0)
    dead = 1 - p_alive(TRUE, *X)
    assert (short > long_).all() and (short < 1).all() and (long_ > dead).all()
    # a very long window: only the dead stay silent
    np.testing.assert_allclose(p_no_purchase(TRUE, *X, 1e9), dead, atol=1e-6)
    assert p_no_purchase(TRUE, *X, 0.0) == pytest.approx(1.0)


def test_likelihood_sums_to_one_over_outcomes_for_an_instant() -> None:
    # With T tiny, the only likely outcome is x = 0: its likelihood tends to 1.
    ll = log_likelihood(TRUE, np.array([0.0]), np.array([0.0]), np.array([1e-6]))
    assert np.exp(ll[0]) == pytest.approx(1.0, abs=1e-6)


def test_maximum_likelihood_recovers_the_parameters_of_simulated_data() -> None:
    X = simulate(TRUE, 6000, 0)
    model = BetaGeoModel().fit(X)
    got = model.params_
    assert model.converged_
    assert got.r == pytest.approx(TRUE.r, rel=0.15)
    assert got.alpha == pytest.approx(TRUE.alpha, rel=0.25)
    assert got.a == pytest.approx(TRUE.a, rel=0.3)
    assert got.b == pytest.approx(TRUE.b, rel=0.35)
    # the fit is at least as likely as the truth on its own data
    assert model.log_likelihood_ >= log_likelihood(TRUE, X[:, 0], X[:, 1], X[:, 2]).sum() - 1e-6


def test_fitted_no_purchase_probability_is_calibrated_on_the_future() -> None:
    """Simulate a continuation: who among the customers buys again within 60 days."""
    rng = np.random.default_rng(1)
    n = 4000
    lam = rng.gamma(TRUE.r, 1 / TRUE.alpha, n)
    p = rng.beta(TRUE.a, TRUE.b, n)
    T = rng.uniform(100, 300, n)
    X, silent = np.zeros((n, 3)), np.zeros(n, dtype=bool)
    for i in range(n):
        t, x, t_x, alive = 0.0, 0, 0.0, True
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T[i]:
                break
            x, t_x = x + 1, t
            if rng.uniform() < p[i]:
                alive = False
                break
        X[i] = (x, t_x, T[i])
        # memoryless: the next purchase of an alive customer comes after Exp(lam) from T
        silent[i] = not alive or rng.exponential(1 / lam[i]) > 60
    model = BetaGeoModel().fit(X)
    pred = model.p_no_purchase(X, 60.0)
    assert abs(pred.mean() - silent.mean()) < 0.02
    order = np.argsort(pred)
    for part in np.array_split(order, 5):
        assert abs(pred[part].mean() - silent[part].mean()) < 0.05


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="t_x"):
        p_alive(TRUE, np.array([1.0]), np.array([10.0]), np.array([5.0]))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        BetaGeoModel().fit(np.zeros((3, 2)))

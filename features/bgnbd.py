"""The BG/NBD model of repeat buying: is a customer still "alive", and how likely a silent spell.

Reference: Fader, P.S., Hardie, B.G.S. and Lee, K.L. (2005), "Counting Your Customers the Easy
Way: An Alternative to the Pareto/NBD Model", Marketing Science 24(2), 275-284. While alive, a
customer buys as a Poisson process of rate lambda; after each repeat purchase they drop out for
good with probability p; across customers lambda ~ Gamma(r, alpha) (alpha in days here) and
p ~ Beta(a, b). A customer's history is summarised by x (repeat purchases), t_x (time of the last
purchase after the first) and T (time from the first purchase to the moment of observation),
all in days.

Why our own ~150 lines and not a library: `lifetimes` (the reference Python implementation) has
had no release since 2020 and pins old NumPy/pandas APIs; its fork `btyd` is a 2022 beta with
no release since; PyMC-Marketing's `BetaGeoModel` is maintained but brings PyMC and PyTensor (a
compiler toolchain and hundreds of MB) into a service that needs four closed-form formulas and
one small maximum-likelihood fit. SciPy (already in the stack through scikit-learn) has the
special functions and the optimiser. Formulas: the paper's equations (3), (6) and (7) (likelihood,
P(alive)); the probability of no purchase in the next t days follows from the model (a customer
who makes no purchase cannot drop out): 1 - P(alive) + P(alive) * ((alpha + T) / (alpha + T + t))^(r + x).

This module holds the formulas; `features.bgnbd_estimator.BetaGeoModel` is the estimator (fitted
by maximum likelihood; training's churn baseline). The feature `p_alive_bgnbd`
(`features.purchase_cycle`) evaluates the same formula with declared parameters
(`features.config.BGNBD_PRIOR`), since features are fixed functions of each customer's own history
(the rows of a subset equal those of a full run; the online path recomputes one row). The
estimator lives apart because scikit-learn's import (~1.3 s of CPU, through SciPy's statistics)
is not needed to compute features or to read their files (`nbo serve`'s checks); SciPy's special
functions are imported by the likelihood only, for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BetaGeoParams:
    """r, alpha (days) of the Gamma purchase rates; a, b of the Beta dropout probabilities."""

    r: float
    alpha: float
    a: float
    b: float


def check_arrays(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) as float arrays of one shape; ValueError when they cannot be a purchase history."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if not (x.shape == t_x.shape == T.shape):
        raise ValueError("x, t_x and T must have the same shape")
    if (x < 0).any() or (t_x < 0).any() or (T < t_x).any() or ((x == 0) & (t_x != 0)).any():
        raise ValueError("need x >= 0, 0 <= t_x <= T, and t_x = 0 when x = 0")
    return x, t_x, T


def log_likelihood(params: BetaGeoParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Each customer's log-likelihood of (x, t_x, T) under the model (paper, equation 6)."""
    from scipy.special import betaln, gammaln  # only fitting needs it (~0.4 s of CPU to import)

    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    stay = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    # The dropout term exists only after a repeat purchase: B(a + 1, b + x - 1) / B(a, b + x) ...
    drop = np.full_like(x, -np.inf)
    xr = x[repeat]
    drop[repeat] = np.log(a) - np.log(b + xr - 1) - (r + xr) * np.log(alpha + t_x[repeat])
    return head + np.logaddexp(stay, drop)


def p_alive(params: BetaGeoParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(still alive at T | x, t_x, T) (paper, equation 7); 1 for a customer without repeat purchase."""
    x, t_x, T = check_arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    out = np.ones_like(x)
    repeat = x > 0
    xr = x[repeat]
    log_odds = np.log(a) - np.log(b + xr - 1) + (r + xr) * (np.log(alpha + T[repeat]) - np.log(alpha + t_x[repeat]))
    out[repeat] = 1.0 / (1.0 + np.exp(log_odds))
    return out


def p_no_purchase(params: BetaGeoParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, t: float) -> np.ndarray:
    """P(no purchase in the next `t` days | x, t_x, T): the churn label's probability under the model."""
    x, t_x, T = check_arrays(x, t_x, T)
    alive = p_alive(params, x, t_x, T)
    silent_if_alive = np.exp((params.r + x) * (np.log(params.alpha + T) - np.log(params.alpha + T + t)))
    return 1.0 - alive + alive * silent_if_alive


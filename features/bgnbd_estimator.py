"""The BG/NBD model fitted by maximum likelihood: a scikit-learn estimator over the formulas of
`features.bgnbd` (training's churn baseline, `training.train`). Apart from the formulas so that
computing features does not import scikit-learn."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from features.bgnbd import BetaGeoParams, check_arrays, log_likelihood, p_alive, p_no_purchase


class BetaGeoModel(BaseEstimator):
    """BG/NBD fitted by maximum likelihood (L-BFGS on the log parameters).

    `fit(X)` with X of shape (n, 3): columns x (repeat purchases), t_x and T (days). `penalizer`
    adds `penalizer * sum(params ** 2)` to the negative mean log-likelihood (0: plain MLE), as in
    `lifetimes`, for small or degenerate samples.
    """

    def __init__(self, penalizer: float = 0.0, max_iter: int = 500) -> None:
        self.penalizer = penalizer
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: object = None) -> BetaGeoModel:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != 3 or len(X) == 0:
            raise ValueError("X must be a non-empty (n, 3) array of x, t_x, T")
        x, t_x, T = check_arrays(X[:, 0], X[:, 1], X[:, 2])
        scale = max(float(np.mean(T)), 1.0)  # alpha starts near the typical observation length

        def loss(theta: np.ndarray) -> float:
            params = BetaGeoParams(*np.exp(theta))
            value = -float(np.mean(log_likelihood(params, x, t_x, T)))
            return value + self.penalizer * float(np.sum(np.exp(theta) ** 2))

        start = np.log([1.0, scale, 1.0, 1.0])
        result = minimize(loss, start, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 4,
                          options={"maxiter": self.max_iter})
        if not np.isfinite(result.fun):
            raise ValueError(f"BG/NBD fit failed: {result.message}")
        self.params_ = BetaGeoParams(*(float(v) for v in np.exp(result.x)))
        self.log_likelihood_ = -float(result.fun) * len(x)
        self.converged_ = bool(result.success)
        return self

    def p_alive(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "params_")
        X = np.asarray(X, dtype=float)
        return p_alive(self.params_, X[:, 0], X[:, 1], X[:, 2])

    def p_no_purchase(self, X: np.ndarray, t: float) -> np.ndarray:
        check_is_fitted(self, "params_")
        X = np.asarray(X, dtype=float)
        return p_no_purchase(self.params_, X[:, 0], X[:, 1], X[:, 2], t)

"""The uplift model: what a contact with an offer changes, against making no contact.

`UpliftBooster` is a meta-learner over LightGBM, fitted on a randomised log (treated rows: a
contact with an offer; control rows: a decision randomised to no contact, paired with the offers
it could have made). The outcome is the same for both arms: the customer buys the offer's
category within the window after the decision. Its `predict_uplift` is the incremental
conversion tau(x) = P(buy | contacted with the offer) - P(buy | no contact), per candidate row.

Learners (`learner`):
- `"t"` (two models): mu1 on the treated rows, mu0 on the control rows; tau = mu1 - mu0.
- `"x"` (Kuenzel, Sekhon, Bickel and Yu 2019, the default): the T-learner's two models, then the
  imputed effects D1 = y - mu0(x) on the treated rows and D0 = mu1(x) - y on the control rows,
  each regressed on x (tau1, tau0), combined as tau = g tau0 + (1 - g) tau1 with g the share of
  treated rows (the log is randomised, so the treatment probability does not depend on x). With
  few control rows (the usual case: a control group of a few percent) tau0 leans on mu1, which
  has seen many rows, and the difference of two noisy levels of the T-learner is avoided.

Why not causalml: see docs/training.md ("The uplift model").
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

LEARNERS = ("t", "x")

DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "verbose": -1,
    "seed": 0,
    "deterministic": True,
    "num_threads": 1,
}


class UpliftBooster(BaseEstimator):
    """Incremental conversion of a contact against no contact (see the module docstring).

    `feature_names`: names of X's columns (kept with the model and checked by serving);
    `categorical`: names among them LightGBM splits as categories; `params` override
    `DEFAULT_PARAMS`; `num_boost_round` per model (four models for the X-learner).
    """

    def __init__(
        self,
        feature_names: list[str] | None = None,
        learner: str = "x",
        num_boost_round: int = 200,
        params: dict[str, Any] | None = None,
        categorical: tuple[str, ...] = (),
    ) -> None:
        self.feature_names = feature_names
        self.learner = learner
        self.num_boost_round = num_boost_round
        self.params = params
        self.categorical = categorical

    def _train(self, X: np.ndarray, y: np.ndarray, objective: str) -> lgb.Booster:
        params = {**DEFAULT_PARAMS, **(self.params or {}), "objective": objective}
        names = list(self.feature_names_in_)
        cats = [names.index(c) for c in self.categorical if c in names]
        data = lgb.Dataset(X, label=y, feature_name=names, categorical_feature=cats or "auto", free_raw_data=True)
        return lgb.train(params, data, num_boost_round=self.num_boost_round)

    def fit(self, X: np.ndarray, treatment: np.ndarray, y: np.ndarray) -> UpliftBooster:
        """`treatment` 1 for a contact, 0 for no contact; `y` 1 when the customer bought the
        row's category within the window. Both arms need both outcomes."""
        if self.learner not in LEARNERS:
            raise ValueError(f"unknown learner {self.learner!r}; use one of {', '.join(LEARNERS)}")
        X = np.asarray(X, dtype=np.float32)
        t = np.asarray(treatment).astype(bool)
        y = np.asarray(y, dtype=np.float64)
        if not (len(X) == len(t) == len(y)):
            raise ValueError(f"X, treatment and y differ in length ({len(X)}, {len(t)}, {len(y)})")
        for arm, rows in (("treated", t), ("control", ~t)):
            if len(np.unique(y[rows])) < 2:
                raise ValueError(f"the {arm} rows need both outcomes ({int(rows.sum())} rows, "
                                 f"{int(y[rows].sum())} positive)")
        names = list(self.feature_names) if self.feature_names else [f"f{i}" for i in range(X.shape[1])]
        if len(names) != X.shape[1]:
            raise ValueError(f"{len(names)} feature names for {X.shape[1]} columns")
        self.feature_names_in_ = np.array(names, dtype=object)
        self.mu1_ = self._train(X[t], y[t], "binary")
        self.mu0_ = self._train(X[~t], y[~t], "binary")
        self.treated_share_ = float(t.mean())
        self.tau1_ = self.tau0_ = None
        if self.learner == "x":
            d1 = y[t] - self.mu0_.predict(X[t])
            d0 = self.mu1_.predict(X[~t]) - y[~t]
            self.tau1_ = self._train(X[t], d1, "regression")
            self.tau0_ = self._train(X[~t], d0, "regression")
        return self

    def predict_treated(self, X: np.ndarray) -> np.ndarray:
        """mu1: P(buys the row's category within the window | contacted with the row's offer)."""
        check_is_fitted(self, "mu1_")
        return self.mu1_.predict(np.asarray(X, dtype=np.float32), num_threads=1)

    def predict_control(self, X: np.ndarray) -> np.ndarray:
        """mu0: P(buys the row's category within the window | no contact)."""
        check_is_fitted(self, "mu0_")
        return self.mu0_.predict(np.asarray(X, dtype=np.float32), num_threads=1)

    def predict_uplift(self, X: np.ndarray) -> np.ndarray:
        """tau: incremental conversion of each row's contact (probability difference, in [-1, 1])."""
        check_is_fitted(self, "mu1_")
        X = np.asarray(X, dtype=np.float32)
        if self.tau1_ is None:
            tau = self.predict_treated(X) - self.predict_control(X)
        else:
            g = self.treated_share_
            tau = g * self.tau0_.predict(X, num_threads=1) + (1.0 - g) * self.tau1_.predict(X, num_threads=1)
        return np.clip(tau, -1.0, 1.0)


class UpliftPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper: `predict` takes a DataFrame with the feature columns, returns the uplift.

    Serving and evaluation unwrap it (`models.registry.load_uplift`) and call the estimator on NumPy.
    """

    def __init__(self, model: UpliftBooster, feature_set_version: str) -> None:
        self.model = model
        self.feature_set_version = feature_set_version

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        names = list(self.model.feature_names_in_)
        missing = [c for c in names if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks feature column(s): {', '.join(missing[:10])}")
        return self.model.predict_uplift(model_input[names].to_numpy(dtype=np.float32, na_value=np.nan))

"""The uplift model: what a contact with an offer changes, against making no contact.

`UpliftBooster` is a meta-learner over LightGBM, fitted on a randomised log (treated rows: a
contact with an offer; control rows: a decision randomised to no contact, paired with the offers
it could have made). The outcome is the same for both arms: the customer buys the offer's
category within the window after the decision. Its `predict_uplift` is the incremental
conversion tau(x) = P(buy | contacted with the offer) - P(buy | no contact), per candidate row.

Learners (`learner`):
- `"share"` (the default since the closed loop of issue 21 measured the others, docs/training.md):
  tau = P(accept) x r, where P(accept) is an acceptance model fitted on every contact (with the
  incentive columns, never lower for a larger incentive: a monotone constraint) and r the share
  of acceptances that are incremental. A customer who buys the offer's category anyway (probability
  q over the window, from an organic model fitted on the no-contact rows on what describes the
  customer, the category and the moment only: an offer not made cannot change what they buy) is
  `beta_` times as likely, in odds, to accept as one who would not; so
  r = (1 - q) / (1 - q + beta q) = 1 / (1 + beta q / (1 - q)). The one parameter beta is
  fitted to the randomised log: the regression-adjusted difference in mean purchases of the
  category between contacted and not contacted rows equals the mean predicted tau of the contacted
  rows (predictions out of fold, by customer); with `lift_outcome` the lift is counted over
  the acceptance span (`training.uplift_set`: the same incremental purchases without the later
  days' organic ones, a less noisy difference; its own organic model adjusts it). Offers and variants are compared by the acceptance
  model, which sees every contact (the variants are randomised among the contacts), and not by a
  difference of two noisy levels; the no-contact rows, few, fix one number (how much of the
  acceptance is cannibalised), not every offer's effect.
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

from models.calibrated import DEFAULT_PARAMS as CALIBRATED_PARAMS
from models.calibrated import booster_params
from models.pyfunc import feature_matrix

LEARNERS = ("share", "t", "x")
#: Columns the organic model (no contact) does not read: they describe an offer, and an offer not
#: made cannot change what the customer buys (`customer_category_columns`).
OFFER_ONLY_COLUMNS = ("stage_kind_code", "ctx_offer_on_channel")
#: Incentive columns the acceptance model may only rise with (LightGBM monotone constraint).
MONOTONE_INCREASING = ("offer_incentive_cost", "offer_incentive_share")
#: Out-of-fold folds (by customer) for the predictions beta is fitted on.
FOLDS = 3
#: Upper bound of beta (the odds ratio of accepting when buying anyway).
BETA_MAX = 1e4

DEFAULT_PARAMS: dict[str, Any] = {**CALIBRATED_PARAMS, "num_threads": 1}
DEFAULT_PARAMS.pop("objective", None)


def customer_category_columns(names: list[str]) -> list[int]:
    """Positions of the columns that describe the customer, the offer's category and the moment
    (customer features, `offer_cat_*`, `offer_category_code`, the context), not the offer itself
    (its kind, value, cost, code, history with the customer, incentive)."""
    def offer_only(name: str) -> bool:
        if name in OFFER_ONLY_COLUMNS:
            return True
        return name.startswith("offer_") and not (name.startswith("offer_cat_") or name == "offer_category_code")
    return [i for i, n in enumerate(names) if not offer_only(n)]


def incremental_share(beta: float, q: np.ndarray) -> np.ndarray:
    """r = 1 / (1 + beta q / (1 - q)): the share of acceptances that are incremental when buyers
    anyway (probability q) accept with `beta` times the odds of the others."""
    q = np.clip(np.asarray(q, dtype=np.float64), 0.0, 0.999)
    return 1.0 / (1.0 + beta * q / (1.0 - q))


def fit_beta(lift: float, p_accept: np.ndarray, q: np.ndarray) -> float:
    """The beta whose mean tau = p_accept x r(beta, q) equals `lift` (the measured incremental
    purchases per contact): 0 when the lift is at least the mean acceptance (nothing cannibalised),
    `BETA_MAX` when it is at most 0; bisection on log beta otherwise (mean tau falls with beta)."""
    p = np.asarray(p_accept, dtype=np.float64)
    if not len(p) or lift >= p.mean():
        return 0.0
    if lift <= float((p * incremental_share(BETA_MAX, q)).mean()):
        return BETA_MAX
    lo, hi = -6.0, float(np.log(BETA_MAX))
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float((p * incremental_share(np.exp(mid), q)).mean()) > lift:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))


def _folds(groups: np.ndarray | None, n: int) -> np.ndarray:
    """Fold of every row: by a stable hash of its group (customer), so a customer's rows share one."""
    if groups is None:
        return np.arange(n) % FOLDS
    codes = pd.util.hash_array(np.asarray(groups, dtype=object), categorize=True)
    return (codes % np.uint64(FOLDS)).astype(np.int64)


class UpliftBooster(BaseEstimator):
    """Incremental conversion of a contact against no contact (see the module docstring).

    `feature_names`: names of X's columns (kept with the model and checked by serving);
    `categorical`: names among them LightGBM splits as categories; `params` override
    `DEFAULT_PARAMS`; `num_boost_round` per model.
    """

    def __init__(
        self,
        feature_names: list[str] | None = None,
        learner: str = "share",
        num_boost_round: int = 200,
        params: dict[str, Any] | None = None,
        categorical: tuple[str, ...] = (),
    ) -> None:
        self.feature_names = feature_names
        self.learner = learner
        self.num_boost_round = num_boost_round
        self.params = params
        self.categorical = categorical

    def _train(self, X: np.ndarray, y: np.ndarray, objective: str, columns: list[int] | None = None,
               monotone: tuple[str, ...] = ()) -> lgb.Booster:
        params = booster_params({**DEFAULT_PARAMS, **(self.params or {}), "objective": objective}, len(X))
        names = list(self.feature_names_in_)
        if columns is not None:
            names = [names[i] for i in columns]
            X = X[:, columns]
        if monotone:
            params["monotone_constraints"] = [1 if n in monotone else 0 for n in names]
        cats = [names.index(c) for c in self.categorical if c in names]
        data = lgb.Dataset(X, label=y, feature_name=names, categorical_feature=cats or "auto", free_raw_data=True)
        return lgb.train(params, data, num_boost_round=self.num_boost_round)

    def fit(self, X: np.ndarray, treatment: np.ndarray, y: np.ndarray, accepted: np.ndarray | None = None,
            groups: np.ndarray | None = None, lift_outcome: np.ndarray | None = None) -> UpliftBooster:
        """`treatment` 1 for a contact, 0 for no contact; `y` the customer's purchases of the
        row's category within the window (a count, or 1/0 bought); `accepted` (the `share`
        learner) 1 when the contact was accepted; `groups` the customer of each row (folds);
        `lift_outcome` (the `share` learner, default `y`) the purchases beta's lift is measured
        on: those within the span in which acceptances arrive."""
        if self.learner not in LEARNERS:
            raise ValueError(f"unknown learner {self.learner!r}; use one of {', '.join(LEARNERS)}")
        X = np.asarray(X, dtype=np.float32)
        t = np.asarray(treatment).astype(bool)
        y = np.asarray(y, dtype=np.float64)
        if not (len(X) == len(t) == len(y)):
            raise ValueError(f"X, treatment and y differ in length ({len(X)}, {len(t)}, {len(y)})")
        for arm, rows in (("treated", t), ("control", ~t)):
            if len(np.unique(y[rows] > 0)) < 2:
                raise ValueError(f"the {arm} rows need both outcomes ({int(rows.sum())} rows, "
                                 f"{int((y[rows] > 0).sum())} positive)")
        names = list(self.feature_names) if self.feature_names else [f"f{i}" for i in range(X.shape[1])]
        if len(names) != X.shape[1]:
            raise ValueError(f"{len(names)} feature names for {X.shape[1]} columns")
        self.feature_names_in_ = np.array(names, dtype=object)
        self.treated_share_ = float(t.mean())
        self.tau1_ = self.tau0_ = None
        if self.learner == "share":
            if lift_outcome is not None:
                lift_outcome = np.asarray(lift_outcome, dtype=np.float64)
                if len(lift_outcome) != len(y):
                    raise ValueError(f"lift_outcome has {len(lift_outcome)} rows for {len(y)}")
                if not np.isfinite(lift_outcome).all() or (lift_outcome < 0).any():
                    raise ValueError("lift_outcome must be finite purchase counts (>= 0)")
            return self._fit_share(X, t, y, accepted, groups, lift_outcome)
        y = (y > 0).astype(np.float64)
        self.mu1_ = self._train(X[t], y[t], "binary")
        self.mu0_ = self._train(X[~t], y[~t], "binary")
        if self.learner == "x":
            d1 = y[t] - self.mu0_.predict(X[t])
            d0 = self.mu1_.predict(X[~t]) - y[~t]
            self.tau1_ = self._train(X[t], d1, "regression")
            self.tau0_ = self._train(X[~t], d0, "regression")
        return self

    def _fit_share(self, X: np.ndarray, t: np.ndarray, y: np.ndarray, accepted: np.ndarray | None,
                   groups: np.ndarray | None, lift_outcome: np.ndarray | None = None) -> UpliftBooster:
        if accepted is None:
            raise ValueError("the share learner needs the acceptance of every contact (accepted)")
        a = np.asarray(accepted, dtype=np.float64)
        if len(a) != len(t) or len(np.unique(a[t])) < 2:
            raise ValueError("the contacts need both acceptances and refusals")
        cols = customer_category_columns(list(self.feature_names_in_))
        self.organic_columns_ = np.array(cols, dtype=np.int64)
        fold = _folds(groups, len(t))
        # Out-of-fold predictions: the organic model on the no-contact rows, the acceptance model on the contacts.
        y_lift = y if lift_outcome is None else lift_outcome
        m0_c = np.zeros(int((~t).sum()))
        p_t = np.zeros(int(t.sum()))
        for f in range(FOLDS):
            fit_c, fit_t = ~t & (fold != f), t & (fold != f)
            if len(np.unique(y_lift[fit_c] > 0)) > 1:
                m0_c[fold[~t] == f] = self._train(X[fit_c], y_lift[fit_c], "poisson", cols).predict(
                    X[~t & (fold == f)][:, cols], num_threads=1)
            else:
                m0_c[fold[~t] == f] = y_lift[fit_c].mean() if fit_c.any() else 0.0
            if len(np.unique(a[fit_t])) > 1:
                p_t[fold[t] == f] = self._train(X[fit_t], a[fit_t], "binary", monotone=MONOTONE_INCREASING).predict(
                    X[t & (fold == f)], num_threads=1)
            else:
                p_t[fold[t] == f] = a[fit_t].mean() if fit_t.any() else 0.0
        self.organic_ = self._train(X[~t], y[~t], "poisson", cols)
        self.accept_ = self._train(X[t], a[t], "binary", monotone=MONOTONE_INCREASING)
        m0_t = self.organic_.predict(X[t][:, cols], num_threads=1)  # the contacts were not fitted on
        lift_t = m0_t
        if lift_outcome is not None:  # the organic purchases within the acceptance span (the adjustment only)
            lift_t = (self._train(X[~t], y_lift[~t], "poisson", cols).predict(X[t][:, cols], num_threads=1)
                      if len(np.unique(y_lift[~t] > 0)) > 1 else np.full(int(t.sum()), y_lift[~t].mean()))
        # Incremental purchases per contact, regression-adjusted: the randomised difference in means.
        lift = float((y_lift[t] - lift_t).mean() - (y_lift[~t] - m0_c).mean())
        self.lift_ = lift
        self.beta_ = fit_beta(lift, p_t, 1.0 - np.exp(-m0_t))
        # What an unknown customer's acceptance is worth: the mean share of acceptances that are incremental.
        self.mean_share_ = float(np.clip(lift / max(float(p_t.mean()), 1e-12), 0.0, 1.0))
        return self

    @property
    def gives_acceptance(self) -> bool:
        """The model has its own acceptance model (`share`): the uplift objective then charges the
        incentive at that acceptance, so a variant's extra acceptances and its cost come from one model."""
        return getattr(self, "learner", "x") == "share" and hasattr(self, "accept_")

    def cold_start_uplift(self, p_accept: np.ndarray) -> np.ndarray | None:
        """tau of customers without features, from their fallback acceptance (e.g. the offers'
        popularity): p_accept x the mean incremental share measured on the log; None for the
        `t` and `x` learners (no such share)."""
        share = getattr(self, "mean_share_", None)
        return None if share is None else np.asarray(p_accept, dtype=np.float64) * share

    def predict_accept(self, X: np.ndarray) -> np.ndarray:
        """P(accept | contacted with the row's offer) (the `share` learner's acceptance model)."""
        check_is_fitted(self, "accept_")
        return self.accept_.predict(np.asarray(X, dtype=np.float32), num_threads=1)

    def predict_organic(self, X: np.ndarray) -> np.ndarray:
        """q: P(buys the row's category within the window without contact) (the `share` learner)."""
        check_is_fitted(self, "organic_")
        X = np.asarray(X, dtype=np.float32)[:, self.organic_columns_]
        return 1.0 - np.exp(-self.organic_.predict(X, num_threads=1))

    def predict_treated(self, X: np.ndarray) -> np.ndarray:
        """mu1: P(buys the row's category within the window | contacted with the row's offer)."""
        if getattr(self, "learner", "x") == "share":
            return np.clip(self.predict_organic(X) + self.predict_uplift(X), 0.0, 1.0)
        check_is_fitted(self, "mu1_")
        return self.mu1_.predict(np.asarray(X, dtype=np.float32), num_threads=1)

    def predict_control(self, X: np.ndarray) -> np.ndarray:
        """mu0: P(buys the row's category within the window | no contact)."""
        if getattr(self, "learner", "x") == "share":
            return self.predict_organic(X)
        check_is_fitted(self, "mu0_")
        return self.mu0_.predict(np.asarray(X, dtype=np.float32), num_threads=1)

    def predict_uplift(self, X: np.ndarray) -> np.ndarray:
        """tau: incremental conversion of each row's contact (probability difference, in [-1, 1])."""
        X = np.asarray(X, dtype=np.float32)
        if getattr(self, "learner", "x") == "share":
            check_is_fitted(self, "accept_")
            return self.predict_accept(X) * incremental_share(self.beta_, self.predict_organic(X))
        check_is_fitted(self, "mu1_")
        if self.tau1_ is None:
            tau = self.predict_treated(X) - self.predict_control(X)
        else:
            g = self.treated_share_
            tau = g * self.tau0_.predict(X, num_threads=1) + (1.0 - g) * self.tau1_.predict(X, num_threads=1)
        return np.clip(tau, -1.0, 1.0)


class UpliftPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper: `predict` takes a DataFrame with the feature columns, returns the uplift.

    Serving and evaluation unwrap it (`models.registry.load_model(..., kind="uplift")`) and call the estimator on NumPy.
    """

    def __init__(self, model: UpliftBooster, feature_set_version: str) -> None:
        self.model = model
        self.feature_set_version = feature_set_version

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        return self.model.predict_uplift(feature_matrix(self.model.feature_names_in_, model_input))

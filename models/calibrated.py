"""The model nbo logs and serves: a LightGBM booster plus its fitted calibration, as one estimator.

Propensities are multiplied by offer values in the ranking, so they must be calibrated. The
calibration (centered isotonic regression since issue 20, `models.calibration`: strictly
increasing, so it keeps the booster's ranking) is fitted on the latest (validation) period and
travels inside the logged model as knots applied with `np.interp`; serving calls `predict_proba` on a float32 matrix and never re-implements anything. The
fast path uses the raw booster on NumPy with one thread (~30 µs for one row, see STACK_NOTES).

Two objectives (docs/training.md):
- `binary`: each candidate row is one yes/no (accepted within the window), isotonic calibration;
- `choice`: each decision is one choice among its candidates (a contact log where every decision
  has exactly one acceptance, e.g. one purchase per shopping occasion among the brands on the
  shelf). The booster learns a utility per candidate with the conditional-logit (softmax within the
  decision) log-likelihood of McFadden (1974) as its loss, so candidates are compared with each
  other as the customer compared them; P(accept) of a candidate is the softmax of the utilities of
  the decision's candidates, calibrated by one temperature fitted on the later period (Guo et al.
  2017, "On calibration of modern neural networks": a monotone map that keeps every ranking and
  takes no plateau). Scoring then needs which rows form a decision (`group`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from features.feature_set import FEATURE_SET
from models.calibration import METHODS, calibration_knots
from models.compiled import Predictor, calibrated_predictor
from models.explain import PathExplainer

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "verbose": -1,
    "num_threads": 0,  # 0: chosen by `_threads` from the data size
    "seed": 0,
    "deterministic": True,
}


OBJECTIVES: tuple[str, ...] = ("binary", "choice")


def choice_probabilities(utility: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Softmax of `utility` within each group (rows sharing a `group` value, in any order)."""
    utility = np.asarray(utility, dtype=np.float64)
    group = np.asarray(group)
    if len(utility) != len(group):
        raise ValueError(f"{len(utility)} scores but {len(group)} group labels")
    if not len(utility):
        return np.zeros(0)
    order = np.argsort(group, kind="stable")
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    out = np.empty(len(utility))
    out[order] = _sorted_softmax(utility[order], starts)
    return out


def _sorted_softmax(z: np.ndarray, starts: np.ndarray) -> np.ndarray:
    sizes = np.diff(np.r_[starts, len(z)])
    e = np.exp(z - np.repeat(np.maximum.reduceat(z, starts), sizes))
    return e / np.repeat(np.add.reduceat(e, starts), sizes)


def _choice_nll(z: np.ndarray, y: np.ndarray, starts: np.ndarray) -> float:
    """Mean negative log-likelihood of the chosen rows (one per group) under the group softmax."""
    p = _sorted_softmax(z, starts)
    return float(-np.mean(np.log(np.clip(p[y > 0], 1e-15, 1.0))))


def _starts(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order grouping `group`'s labels contiguously (stable) and each group's first row in it."""
    order = np.argsort(group, kind="stable")
    g = np.asarray(group)[order]
    return order, np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.zeros(0, dtype=np.int64)


def _fit_temperature(z: np.ndarray, y: np.ndarray, starts: np.ndarray) -> float:
    """The temperature T minimising the choice log-loss of softmax(z / T) (bounded, 0.05-20)."""
    res = minimize_scalar(lambda t: _choice_nll(z / np.exp(t), y, starts), bounds=(np.log(0.05), np.log(20.0)),
                          method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def booster_params(overrides: dict[str, Any] | None, rows: int) -> dict[str, Any]:
    """LightGBM parameters of every nbo booster: `DEFAULT_PARAMS`, then `overrides`, with the number
    of threads chosen from the data size when not set (`_threads`). One set-up for the propensity
    model and the uplift model's learners (`models.uplift`)."""
    params = {**DEFAULT_PARAMS, **(overrides or {})}
    if not params.get("num_threads"):
        params["num_threads"] = _threads(rows)
    return params


def _threads(rows: int) -> int:
    """One thread below 200k rows: OpenMP's spin-waiting made a 2-thread fit of 11k rows 18x slower
    than a 1-thread fit on a busy 2-core machine (1.7 s vs 29 s); large fits gain from 2."""
    return 2 if rows >= 200_000 else 1


def negative_sample(y: np.ndarray, max_rows: int | None, seed: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(rows kept, their weights) of a binary fit held to about `max_rows` rows: every positive
    and a seeded uniform sample of the negatives, each kept negative weighted by negatives / kept
    negatives, so the weighted log-loss (and the gradient of every tree) is an unbiased estimate of
    the full one. (None, None) when `max_rows` is None or not exceeded: the rows as given.

    Why: the propensity set of a large log has ~40 negatives per positive (3M training rows at
    100,000 customers), and the booster's cost grows with the rows while the negatives' share of
    the information does not; early stopping and the calibration map still use every validation
    row, so the probabilities stay calibrated on the full distribution (docs/training.md)."""
    if max_rows is None or len(y) <= max_rows:
        return None, None
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, not {max_rows}")
    positive = np.flatnonzero(y > 0)
    negative = np.flatnonzero(y <= 0)
    room = max(max_rows - len(positive), 1)
    if room >= len(negative):
        return None, None
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(negative), size=room, replace=False))
    keep = np.sort(np.concatenate([positive, negative[picked]]))  # time order kept
    weight = np.where(y[keep] > 0, 1.0, len(negative) / room)
    return keep, weight


class CalibratedBooster(ClassifierMixin, BaseEstimator):
    """LightGBM with early stopping on a time-later validation set, then a monotone calibration.

    `fit(X, y, X_val, y_val)`: trees are grown on the earlier period; the number of trees and the
    calibration map are chosen on the later one, so calibration reflects the period nearest to
    serving time. `categorical`: names of columns LightGBM splits as categories; None means the
    feature set's `booster_categorical` (those among `feature_names`; the churn model has none).
    `calibration`: "centered_isotonic" (default; strictly increasing, `models.calibration`) or
    "isotonic" (the step map used before issue 20, whose plateaus tie scores).

    `objective`: "binary" or "choice" (module docstring; a choice fit needs `group` and
    `group_val`: the decision of each row). `attributes` and `offer_vocabulary` say how the
    model's inputs were built (the decision-time attribute names whose columns end the inputs, and
    the offer ids its `offer_code` numbers): the scorer builds the same (`features`).
    `max_rows`: a binary fit with more training rows grows its trees on every positive and a
    weighted sample of the negatives (`negative_sample`); `sampled_rows_` is how many it used.
    """

    #: Models pickled before the parameter existed were calibrated with the isotonic step map.
    calibration = "isotonic"
    #: Models pickled before `max_rows` existed were fitted on every row (and `get_params` of one
    #: still answers).
    max_rows: int | None = None

    def __init__(
        self,
        feature_names: list[str] | None = None,
        params: dict[str, Any] | None = None,
        num_boost_round: int = 400,
        early_stopping_rounds: int = 30,
        calibrate: bool = True,
        categorical: tuple[str, ...] | None = None,
        calibration: str = "centered_isotonic",
        objective: str = "binary",
        attributes: Sequence[str] = (),
        offer_vocabulary: Sequence[str] | None = None,
        max_rows: int | None = None,
    ) -> None:
        self.feature_names = feature_names
        self.params = params
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.calibrate = calibrate
        self.categorical = categorical
        self.calibration = calibration
        self.objective = objective
        self.attributes = attributes
        self.offer_vocabulary = offer_vocabulary
        self.max_rows = max_rows

    # Models pickled before these parameters existed lack them: read through these properties.
    @property
    def is_choice(self) -> bool:
        """True for a choice model: its P(accept) needs the decision of each row (`group`)."""
        return getattr(self, "objective", "binary") == "choice"

    @property
    def decision_attributes(self) -> tuple[str, ...]:
        """The decision-time offer attribute names whose columns end the model's inputs."""
        return tuple(getattr(self, "attributes", ()) or ())

    @property
    def vocabulary(self) -> tuple[str, ...] | None:
        """The offer ids the model's `offer_code` numbers (None: the model has no offer identity)."""
        vocab = getattr(self, "offer_vocabulary", None)
        return None if vocab is None else tuple(vocab)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        group: np.ndarray | None = None,
        group_val: np.ndarray | None = None,
    ) -> CalibratedBooster:
        if self.calibration not in METHODS:
            raise ValueError(f"unknown calibration {self.calibration!r}; use one of {', '.join(METHODS)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r} is not one of {', '.join(OBJECTIVES)}")
        if self.is_choice:
            return self._fit_choice(X, y, X_val, y_val, group, group_val)
        params = booster_params(self.params, len(X))
        names = list(self.feature_names) if self.feature_names else [f"f{i}" for i in range(X.shape[1])]
        # Columns split as categories (codes >= 0; NaN or negative = missing), by position.
        wanted = FEATURE_SET.booster_categorical if self.categorical is None else self.categorical
        categorical = [names.index(c) for c in wanted if c in names]
        keep, weight = negative_sample(np.asarray(y), self.max_rows, params.get("seed", 0))
        self.sampled_rows_ = len(y) if keep is None else len(keep)
        X_fit = np.asarray(X, dtype=np.float32) if keep is None else np.asarray(X, dtype=np.float32)[keep]
        y_fit = np.asarray(y) if keep is None else np.asarray(y)[keep]
        train = lgb.Dataset(X_fit, label=y_fit, weight=weight, feature_name=names,
                            categorical_feature=categorical or "auto", free_raw_data=True)
        del X_fit
        callbacks = []
        valid_sets = None
        if X_val is not None and y_val is not None and len(np.unique(y_val)) > 1:
            valid = lgb.Dataset(np.asarray(X_val, dtype=np.float32), label=np.asarray(y_val), reference=train)
            valid_sets = [valid]
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        self.booster_ = lgb.train(
            params, train, num_boost_round=self.num_boost_round, valid_sets=valid_sets, callbacks=callbacks
        )
        self.feature_names_in_ = np.array(names, dtype=object)
        self.classes_ = np.array([0, 1])
        self.calibration_x_ = np.array([0.0, 1.0])
        self.calibration_y_ = np.array([0.0, 1.0])
        if self.calibrate and X_val is not None and y_val is not None and len(np.unique(y_val)) > 1:
            raw = self._raw(np.asarray(X_val, dtype=np.float32))
            self.calibration_x_, self.calibration_y_ = calibration_knots(self.calibration, raw, np.asarray(y_val))
        return self

    def _fit_choice(self, X, y, X_val, y_val, group, group_val) -> CalibratedBooster:  # type: ignore[no-untyped-def]
        """Boosted conditional logit: the softmax-within-decision log-likelihood as a custom
        objective (gradient p - y, diagonal Hessian p (1 - p)), early stopping on the later
        period's choice log-loss, one temperature fitted on that period, then the same number of
        rounds grown on both periods (the model served)."""
        if group is None or X_val is None or y_val is None or group_val is None:
            raise ValueError("a choice fit needs X_val, y_val and the decision of every row (group, group_val)")
        params = booster_params(self.params, len(X))
        params.pop("objective", None)
        params["metric"] = "None"
        names = list(self.feature_names) if self.feature_names else [f"f{i}" for i in range(X.shape[1])]
        wanted = FEATURE_SET.booster_categorical if self.categorical is None else self.categorical
        categorical = [names.index(c) for c in wanted if c in names]
        order, starts = _starts(np.asarray(group))
        order_v, starts_v = _starts(np.asarray(group_val))
        y_s = np.asarray(y, dtype=np.float64)[order]
        y_v = np.asarray(y_val, dtype=np.float64)[order_v]
        train = lgb.Dataset(np.asarray(X, dtype=np.float32)[order], label=y_s, feature_name=names,
                            categorical_feature=categorical or "auto", free_raw_data=True)
        valid = lgb.Dataset(np.asarray(X_val, dtype=np.float32)[order_v], label=y_v, reference=train)

        def softmax_loss(preds: np.ndarray, _data: lgb.Dataset) -> tuple[np.ndarray, np.ndarray]:
            p = _sorted_softmax(preds, starts)
            return p - y_s, np.maximum(p * (1.0 - p), 1e-6)

        def choice_logloss(preds: np.ndarray, _data: lgb.Dataset) -> tuple[str, float, bool]:
            return "choice_logloss", _choice_nll(preds, y_v, starts_v), False

        params["objective"] = softmax_loss
        trained = lgb.train(params, train, num_boost_round=self.num_boost_round, valid_sets=[valid],
                            feval=choice_logloss, callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)])
        best = trained.best_iteration or trained.current_iteration()
        # The temperature is fitted on the later period, out of sample for the model grown without it.
        z = trained.predict(np.asarray(X_val, dtype=np.float32)[order_v], num_iteration=best)
        self.temperature_ = _fit_temperature(z, y_v, starts_v) if self.calibrate else 1.0
        # Then the served model is grown again, `best` rounds, on both periods: a choice log is
        # usually small (a panel of households), and its latest period is the one nearest to
        # serving; holding it out would serve a model that never saw it.
        # Each block is grouped already: one after the other, every decision stays contiguous.
        starts_all = np.r_[starts, len(order) + starts_v]
        X_all = np.vstack([np.asarray(X, dtype=np.float32)[order], np.asarray(X_val, dtype=np.float32)[order_v]])
        y_all = np.r_[y_s, y_v]
        full = lgb.Dataset(X_all, label=y_all, feature_name=names, categorical_feature=categorical or "auto",
                           free_raw_data=True)

        def softmax_loss_all(preds: np.ndarray, _data: lgb.Dataset) -> tuple[np.ndarray, np.ndarray]:
            p = _sorted_softmax(preds, starts_all)
            return p - y_all, np.maximum(p * (1.0 - p), 1e-6)

        params["objective"] = softmax_loss_all
        refit = lgb.train(params, full, num_boost_round=best)
        # A booster rebuilt from its text: no Python objective held (it pickles and compiles alike).
        self.booster_ = lgb.Booster(model_str=refit.model_to_string())
        self.booster_.best_iteration = best
        self.sampled_rows_ = len(X) + len(X_val)  # a choice fit keeps whole decisions: never sampled
        self.feature_names_in_ = np.array(names, dtype=object)
        self.classes_ = np.array([0, 1])
        self.calibration_x_ = np.array([0.0, 1.0])
        self.calibration_y_ = np.array([0.0, 1.0])
        return self

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return self.booster_.predict(X, num_threads=1 if len(X) < 5000 else 0)

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """The booster's uncalibrated probability (what the calibration map is applied to)."""
        check_is_fitted(self, "booster_")
        return self._raw(np.asarray(X, dtype=np.float32))

    def crossfit_proba(self, X_val: np.ndarray | None, y_val: np.ndarray, folds: int = 2,
                       group: np.ndarray | None = None, raw: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities of the validation rows, each from a calibration map (the model's
        method) fitted on the *other* folds (contiguous blocks, in the rows' order - time order for nbo's sets).

        The shipped calibration is fitted on all validation rows, so scoring those rows with it
        would flatter the calibration metrics; the report uses these instead. A choice model
        (`group`: each row's decision) folds by decision and fits its temperature on the others.
        `raw`: the rows' `raw_score`, when the caller has it (the booster is not asked again:
        scoring 750k rows with 400 trees costs tens of CPU seconds); else computed from `X_val`.
        """
        check_is_fitted(self, "booster_")
        if raw is None:
            if X_val is None:
                raise ValueError("crossfit_proba needs X_val or raw")
            raw = self._raw(np.asarray(X_val, dtype=np.float32))
        raw = np.asarray(raw)
        if len(raw) != len(y_val):
            raise ValueError(f"{len(raw)} scores but {len(y_val)} labels")
        y_val = np.asarray(y_val)
        if self.is_choice:
            return self._crossfit_choice(raw, y_val, self._group(group), folds)
        if not self.calibrate or len(np.unique(y_val)) < 2:
            return np.interp(raw, self.calibration_x_, self.calibration_y_)
        out = np.empty(len(raw))
        blocks = np.array_split(np.arange(len(raw)), folds)
        for block in blocks:
            rest = np.setdiff1d(np.arange(len(raw)), block, assume_unique=True)
            if len(np.unique(y_val[rest])) < 2:
                out[block] = np.interp(raw[block], self.calibration_x_, self.calibration_y_)
                continue
            knots_x, knots_y = calibration_knots(self.calibration, raw[rest], y_val[rest])
            out[block] = np.interp(raw[block], knots_x, knots_y)
        return out

    def _crossfit_choice(self, raw: np.ndarray, y: np.ndarray, group: np.ndarray, folds: int) -> np.ndarray:
        codes = pd.factorize(group)[0]  # decisions in order of first appearance (time order)
        n_d = int(codes.max()) + 1 if len(codes) else 0
        blocks = np.array_split(np.arange(n_d), folds)
        out = np.empty(len(raw))
        for block in blocks:
            inside = np.isin(codes, block)
            rest = ~inside
            t = self.temperature_
            if self.calibrate and rest.any() and y[rest].sum() > 0:
                order, starts = _starts(codes[rest])
                t = _fit_temperature(raw[rest][order], y[rest][order], starts)
            out[inside] = choice_probabilities(raw[inside] / t, codes[inside])
        return out

    @staticmethod
    def _group(group: np.ndarray | None) -> np.ndarray:
        if group is None:
            raise ValueError("a choice model scores the candidates of a decision together: pass `group` "
                             "(the decision of each row)")
        return np.asarray(group)

    def apply_calibration(self, raw: np.ndarray, group: np.ndarray | None = None) -> np.ndarray:
        """The fitted calibration applied to raw booster scores (what `raw_score` returns); a
        choice model needs each row's decision (`group`). On the request path: no
        `check_is_fitted` here (the predictor that calls it checked)."""
        if self.is_choice:
            return choice_probabilities(np.asarray(raw, dtype=np.float64) / self.temperature_, self._group(group))
        return np.interp(raw, self.calibration_x_, self.calibration_y_)

    def predict_proba_positive(self, X: np.ndarray, group: np.ndarray | None = None) -> np.ndarray:
        """Calibrated P(y=1) for a float32 matrix with the columns of `feature_names_in_`; for a
        choice model, `group` gives each row's decision (the softmax runs within it)."""
        check_is_fitted(self, "booster_")
        raw = self._raw(np.asarray(X, dtype=np.float32))
        if self.is_choice:
            return self.apply_calibration(raw, group)
        return np.interp(raw, self.calibration_x_, self.calibration_y_)

    def fast_predictor(self, sample: np.ndarray | None, label: str = "model",
                       cache_dir: Path | None = None) -> tuple[Predictor, str]:
        """`predict_proba_positive` from the forest compiled to machine code when it matches this
        model on `sample` (`models.compiled`), else the interpreted one; and which it is."""
        check_is_fitted(self, "booster_")
        return calibrated_predictor(self, sample, label, cache_dir)

    def path_explainer(self) -> PathExplainer:
        """Fast per-feature attributions of the booster's raw score (`models.explain`)."""
        check_is_fitted(self, "booster_")
        return PathExplainer(self.booster_)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = self.predict_proba_positive(X)
        return np.column_stack([1 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba_positive(X) >= 0.5).astype(int)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """SHAP values in log-odds per feature (last column: the bias), from `pred_contrib`."""
        check_is_fitted(self, "booster_")
        return self.booster_.predict(np.asarray(X, dtype=np.float32), pred_contrib=True, num_threads=1)

    def gain_importance(self) -> np.ndarray:
        check_is_fitted(self, "booster_")
        return self.booster_.feature_importance(importance_type="gain")


def __getattr__(name: str) -> object:
    """`NboPyfunc`, for the pickles of models registered before it moved to `models.pyfunc` (they
    name `models.calibrated.NboPyfunc`). Imported on first use: loading the estimator alone (a
    service start, `models.prepared`) does not import MLflow."""
    if name == "NboPyfunc":
        from models.pyfunc import NboPyfunc

        return NboPyfunc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

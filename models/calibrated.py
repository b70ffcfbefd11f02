"""The model nbo logs and serves: a LightGBM booster plus its fitted calibration, as one estimator.

Propensities are multiplied by offer values in the ranking, so they must be calibrated. The
calibration (centered isotonic regression since issue 20, `models.calibration`: strictly
increasing, so it keeps the booster's ranking) is fitted on the latest (validation) period and
travels inside the logged model as knots applied with `np.interp`; serving calls `predict_proba` on a float32 matrix and never re-implements anything. The
fast path uses the raw booster on NumPy with one thread (~30 µs for one row, see STACK_NOTES).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
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


def _threads(rows: int) -> int:
    """One thread below 200k rows: OpenMP's spin-waiting made a 2-thread fit of 11k rows 18x slower
    than a 1-thread fit on a busy 2-core machine (1.7 s vs 29 s); large fits gain from 2."""
    return 2 if rows >= 200_000 else 1


class CalibratedBooster(ClassifierMixin, BaseEstimator):
    """LightGBM with early stopping on a time-later validation set, then a monotone calibration.

    `fit(X, y, X_val, y_val)`: trees are grown on the earlier period; the number of trees and the
    calibration map are chosen on the later one, so calibration reflects the period nearest to
    serving time. `categorical`: names of columns LightGBM splits as categories; None means the
    feature set's `booster_categorical` (those among `feature_names`; the churn model has none).
    `calibration`: "centered_isotonic" (default; strictly increasing, `models.calibration`) or
    "isotonic" (the step map used before issue 20, whose plateaus tie scores).
    """

    #: Models pickled before the parameter existed were calibrated with the isotonic step map.
    calibration = "isotonic"

    def __init__(
        self,
        feature_names: list[str] | None = None,
        params: dict[str, Any] | None = None,
        num_boost_round: int = 400,
        early_stopping_rounds: int = 30,
        calibrate: bool = True,
        categorical: tuple[str, ...] | None = None,
        calibration: str = "centered_isotonic",
    ) -> None:
        self.feature_names = feature_names
        self.params = params
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.calibrate = calibrate
        self.categorical = categorical
        self.calibration = calibration

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> CalibratedBooster:
        if self.calibration not in METHODS:
            raise ValueError(f"unknown calibration {self.calibration!r}; use one of {', '.join(METHODS)}")
        params = {**DEFAULT_PARAMS, **(self.params or {})}
        if not params.get("num_threads"):
            params["num_threads"] = _threads(len(X))
        names = list(self.feature_names) if self.feature_names else [f"f{i}" for i in range(X.shape[1])]
        # Columns split as categories (codes >= 0; NaN or negative = missing), by position.
        wanted = FEATURE_SET.booster_categorical if self.categorical is None else self.categorical
        categorical = [names.index(c) for c in wanted if c in names]
        train = lgb.Dataset(np.asarray(X, dtype=np.float32), label=np.asarray(y), feature_name=names,
                            categorical_feature=categorical or "auto", free_raw_data=True)
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

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return self.booster_.predict(X, num_threads=1 if len(X) < 5000 else 0)

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """The booster's uncalibrated probability (what the calibration map is applied to)."""
        check_is_fitted(self, "booster_")
        return self._raw(np.asarray(X, dtype=np.float32))

    def crossfit_proba(self, X_val: np.ndarray, y_val: np.ndarray, folds: int = 2) -> np.ndarray:
        """Calibrated probabilities of the validation rows, each from a calibration map (the model's
        method) fitted on the *other* folds (contiguous blocks, in the rows' order - time order for nbo's sets).

        The shipped calibration is fitted on all validation rows, so scoring those rows with it
        would flatter the calibration metrics; the report uses these instead.
        """
        check_is_fitted(self, "booster_")
        raw = self._raw(np.asarray(X_val, dtype=np.float32))
        y_val = np.asarray(y_val)
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

    def apply_calibration(self, raw: np.ndarray) -> np.ndarray:
        """The fitted calibration applied to raw booster probabilities (what `raw_score` returns).
        On the request path: no `check_is_fitted` here (the predictor that calls it checked)."""
        return np.interp(raw, self.calibration_x_, self.calibration_y_)

    def predict_proba_positive(self, X: np.ndarray) -> np.ndarray:
        """Calibrated P(y=1) for a float32 matrix with the columns of `feature_names_in_`."""
        check_is_fitted(self, "booster_")
        raw = self._raw(np.asarray(X, dtype=np.float32))
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

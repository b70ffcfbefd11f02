"""Missing values filled with each column's median, for the logistic baseline.

scikit-learn's `SimpleImputer(strategy="median")` finds the medians through masked arrays (a full
sort of every column): 5.6 s of CPU on 305k x 190 training rows, half of the baseline's fit, and
~10x that on a 100,000-customer world. `np.nanmedian` partitions instead (0.6 s) and gives the
same medians; this transformer fills exactly as `SimpleImputer(strategy="median",
keep_empty_features=True)` does (a column with no value gets 0; the output keeps the input's
float dtype), so the baseline's scores are unchanged (tested; with BLAS on one thread, as
`training.train` fits it).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted


class MedianImputer(TransformerMixin, BaseEstimator):
    """NaN replaced by the column's median over the fitted rows (0 for a column without a value)."""

    def fit(self, X: np.ndarray, y: object = None) -> MedianImputer:
        X = np.asarray(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: "All-NaN slice"
            medians = np.nanmedian(X, axis=0) if len(X) else np.full(X.shape[1], np.nan)
        self.statistics_ = np.where(np.isnan(medians), 0.0, medians).astype(np.float64)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = np.array(X, copy=True)
        if X.dtype.kind != "f":
            X = X.astype(np.float64)
        rows, cols = np.nonzero(np.isnan(X))
        X[rows, cols] = self.statistics_.astype(X.dtype)[cols]
        return X

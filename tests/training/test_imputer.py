"""MedianImputer fills as scikit-learn's SimpleImputer(strategy="median", keep_empty_features=True)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.impute import SimpleImputer

from training.imputer import MedianImputer


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_fill_as_simple_imputer(dtype: type) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(501, 6)).astype(dtype)
    X[rng.random(X.shape) < 0.3] = np.nan
    X[:, 4] = np.nan  # a column without a value
    X[:, 5] = np.round(X[:, 5])  # ties at the median
    X[::2, 2] = np.nan  # an even count of values left in one column
    ours = MedianImputer().fit(X)
    theirs = SimpleImputer(strategy="median", keep_empty_features=True).fit(X)
    np.testing.assert_array_equal(ours.statistics_, theirs.statistics_)
    new = rng.normal(size=(50, 6)).astype(dtype)
    new[rng.random(new.shape) < 0.5] = np.nan
    out, expected = ours.transform(new), theirs.transform(new)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)
    assert np.isnan(new).any()  # the input was not filled in place

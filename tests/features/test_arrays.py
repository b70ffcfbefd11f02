"""`features.arrays.positions`: every path (a small index's dict, one id, Arrow's kernels, pandas'
indexer) gives pandas' `get_indexer` answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.arrays import positions


def _expected(index: pd.Index, values: object) -> np.ndarray:
    return pd.Index(index.tolist(), dtype=object).get_indexer(np.asarray(values, dtype=object))


# Around the paths' bounds: a dict up to 256 ids, Arrow from 10,000 values.
@pytest.mark.parametrize("n_index", [0, 1, 2, 8, 32, 256, 257, 1000])
@pytest.mark.parametrize("n_values", [0, 1, 50, 3000, 10_000])
@pytest.mark.parametrize("kind", ["object", "str"])
def test_positions_is_get_indexer(n_index: int, n_values: int, kind: str) -> None:
    rng = np.random.default_rng(n_index * 7 + n_values)
    ids = [f"c{i:05d}" for i in range(n_index)]
    pool = np.array(ids + ["absent", "c99999", ""], dtype=object)
    drawn = rng.choice(pool, n_values).astype(object)
    drawn[rng.random(n_values) < 0.05] = None  # missing ids are never found
    index = pd.Index(ids, dtype="str")
    values = drawn if kind == "object" else pd.Series(drawn, dtype="str")
    got = positions(index, values)
    assert got.dtype.kind == "i" and got.shape == (n_values,)
    np.testing.assert_array_equal(got, _expected(index, drawn))


def test_a_block_of_customers_finds_each_contact_row() -> None:
    index = pd.Index(["b", "a", "c"], dtype="str")
    rows = np.array(["a", "a", "x", "c", None, "b"], dtype=object)
    np.testing.assert_array_equal(positions(index, rows), [1, 1, -1, 2, -1, 0])

"""The selection rule: rank probabilities, and the block form equal to the row form draw for draw."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import serving.selection as selection
from serving.draws import seeded_draws
from serving.policy import Arbitration, Exploration
from serving.selection import rank_probabilities, select_block


@dataclass(frozen=True)
class _Offer:
    offer_id: str
    category: str


@pytest.mark.parametrize("method", ["epsilon_greedy", "softmax"])
def test_rank_probabilities_sum_to_one_and_favour_the_best(method: str) -> None:
    exp = Exploration(rate=0.3, method=method, temperature=2.0)
    probs = rank_probabilities([5.0, 3.0, 3.0, -1.0], exp)
    assert sum(probs) == pytest.approx(1.0)
    assert probs[0] >= 0.7 and all(p > 0 for p in probs)
    assert rank_probabilities([5.0, 3.0], Exploration(rate=0.0)) == [1.0, 0.0]
    assert rank_probabilities([5.0], exp) == [1.0]


@pytest.mark.parametrize("rate", [0.0, 0.2, 1.0])
def test_block_selection_equals_the_row_rule(rate: float) -> None:
    """`select_block` over arrays (many rows) and through `select_row` (few rows) agree exactly."""
    rng = np.random.default_rng(3)
    n, m, k = 40, 9, 3
    offers = [_Offer(f"o{j}", "abc"[j % 3]) for j in range(m)]
    ids = np.array([o.offer_id for o in offers], dtype=object)
    id_order = np.argsort(np.argsort(ids, kind="stable"), kind="stable")
    category = np.array([j % 3 for j in range(m)], dtype=np.int64)
    ev = rng.choice([0.5, 1.0, 1.0, 2.0, 3.5], size=(n, m))  # ties: the smaller offer id first
    eligible = rng.random((n, m)) < 0.7
    ev = np.where(eligible, ev, np.nan)
    seeds = rng.integers(0, 2**63, size=n, dtype=np.uint64)
    arb = Arbitration(max_per_category=2, exploration=Exploration(rate=rate))
    got = {}
    for rows_for_arrays in (0, 10**6):
        before, selection.ROWS_FOR_ARRAYS = selection.ROWS_FOR_ARRAYS, rows_for_arrays
        try:
            got[rows_for_arrays] = select_block(ev, eligible, offers, id_order, category, k, seeded_draws(seeds), arb)
        finally:
            selection.ROWS_FOR_ARRAYS = before
    for a, b in zip(got[0], got[10**6], strict=True):
        np.testing.assert_array_equal(a, b)
    picks, props, _ = got[0]
    assert (picks >= 0).any()
    assert ((props > 0) == (picks >= 0)).all()

"""The refitter's training rows: built period by period, they are the rows built at once."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator import SimConfig, Simulator
from simulator.io import dataset
from training.datasets import propensity_set


def test_propensity_rows_built_in_periods_equal_rows_built_at_once() -> None:
    """A refit appends the rows whose window closed since the previous one: the pieces must be
    exactly the rows one build at the end gives (no row lost, none twice, same features)."""
    sim = Simulator(SimConfig(customers=120, days=40), seed=4)
    sim.run()
    data = dataset(sim)
    start = pd.Timestamp(sim.config.start)
    cuts = [start + pd.Timedelta(days=d) for d in (20, 30, 40)]
    pieces, after = [], None
    for cut in cuts:
        pieces.append(propensity_set(data, cut, 7, progress=False, after=after))
        after = cut - pd.Timedelta(days=7)
    whole = propensity_set(data, cuts[-1], 7, progress=False)
    assert all(len(p) > 0 for p in pieces)
    np.testing.assert_array_equal(np.concatenate([p.y for p in pieces]), whole.y)
    np.testing.assert_array_equal(np.concatenate([p.X for p in pieces]), whole.X)
    assert list(pd.concat([p.meta["decision_id"] for p in pieces])) == list(whole.meta["decision_id"])

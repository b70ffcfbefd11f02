"""The relationship stage crossed with the offer kind (features/stage.py)."""

from __future__ import annotations

import numpy as np

from tests.features.conftest import candidate_rows as _candidates


def test_stage_kind_code_crosses_recency_and_buying_with_the_offer_kind() -> None:
    out = _candidates()
    # a: last active 2 days ago (<= 14), has bought -> stage 0 + 5; b: never active, never bought -> 4
    kinds = {o: int(out.loc[("a", o), "offer_kind_code"]) for o in ("trip", "book")}
    assert out.loc[("a", "trip"), "stage_kind_code"] == 5 * 5 + kinds["trip"]
    assert out.loc[("a", "book"), "stage_kind_code"] == 5 * 5 + kinds["book"]
    assert out.loc[("b", "trip"), "stage_kind_code"] == 4 * 5 + kinds["trip"]
    from features.stage import stage_kind_code

    got = stage_kind_code(np.array([14.0, 14.5, 30.0, 61.0, 120.0, 121.0, np.nan]), np.array([0, 0, 1, 1, 1, 0, 1]),
                          np.array([2, 2, 0, 0, 4, 1, -1]))
    np.testing.assert_array_equal(got[:6], [0 * 5 + 2, 1 * 5 + 2, 6 * 5 + 0, 8 * 5 + 0, 8 * 5 + 4, 4 * 5 + 1])
    assert np.isnan(got[6])

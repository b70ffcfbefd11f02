"""The offer's own candidate columns (features/offers.py)."""

from __future__ import annotations


from tests.features.conftest import candidate_rows as _candidates


def test_offer_attributes() -> None:
    out = _candidates()
    trip, seed = out.loc[("a", "trip")], out.loc[("a", "seed")]
    assert (trip["offer_kind_cross_sell"], trip["offer_kind_upsell"], trip["offer_kind_code"]) == (1, 0, 1)
    assert (seed["offer_kind_loyalty"], seed["offer_kind_code"]) == (1, 4)
    assert (trip["offer_value"], trip["offer_cost"]) == (40.0, 0.5)

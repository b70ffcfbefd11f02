"""Arbitration by incremental value (`arbitration.objective = "uplift"`, issue 21 item 4) on
hand-made cases: the cheapest paying incentive variant, no contact when nothing pays, fatigue
costs, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from nbo.errors import ConfigError
from serving.catalogue import compile_offer_rules
from serving.policy import Arbitration, ContactPolicy, Exploration, parse_policy
from serving.ranking import Arbiter, cheapest_paying
from tests.serving.helpers import make_offers
from tests.serving.test_ranking import FEATURES, T0

# A pair of shoes worth a margin of 30, plain or with 10 (pct10) or 20 (pct20) given away per
# acceptance, and a book worth 10. Contact cost 0.1 each.
OFFERS = make_offers([
    {"offer_id": "shoe", "category": "fashion", "value": 30.0, "cost": 0.1, "base_offer_id": "shoe",
     "incentive": None, "incentive_cost": 0.0},
    {"offer_id": "shoe-pct10", "category": "fashion", "value": 20.0, "cost": 0.1, "base_offer_id": "shoe",
     "incentive": "pct10", "incentive_cost": 10.0},
    {"offer_id": "shoe-pct20", "category": "fashion", "value": 10.0, "cost": 0.1, "base_offer_id": "shoe",
     "incentive": "pct20", "incentive_cost": 20.0},
    {"offer_id": "book", "category": "books", "value": 10.0, "cost": 0.1, "base_offer_id": "book",
     "incentive": None, "incentive_cost": 0.0},
])
# A price-sensitive customer who buys shoes anyway: the plain offer is accepted often and changes
# nothing; 10 % off adds purchases; 20 % off adds a few more. The book is accepted, never added.
P = {"shoe": 0.30, "shoe-pct10": 0.35, "shoe-pct20": 0.40, "book": 0.5}
TAU = {"shoe": 0.001, "shoe-pct10": 0.20, "shoe-pct20": 0.42, "book": 0.0}
# Incremental value: tau x 30 - p x incentive - 0.1:
#   shoe -0.07, pct10 6 - 3.5 - 0.1 = 2.4, pct20 12.6 - 8 - 0.1 = 4.5; book -0.1.


def _arbiter(objective: str = "uplift", hurdle: float = 0.0, fatigue: dict | None = None, k: int = 1) -> Arbiter:
    policy = ContactPolicy(arbitration=Arbitration(objective=objective, incentive_hurdle=hurdle,
                                                   fatigue_cost=fatigue or {},
                                                   exploration=Exploration(rate=0.0)))
    return Arbiter(policy, OFFERS, compile_offer_rules(OFFERS, FEATURES))


def test_the_cheapest_variant_that_pays_is_chosen() -> None:
    # 20 % off adds 2.1 over 10 % off: below a hurdle of 3, 10 % off is the right price.
    d = _arbiter(hurdle=3.0).decide("c1", "web", T0, P, uplift=TAU, k=2, rng=0)
    assert [o.offer_id for o in d.offers] == ["shoe-pct10"]
    assert d.offers[0].expected_value == pytest.approx(2.4)
    assert "best incremental value" in d.offers[0].reasons
    why = {s.offer_id: s.reason for s in d.suppressed}
    assert why == {"shoe": "min_value", "shoe-pct20": "incentive_variant", "book": "min_value"}
    # Without a hurdle the costlier variant pays for itself (4.5 > 2.4) and is chosen.
    d = _arbiter(hurdle=0.0).decide("c1", "web", T0, P, uplift=TAU, k=2, rng=0)
    assert [o.offer_id for o in d.offers] == ["shoe-pct20"]
    assert {s.offer_id: s.reason for s in d.suppressed}["shoe-pct10"] == "incentive_variant"


def test_response_ranking_stays_available_and_credits_the_buyers_anyway() -> None:
    d = _arbiter(objective="response").decide("c1", "web", T0, P, uplift=TAU, k=2, rng=0)
    # p x value - cost: shoe 8.9, pct10 6.9, pct20 3.9, book 4.9: the plain shoe, then the book.
    assert [o.offer_id for o in d.offers] == ["shoe", "book"]
    assert "best expected value" in d.offers[0].reasons


def test_no_contact_wins_when_nothing_pays() -> None:
    nothing = {o: 0.0 for o in TAU}
    d = _arbiter().decide("c1", "web", T0, P, uplift=nothing, k=3, rng=0)
    assert d.offers == []
    assert {s.reason for s in d.suppressed} == {"min_value"}
    assert d.slate_propensity == 1.0


def test_fatigue_cost_is_charged_per_contact_on_its_channel() -> None:
    arb = _arbiter(hurdle=3.0, fatigue={"email": 3.0})
    assert [o.offer_id for o in arb.decide("c1", "web", T0, P, uplift=TAU, rng=0).offers] == ["shoe-pct10"]
    d = arb.decide("c1", "email", T0, P, uplift=TAU, consents={"email": True}, rng=0)
    # email: pct10 2.4 - 3 < 0 and pct20 4.5 - 3 = 1.5 > 0: the only variant that pays.
    assert [o.offer_id for o in d.offers] == ["shoe-pct20"]
    assert d.offers[0].expected_value == pytest.approx(1.5)


def test_cheapest_paying_walks_variants_by_cost() -> None:
    ev = np.array([[1.0, 1.5, 1.4, 0.5], [np.nan, 2.0, 9.0, 0.5], [np.nan, np.nan, np.nan, 0.5]])
    eligible = np.isfinite(ev)
    group, cost, order = np.array([0, 0, 0, 1]), np.array([0.0, 10.0, 20.0, 0.0]), np.arange(4)
    kept = cheapest_paying(ev, eligible, group, cost, order, hurdle=0.0)
    np.testing.assert_array_equal(kept, [[False, True, False, True], [False, False, True, True],
                                         [False, False, False, True]])
    kept = cheapest_paying(ev, eligible, group, cost, order, hurdle=1.0)
    np.testing.assert_array_equal(kept[:2, :3], [[True, False, False], [False, False, True]])


def test_bad_input_one_clear_error() -> None:
    free = OFFERS.copy()
    free.loc[1, "incentive_cost"] = np.nan
    with pytest.raises(ConfigError, match="offer 'shoe-pct10' is an incentive variant \\('pct10'\\) without an incentive_cost"):
        Arbiter(ContactPolicy(), free, {})
    with pytest.raises(ValueError, match="objective 'uplift' needs the incremental conversion"):
        _arbiter().decide("c1", "web", T0, P, rng=0)
    with pytest.raises(ConfigError, match="arbitration.objective"):
        parse_policy('[arbitration]\nobjective = "profit"\n')
    with pytest.raises(ConfigError, match="arbitration.fatigue_cost"):
        parse_policy('[arbitration.fatigue_cost]\nemail = -1.0\n')
    # An offer without an uplift score is suppressed as an invalid score, not ranked.
    d = _arbiter().decide("c1", "web", T0, P, uplift={"shoe-pct10": 0.2}, rng=0)
    assert {s.offer_id: s.reason for s in d.suppressed}["shoe-pct20"] == "invalid_score"

"""The closed loop by incremental value (issue 21 item 6): the oracle values offers at their true
incremental value, and the policies' books are the simulator's."""

from __future__ import annotations

import numpy as np
import pandas as pd

from evaluation.uplift_loop import oracle_scorer, run_uplift_policy, uplift_policy
from serving.policy import ContactPolicy
from simulator import SimConfig, Simulator
from simulator.config import DEFAULT_INCENTIVES

CONFIG = SimConfig(customers=150, days=12, cannibalisation=True, incentives=DEFAULT_INCENTIVES, anyway_value_share=0.2)


def test_the_oracle_values_each_offer_at_its_true_incremental_value() -> None:
    sim = Simulator(CONFIG, seed=2)
    sim.run(days=5)
    seen = {}

    def capture(view):  # type: ignore[no-untyped-def]
        seen["view"] = view
        from simulator.policies import Contacts
        return Contacts.empty()

    sim.step(capture)
    view = seen["view"]
    policy = uplift_policy("oracle", sim, ContactPolicy(), None, seed=0)
    opp = policy.opportunities(view)
    assert len(opp) > 20
    p, _, tau = oracle_scorer(view, opp)
    n_o = view.offers.n
    c, ch = opp["customer"].to_numpy(), opp["channel"].to_numpy()
    effect = view.effect(np.repeat(c, n_o), np.tile(np.arange(n_o), len(c)), np.repeat(ch, n_o))
    cat = view.offers
    ev = tau * cat.base_value[None, :] - p * cat.incentive_cost[None, :] - cat.cost[None, :]
    assert np.allclose(ev.ravel(), effect.incremental_value, atol=1e-9)
    assert ((tau >= 0) & (tau <= 1)).all()


def test_books_of_no_contact_and_the_oracle() -> None:
    none = run_uplift_policy("no_contact", CONFIG, 1, ContactPolicy(), None)
    assert none.contacts == 0 and none.incremental_value == 0 and none.discounts_given == 0
    oracle = run_uplift_policy("oracle", CONFIG, 1, ContactPolicy(), None)
    random = run_uplift_policy("random", CONFIG, 1, ContactPolicy(), None)
    assert oracle.contacts > 0 and oracle.incremental_value > random.incremental_value
    assert oracle.discounts_given <= oracle.incentive_offers and oracle.accepted_anyway <= oracle.accepted
    daily = pd.DataFrame([r.__dict__ for r in Simulator(CONFIG, seed=1).run(policy=None)])
    assert random.contacts == int(daily["contacts"].sum())  # the logging policy, the same world

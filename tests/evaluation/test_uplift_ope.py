"""The randomised log of the OPE check (evaluation.uplift_loop.uplift_ope): an ArbiterPolicy with
log_no_offers applies the control group and the no-offer exploration and logs every decision."""

from __future__ import annotations

import numpy as np

from evaluation.sim_policies import ArbiterPolicy, truth_scorer
from evaluation.uplift_loop import logging_policy
from nbo.control import in_control
from serving.policy import ContactPolicy
from simulator import SimConfig, Simulator
from simulator.config import DEFAULT_INCENTIVES
from simulator.io import dataset

CONFIG = SimConfig(customers=120, days=10, cannibalisation=True, incentives=DEFAULT_INCENTIVES)


def _log(policy: ContactPolicy):
    sim = Simulator(CONFIG, seed=4)
    offers = sim.catalogue.to_frame(CONFIG)

    def flat(view, opp):  # type: ignore[no-untyped-def]
        return np.ones((len(opp), len(offers))), truth_scorer(view, opp)[1]

    logger = ArbiterPolicy("logging", policy, offers, flat, sim.population.contact_intensity, CONFIG.banner_rate, 1,
                           skip_refused=True, log_no_offers=True)
    first = 0
    for _ in range(CONFIG.days):
        sim.step(logger)
        logger.observe(sim, first)
        first += sim.results[-1].contacts
    return dataset(sim)


def test_no_contact_decisions_are_logged_with_their_propensities_and_the_control_group_is_never_contacted():
    policy = logging_policy(ContactPolicy(), control_share=0.2, no_offer_rate=0.25)
    data = _log(policy)
    none, contacts = data.no_offers, data.contacts
    assert {"control", "explore"} <= set(none["reason"])
    share, rate = 0.2, 0.25
    explore = none[none["reason"] == "explore"]
    on_group_channel = explore["channel"].isin(policy.control_group.channels).to_numpy()  # banners hold no control group
    assert on_group_channel.any() and not on_group_channel.all()
    assert np.allclose(explore["propensity"], np.where(on_group_channel, share + (1 - share) * rate, rate))
    control = none[none["reason"] == "control"]
    assert control["channel"].isin(policy.control_group.channels).all()
    assert in_control(control["customer_id"].tolist(), share, policy.control_group.salt).all()
    held = contacts["channel"].isin(policy.control_group.channels)
    group = in_control(contacts["customer_id"].tolist(), share, policy.control_group.salt)
    assert not (held.to_numpy() & group).any()  # the control group is never contacted on its channels
    # An offer's logged propensity: uniform among the eligible ones, times P(an offer is made).
    kept = np.where(held, (1 - share) * (1 - rate), 1 - rate)
    assert (contacts["propensity"].to_numpy() <= kept + 1e-12).all()
    assert (contacts["propensity"] > 0).all()
    # The explore share among decisions that had an offer is about the rate.
    decided = len(contacts) + len(explore)
    assert abs(len(explore) / decided - rate) < 0.05


def test_without_log_no_offers_nothing_changes():
    data = _log(ContactPolicy().model_copy(update={"arbitration": ContactPolicy().arbitration.model_copy(
        update={"exploration": ContactPolicy().arbitration.exploration.model_copy(update={"rate": 1.0})})}))
    assert data.no_offers.empty or set(data.no_offers["reason"]) == {"policy"}

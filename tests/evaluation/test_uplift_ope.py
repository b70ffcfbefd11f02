"""The randomised log of the OPE check (evaluation.uplift_loop.uplift_ope): an ArbiterPolicy with
log_no_offers applies the control group and the no-offer exploration and logs every decision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.evaluate import logged_decisions
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


# ----------------------------------------------------------------------------- the exploring logger
def _exploring_log(customers: int, days: int, epsilon: float, share: float, rate: float):
    """The `epsilon` logger on a hand-made scorer: the same P(accept) 0.1 everywhere, and only
    three plain offers valid all period, on every channel, without an eligibility rule, pay
    (incremental conversion 0.5 / 0.4 / 0.3; every other offer and variant 0, so below
    min_expected_value): ev 36.0 / 10.6 / 13.0, the greedy pick is offer 0."""
    config = CONFIG.model_copy(update={"customers": customers, "days": days})
    sim = Simulator(config, seed=5)
    offers = sim.catalogue.to_frame(config)
    paying = {0: 0.5, 1: 0.4, 2: 0.3}
    assert all(offers["channels"][j] == ("web", "app", "email", "sms", "push", "mail") for j in paying)
    assert offers.loc[list(paying), "eligibility"].isna().all() and (offers.loc[list(paying), "incentive_cost"] == 0).all()
    tau_row = np.zeros(len(offers))
    for j, t in paying.items():
        tau_row[j] = t

    def scorer(view, opp):  # type: ignore[no-untyped-def]
        n = len(opp)
        return np.full((n, len(offers)), 0.1), truth_scorer(view, opp)[1], np.tile(tau_row, (n, 1))

    policy = logging_policy(ContactPolicy(), control_share=share, no_offer_rate=rate, logger="epsilon", epsilon=epsilon)
    logger = ArbiterPolicy("logging", policy, offers, scorer, sim.population.contact_intensity, config.banner_rate, 3,
                           skip_refused=True, log_no_offers=True)
    first = 0
    for _ in range(days):
        sim.step(logger)
        logger.observe(sim, first)
        first += sim.results[-1].contacts
    return dataset(sim), offers, policy


def test_the_epsilon_logger_logs_the_probability_it_had_of_each_decision():
    """On each customer's first decision (no contact history, so the three paying offers are all
    open): P(offer 0) = kept (1 - e + e/3), P(offer 1) = P(offer 2) = kept e/3, P(no contact) =
    share + (1 - share) rate on the control group's channels (kept = (1 - share)(1 - rate)), rate
    on the others; the logged propensities are these, and the frequencies over customers follow them."""
    e, share, rate = 0.3, 0.2, 0.25
    data, offers, policy = _exploring_log(customers=600, days=1, epsilon=e, share=share, rate=rate)
    ids = offers["offer_id"].tolist()
    rows = pd.concat([data.contacts.assign(made=True), data.no_offers.assign(made=False)], ignore_index=True)
    rows = rows.sort_values(["ts", "decision_id"], kind="stable").drop_duplicates("customer_id")  # first decisions
    held = rows["channel"].isin(policy.control_group.channels).to_numpy()
    s = np.where(held, share, 0.0)
    kept = (1 - s) * (1 - rate)
    expected = {ids[0]: kept * (1 - e + e / 3), ids[1]: kept * e / 3, ids[2]: kept * e / 3}
    made = rows["made"].to_numpy(bool)
    assert set(rows.loc[made, "offer_id"]) <= set(expected)  # only the offers that pay, greedy or explored
    for oid, p in expected.items():
        at = (rows["offer_id"] == oid).to_numpy()
        assert np.allclose(rows.loc[at, "propensity"], p[at])
    p_none = s + (1 - s) * rate
    assert np.allclose(rows.loc[~made, "propensity"], p_none[~made])
    assert np.allclose(p_none + sum(expected.values()), 1.0)  # every outcome of a decision, probabilities sum to 1
    n = len(rows)
    assert n > 300
    for oid, p in expected.items():  # frequencies: within 4 standard deviations of the logged probabilities
        count = int((rows["offer_id"] == oid).sum())
        assert abs(count - p.sum()) < 4 * np.sqrt((p * (1 - p)).sum()) + 1, oid
    assert abs(int((~made).sum()) - p_none.sum()) < 4 * np.sqrt((p_none * (1 - p_none)).sum()) + 1


def test_the_epsilon_logger_only_contacts_where_an_offer_pays_and_explores_at_its_rate():
    """Over days, with histories (cooldowns after declines, caps): the greedy offer, when open, is
    logged with kept (1 - e + e/n) for the n paying offers open; the explored picks (kept e/n)
    are about a share e (n - 1) / n <= e of the contacts."""
    e, share, rate = 0.1, 0.1, 0.1
    data, offers, policy = _exploring_log(customers=150, days=8, epsilon=e, share=share, rate=rate)
    ids = offers["offer_id"].tolist()
    contacts = data.contacts
    assert len(contacts) > 200 and contacts["offer_id"].isin(ids[:3]).all()
    kept = np.where(contacts["channel"].isin(policy.control_group.channels), (1 - share) * (1 - rate), 1 - rate)
    ratio = contacts["propensity"].to_numpy() / kept
    greedy = np.isclose(ratio[:, None], [1 - e + e / n for n in (1, 2, 3)]).any(axis=1)
    explored = np.isclose(ratio[:, None], [e / n for n in (2, 3)]).any(axis=1)
    assert (greedy | explored).all()
    assert greedy[(contacts["offer_id"] == ids[0]).to_numpy()].all()  # the best offer is never an explored pick
    assert 0.02 < explored.mean() < e + 0.04
    with pytest.raises(ValueError, match="unknown OPE logger"):
        logging_policy(ContactPolicy(), logger="greedy")


def test_weights_average_to_their_expectation_once_the_control_group_is_left_out():
    """On a log from the exploring logger, the control group's decisions left out and the others'
    propensities taken given they are outside it: the weights of the target "no contact" ([none] /
    mu) average 1, and those of the logger's own pick without its no-offer draw (pi = mu / (1 - rate)
    on a contact) average the share of decisions with an offer. Read whole (the group's decisions
    in, propensities over the group's draw), the members' uncapped decisions over-weight "no contact"."""
    e, share, rate, days = 0.1, 0.2, 0.25, 20
    data, offers, policy = _exploring_log(customers=300, days=days, epsilon=e, share=share, rate=rate)
    start = pd.Timestamp(CONFIG.start)
    until = start + pd.Timedelta(days=days - 3)  # contacts of the last days have no final outcome yet
    rows = logged_decisions(data, start, until, policy.control_group)
    ids = data.customers["customer_id"].astype(str)
    members = set(ids[in_control(ids.tolist(), share, policy.control_group.salt)])
    assert rows.attrs["control_customers"] > 10 and not rows["customer_id"].isin(members).any()
    n, none = len(rows), rows["offer_id"].isna().to_numpy()
    v = none / rows["propensity"].to_numpy(float)
    assert n > 1000 and abs(v.mean() - 1.0) < 4 * v.std() / np.sqrt(n)
    w = np.where(none, 0.0, 1.0 / (1.0 - rate))
    offered = float((rows["reason"] != "policy").mean())
    assert abs(w.mean() - offered) < 4 * w.std() / np.sqrt(n)
    whole = logged_decisions(data, start, until)
    v_whole = whole["offer_id"].isna().to_numpy() / whole["propensity"].to_numpy(float)
    assert v_whole.mean() - 1.0 > 4 * v_whole.std() / np.sqrt(len(whole))


def test_uplift_ope_leaves_the_control_group_out_and_values_the_target_on_its_own_caps():
    """`uplift_ope` end to end on a tiny world, one log read four ways: without the control
    group fewer decisions and the sum scaled to every customer; on its own caps the target has no
    more decisions than on the log's; with both off, session 12's reading (every decision)."""
    from evaluation.uplift_loop import ope_log, train_uplift_world, uplift_ope

    config = SimConfig(customers=60, days=30, cannibalisation=True, incentives=DEFAULT_INCENTIVES)
    policy = ContactPolicy.model_validate({"arbitration": {"exploration": {"rate": 0.0}}})
    world = train_uplift_world(config, 1, 30, num_boost_round=10, customers=80)
    log = ope_log(config, 0, policy, world, control_share=0.2, no_offer_rate=0.2, logger="epsilon")
    data, logging = log
    reads = {(caps, out): uplift_ope(config, 0, policy, world, logger="epsilon", caps=caps, exclude_control=out, log=log)
             for caps in ("logged", "target") for out in (False, True)}
    whole, fixed = reads[("logged", False)], reads[("target", True)]
    members = int(in_control(data.customers["customer_id"].tolist(), 0.2, logging.control_group.salt).sum())
    assert whole.control_customers == 0 and fixed.control_customers == members > 0
    assert whole.decisions == len(data.contacts[data.contacts["outcome"] != "pending"]) + len(data.no_offers)
    assert fixed.decisions == reads[("logged", True)].decisions < whole.decisions
    assert fixed.target_contacts <= reads[("logged", True)].target_contacts
    assert reads[("target", False)].target_contacts <= whole.target_contacts
    for o in reads.values():
        assert o.caps in ("logged", "target") and np.isfinite([o.ips, o.dr, o.snips, o.dr_baseline]).all()
    with pytest.raises(ValueError, match="cap state"):
        uplift_ope(config, 0, policy, world, logger="epsilon", caps="theirs", log=log)

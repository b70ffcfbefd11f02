"""Rule-set variants of the contact policy: each drops one family of rules, and binds only its own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.rule_sets import RULE_SETS, greedy, uncapped, without_fatigue_caps, without_repeat_rules
from evaluation.sim_policies import ALL_POLICY_NAMES, POLICY_NAMES, TRUTH_UNCAPPED, make_policy
from nbo.vocab import CONTACT_CHANNELS
from serving.policy import ContactPolicy
from simulator import SimConfig, Simulator


def test_rule_sets_drop_one_family_of_rules_each() -> None:
    policy = ContactPolicy()
    caps_only, repeats_only = without_repeat_rules(policy), without_fatigue_caps(policy)
    assert caps_only.caps == policy.caps and caps_only.outbound == policy.outbound
    assert caps_only.cooldown.offer_days == caps_only.cooldown.category_days == 0
    assert caps_only.offer_cap.max >= 10**9
    assert repeats_only.caps == {} and repeats_only.outbound.max >= 10**9
    assert repeats_only.offer_cap == policy.offer_cap and repeats_only.cooldown == policy.cooldown
    assert uncapped(policy) == without_fatigue_caps(caps_only) == without_repeat_rules(repeats_only)
    for kept in (caps_only, repeats_only):
        assert kept.consent == policy.consent and kept.quiet_hours == policy.quiet_hours
        assert kept.arbitration == policy.arbitration
    assert set(ALL_POLICY_NAMES) >= set(POLICY_NAMES) | {TRUTH_UNCAPPED}
    sim = Simulator(SimConfig(customers=30, days=5), seed=0)
    for rules, make in RULE_SETS.items():
        assert make_policy(f"oracle{rules}", sim, policy, trained=None, seed=0).policy == greedy(make(policy))
    for bad in ("oracle_fatigue", "nbo_", "oraclex", "nbo_fatigue_caps_uncapped", "ORACLE"):
        with pytest.raises(ValueError, match="unknown policy"):
            make_policy(bad, sim, policy, trained=None, seed=0)


def _contact_log(name: str, config: SimConfig, seed: int = 2):
    sim = Simulator(config, seed=seed)
    chosen = make_policy(name, sim, ContactPolicy(), trained=None, seed=seed)
    first = 0
    for _ in range(config.days):
        sim.step(chosen)
        chosen.observe(sim, first)
        first += sim.results[-1].contacts
    return sim.contact_log()


def test_each_rule_set_binds_only_its_own_rules() -> None:
    """Within 20 days (under the 30-day offer window): the whole policy shows no offer to a
    customer more than 3 times and sends at most 4 outbound contacts in the first 7 days; the
    fatigue caps alone repeat the best offer; the repeat rules alone contact every day."""
    config = SimConfig(customers=80, days=20)
    outbound_codes = [CONTACT_CHANNELS.index(c) for c in ContactPolicy().outbound.channels]

    def most_repeats(log) -> int:
        return int(pd.Series(list(zip(log.customer, log.offer, strict=True))).value_counts().max())

    def most_outbound_first_week(log) -> int:
        first_week = np.isin(log.channel, outbound_codes) & (log.ts < 7 * 86_400)
        return int(np.bincount(log.customer[first_week]).max())

    whole, caps_only, repeats_only = (_contact_log(n, config) for n in
                                      ("oracle", "oracle_fatigue_caps", "oracle_repeat_rules"))
    assert most_repeats(whole) <= 3 and most_outbound_first_week(whole) <= 4
    assert most_repeats(caps_only) > 3 and most_outbound_first_week(caps_only) <= 4
    assert most_repeats(repeats_only) <= 3 and most_outbound_first_week(repeats_only) > 4

"""The stepping API: custom policies in closed loop, rules enforced, the oracle beats random."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbo.errors import NboError
from simulator import Contacts, DayResult, DayView, OraclePolicy, SimConfig, Simulator, no_contact
from simulator.config import CH
from simulator.io import dataset


def _sim(customers: int = 800, days: int = 60, seed: int = 11) -> Simulator:
    return Simulator(SimConfig(customers=customers, days=days), seed=seed)


def email_first_offer(view: DayView) -> Contacts:
    """Email every consented customer with the first valid email offer, every 7th day."""
    if view.day % 7:
        return Contacts.empty()
    who = view.customers[view.consent[view.customers, 0]]
    channel = np.full(len(who), CH["email"])
    ok = view.eligible(who, channel)
    offer = ok.argmax(1)
    keep = ok.any(1)
    return Contacts(who[keep], offer[keep], channel[keep], np.ones(int(keep.sum())))


def test_custom_policy_runs_day_by_day_and_is_logged() -> None:
    sim = _sim()
    seen: list[int] = []

    def policy(view: DayView) -> Contacts:
        seen.append(view.day)
        assert view.date == pd.Timestamp("2025-01-01") + pd.Timedelta(days=view.day)
        if view.day == 14:
            history = view.history.events()
            assert len(history) > 0 and history["ts"].max() < view.date
        return email_first_offer(view)

    results = [sim.step(policy) for _ in range(21)]
    assert seen == list(range(21))
    assert all(isinstance(r, DayResult) for r in results)
    assert results[0].contacts > 100 and results[1].contacts == 0
    data = dataset(sim)
    assert len(data.contacts) == sum(r.contacts for r in results)
    assert set(data.contacts["channel"]) == {"email"}
    assert (data.contacts["propensity"] == 1.0).all()
    assert sim.daily()["day"].tolist() == list(range(21))


def test_a_policy_that_breaks_consent_or_validity_is_refused() -> None:
    sim = _sim(customers=300)

    def spam_sms(view: DayView) -> Contacts:
        who = view.customers
        return Contacts(who, np.zeros(len(who), int), np.full(len(who), CH["sms"]), np.ones(len(who)))

    with pytest.raises(NboError, match="without consent"):
        sim.step(spam_sms)

    def banner_without_session(view: DayView) -> Contacts:
        who = np.setdiff1d(view.customers, view.sessions.customer)[:5]
        return Contacts(who, np.zeros(len(who), int), np.full(len(who), CH["web"]), np.ones(len(who)))

    with pytest.raises(NboError, match="session"):
        _sim(customers=300).step(banner_without_session)


def test_the_period_ends() -> None:
    sim = _sim(customers=50, days=3)
    sim.run(policy=no_contact)
    with pytest.raises(NboError, match="over"):
        sim.step(no_contact)


def test_the_oracle_earns_more_than_the_random_logging_policy() -> None:
    random_sim, oracle_sim = _sim(), _sim()
    oracle = OraclePolicy(oracle_sim.population.contact_intensity, oracle_sim.config.banner_rate, seed=5)
    random_sim.run()
    oracle_sim.run(policy=oracle)
    r, o = random_sim.daily(), oracle_sim.daily()
    assert r["contacts"].sum() > 1000
    assert o["value"].sum() > 2 * r["value"].sum()
    assert (o["value"] - o["cost"]).sum() > (r["value"] - r["cost"]).sum()


def test_the_true_acceptance_probability_is_what_outcomes_are_drawn_from() -> None:
    sim = _sim(customers=1500, days=60)
    sim.run()
    log = sim.contact_log()
    final = log.outcome != 4  # pending outcomes are unknown
    accepted = log.outcome[final] == 0
    p = log.p_accept[final]
    assert abs(accepted.mean() - p.mean()) < 4 * np.sqrt(p.mean() / final.sum()) + 1e-3
    high = p > np.quantile(p, 0.9)
    assert accepted[high].mean() > 3 * accepted[~high].mean()


def test_no_contact_means_fewer_churners_than_heavy_contact() -> None:
    quiet, loud = _sim(customers=1500, days=90, seed=3), _sim(customers=1500, days=90, seed=3)
    quiet.run(policy=no_contact)

    def every_day_everywhere(view: DayView) -> Contacts:
        who = view.customers
        channel = np.full(len(who), CH["mail"])
        ok = view.eligible(who, channel)
        keep = ok.any(1)
        return Contacts(who[keep], ok.argmax(1)[keep], channel[keep], np.ones(int(keep.sum())))

    loud.run(policy=every_day_everywhere)
    assert loud.results[-1].churned_total > 1.5 * quiet.results[-1].churned_total

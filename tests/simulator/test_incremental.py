"""The simulator's incremental truth (issue 21 item 1): organic intent, cannibalisation, incentives."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from cli import app
from nbo.data import load_dataset
from nbo.errors import DataError, NboError
from nbo.validation import validate_frame
from nbo.contract import OFFERS
from simulator import OraclePolicy, SimConfig, Simulator, no_contact
from simulator.behaviour import simulate_behaviour
from simulator.config import DEFAULT_INCENTIVES, EV, Incentive, parse_incentives
from simulator.io import contacts_truth, write_simulation
from simulator.policies import IncrementalOraclePolicy
from simulator.truth import accept_probability, incremental_effect

INCREMENTAL = SimConfig(customers=1500, days=40, cannibalisation=True, incentives=DEFAULT_INCENTIVES)


@pytest.fixture(scope="module")
def world() -> Simulator:
    sim = Simulator(INCREMENTAL, seed=11)
    sim.run()
    return sim


def test_default_world_keeps_its_tables_and_books() -> None:
    sim = Simulator(SimConfig(customers=200, days=10), seed=2)
    sim.run()
    assert "incremental_value" not in sim.daily().columns
    assert list(contacts_truth(sim).columns) == ["decision_id", "offer_id", "p_accept", "lifecycle"]
    assert "incentive" not in sim.catalogue.to_frame(sim.config).columns
    assert sim.state.organic_today.size == 0


def test_cannibalisation_draws_the_same_behaviour() -> None:
    """The option adds no draw to the world's streams: without contacts, the events are identical."""
    plain = Simulator(SimConfig(customers=300, days=15), seed=5)
    canni = Simulator(SimConfig(customers=300, days=15, cannibalisation=True), seed=5)
    plain.run(policy=no_contact)
    canni.run(policy=no_contact)
    a, b = plain.event_log(), canni.event_log()
    assert np.array_equal(a.customer, b.customer) and np.array_equal(a.ts, b.ts)
    assert np.array_equal(a.category, b.category)


def test_organic_probability_is_the_rate_customers_buy_at() -> None:
    """Replaying one day's behaviour many times from the same state, the organic probabilities
    match the purchases drawn: in the intent category (sessions and stores) and in the others
    (stores only), each within 4 standard errors of a sum of Bernoullis."""
    sim = Simulator(SimConfig(customers=1500, days=30, cannibalisation=True), seed=3)
    sim.run(days=20)
    k, day = sim.config.n_categories, sim.day
    active = np.flatnonzero((sim.population.signup_sec < day * 86_400) & ~sim.state.churned)
    sums = {"intent": [0.0, 0.0, 0.0], "other": [0.0, 0.0, 0.0]}  # expected, variance, observed
    for rep in range(400):
        state = copy.deepcopy(sim.state)
        events, _ = simulate_behaviour(sim.config, sim.population, state, sim.products, active, day,
                                       np.random.default_rng(rep))
        q = state.organic_today[active]
        is_intent = np.zeros_like(q, dtype=bool)
        is_intent[np.arange(len(active)), state.intent[active]] = True
        buy = events.type == EV["purchase"]
        bought = np.zeros((sim.population.n, k), dtype=bool)
        bought[events.customer[buy], events.category[buy]] = True
        bought = bought[active]
        for name, mask in (("intent", is_intent), ("other", ~is_intent)):
            sums[name][0] += float(q[mask].sum())
            sums[name][1] += float((q * (1 - q))[mask].sum())
            sums[name][2] += float(bought[mask].sum())
    for name, (expected, variance, observed) in sums.items():
        assert expected > 300, name
        assert abs(observed - expected) < 4 * np.sqrt(variance), (name, observed, expected, np.sqrt(variance))


def test_variants_are_offers_worth_their_value_less_the_incentive(world: Simulator) -> None:
    cat = world.catalogue
    plain = int((cat.variant < 0).sum())
    assert cat.n == plain * (1 + len(DEFAULT_INCENTIVES))
    pct20 = np.flatnonzero(cat.variant == 1)
    base = cat.base[pct20]
    assert np.allclose(cat.incentive_cost[pct20], np.round(0.2 * cat.value[base] / world.config.organic_margin, 2))
    assert np.allclose(cat.value[pct20], np.round(cat.value[base] - cat.incentive_cost[pct20], 2))
    assert (cat.channels[pct20] == cat.channels[base]).all()
    frame = cat.to_frame(world.config)
    assert frame.loc[pct20[0], "offer_id"] == f"{frame.loc[base[0], 'offer_id']}-pct20"
    assert frame.loc[pct20[0], "base_offer_id"] == frame.loc[base[0], "offer_id"]
    assert frame["incentive"].isna().sum() == plain


def test_incentives_move_price_sensitive_customers_more(world: Simulator) -> None:
    ps = world.population.price_sensitivity
    low, high = int(np.argmin(ps)), int(np.argmax(ps))
    offer = 0  # plain; its pct20 variant is offer + 2 x plain count
    pct20 = int(np.flatnonzero((world.catalogue.variant == 1) & (world.catalogue.base == offer))[0])
    who = np.array([low, low, high, high])
    p = accept_probability(world.config, world.population, world.state, world.catalogue, who,
                           np.array([offer, pct20, offer, pct20]), np.full(4, 2))
    logit = np.log(p / (1 - p))
    lift_low, lift_high = logit[1] - logit[0], logit[3] - logit[2]
    assert lift_high > 2 * lift_low > 0


def test_truth_exposes_the_incremental_effect(world: Simulator) -> None:
    truth = contacts_truth(world)
    for col in ("p_organic", "bought_anyway", "incremental_value"):
        assert col in truth.columns
    assert truth["bought_anyway"].any() and (truth["p_organic"] > 0).any()
    # The books: realised incremental value is what the truth expects, within 4 standard errors.
    daily = world.daily()
    realised = float(daily["incremental_value"].sum())
    expected = float(truth["incremental_value"].sum())
    log = world.contact_log()
    se = float(np.sqrt((log.p_accept * world.catalogue.base_value[log.offer] ** 2).sum()))
    assert abs(realised - expected) < 4 * se, (realised, expected, se)
    # Acceptances by customers who buy anyway earn no margin but still give their incentive away.
    assert int(daily["accepted_anyway"].sum()) > 0
    assert float(daily["incentive_cost"].sum()) > 0
    assert float(daily["incremental_value"].sum()) < float((daily["value"] - daily["cost"]).sum())


def test_effect_of_no_incentive_and_no_cannibalisation_is_the_response() -> None:
    sim = Simulator(SimConfig(customers=200, days=3), seed=1)
    sim.step()
    c, o, ch = np.arange(20), np.zeros(20, dtype=np.int64), np.full(20, 2)
    e = incremental_effect(sim.config, sim.population, sim.state, sim.catalogue, c, o, ch)
    assert np.allclose(e.p_organic, 0)
    assert np.allclose(e.incremental_value, e.p_accept * sim.catalogue.value[o] - sim.catalogue.cost[o])


def test_an_accepted_offer_bought_anyway_adds_no_purchase(world: Simulator) -> None:
    log = world.contact_log()
    accepted = log.outcome == 0  # OUTCOMES[0] == "accepted"
    assert (accepted & log.anyway).any()
    events = world.event_log()
    buys = events.type == EV["purchase"]
    # every accepted, not-anyway contact is followed by a purchase of its category that day
    fresh = np.flatnonzero(accepted & ~log.anyway)[:50]
    for i in fresh:
        day0 = (log.ts[i] // 86_400) * 86_400
        same = buys & (events.customer == log.customer[i]) & (events.ts >= log.outcome_ts[i]) & (events.ts < day0 + 86_400)
        assert same.any()


def test_incremental_oracle_earns_more_incremental_value_with_fewer_discounts() -> None:
    config = SimConfig(customers=1500, days=40, cannibalisation=True, incentives=DEFAULT_INCENTIVES)
    runs = {}
    for name, cls in (("response", OraclePolicy), ("incremental", IncrementalOraclePolicy)):
        sim = Simulator(config, seed=4)
        sim.run(policy=cls(sim.population.contact_intensity, config.banner_rate, 9))
        runs[name] = sim.daily()[["incremental_value", "incentive_cost", "contacts"]].sum()
    assert runs["incremental"]["incremental_value"] > runs["response"]["incremental_value"]
    assert runs["incremental"]["incentive_cost"] < runs["response"]["incentive_cost"]


def test_written_world_validates(world: Simulator, tmp_path: Path) -> None:
    write_simulation(world, tmp_path / "w")
    data = load_dataset(tmp_path / "w")
    assert data.offers["incentive"].notna().sum() == 3 * data.offers["incentive"].isna().sum()
    assert pd.read_parquet(tmp_path / "w" / "truth" / "daily.parquet")["incremental_value"].notna().all()


# ----------------------------------------------------------------------------- bad input
def test_an_incentive_without_a_cost_is_refused() -> None:
    with pytest.raises(ValidationError, match="has no cost"):
        Incentive(name="pct10", appeal=0.5)
    with pytest.raises(NboError, match=r"incentive #2: incentive 'gift' has no cost"):
        parse_incentives('[[incentive]]\nname="a"\ndiscount=0.1\nappeal=1\n[[incentive]]\nname="gift"\nappeal=1\n')


def test_cli_refuses_an_incentive_without_a_cost_and_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "incentives.toml"
    spec.write_text('[[incentive]]\nname = "pct10"\nappeal = 0.5\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["simulate", "--customers", "20", "--days", "3", "--out", str(out),
                                      "--incentives", str(spec)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "has no cost" in result.output
    assert not out.exists()


def test_contract_refuses_a_variant_without_its_cost() -> None:
    frame = pd.DataFrame({
        "offer_id": ["o1", "o1-pct10"], "name": ["a", "b"], "category": ["books", "books"],
        "kind": ["cross_sell", "cross_sell"], "channels": ["email", "email"], "value": [10.0, 6.0],
        "cost": [0.01, 0.01], "valid_from": ["2025-01-01", "2025-01-01"], "valid_to": ["2026-01-01", "2026-01-01"],
        "eligibility": [None, None], "base_offer_id": [None, "o1"], "incentive": [None, "pct10"],
        "incentive_cost": [None, None],
    })
    with pytest.raises(DataError, match="without an incentive_cost"):
        validate_frame(OFFERS, frame)
    frame["incentive_cost"] = [None, 4.0]
    assert validate_frame(OFFERS, frame)["incentive_cost"].iloc[1] == 4.0
    frame["base_offer_id"] = [None, "o9"]
    with pytest.raises(DataError, match="base_offer_id"):
        validate_frame(OFFERS, frame)

"""Off-policy estimators: exact values on hand-computed cases, and agreement with the truth of a
closed-loop run in the simulator; the evaluation pipeline on a small simulated log."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nbo.simulator import Contacts, DayView, SimConfig, Simulator
from nbo.simulator.config import OUT
from nbo.simulator.io import dataset
from nbo.simulator.policies import contact_slots
from nbo.simulator.state import tenure_days
from nbo.simulator.world import DAY
from serving.policy import ContactPolicy
from training.evaluate import evaluate
from training.ope import diagnostics, doubly_robust, ips, snips
from training.policy_sim import train_on_logging_run

PI = np.array([1.0, 0.0, 0.5])
MU = np.array([0.5, 0.25, 0.25])
R = np.array([1.0, 1.0, 0.0])


def test_ips_exact() -> None:
    est = ips(PI, MU, R)  # w = [2, 0, 2]; terms [2, 0, 0]
    assert est.value == pytest.approx(2 / 3)
    se = math.sqrt(4 / 3) / math.sqrt(3)
    assert est.low == pytest.approx(2 / 3 - 1.959963984540054 * se)


def test_snips_exact() -> None:
    assert snips(PI, MU, R).value == pytest.approx(2 / 4)
    # "no offer" with known reward 0: the target makes an offer with mean probability 5/6
    assert snips(PI, MU, R, coverage=np.array([1.0, 0.5, 1.0])).value == pytest.approx(0.5 * 5 / 6)


def test_dr_exact() -> None:
    q = np.array([0.5, 0.2, 0.1])
    direct = np.array([0.6, 0.3, 0.2])
    # 0.6 + 2 (1 - 0.5) = 1.6 ; 0.3 + 0 = 0.3 ; 0.2 + 2 (0 - 0.1) = 0.0
    assert doubly_robust(PI, MU, R, q, direct).value == pytest.approx(1.9 / 3)
    # a perfect reward model and zero weights: DR is the direct method
    assert doubly_robust(np.zeros(3), MU, R, q, direct).value == pytest.approx(1.1 / 3)


def test_diagnostics_and_validation() -> None:
    d = diagnostics(PI, MU)
    assert (d.matches, d.ess, d.max_weight, d.max_weight_share) == (2, pytest.approx(2.0), 2.0, 0.5)
    assert len(d.warnings()) == 3  # few matches, small ESS, one decision carries half the weight
    with pytest.raises(ValueError):
        ips(PI, np.array([0.5, 0.0, 0.5]), R)
    with pytest.raises(ValueError):
        ips(PI[:2], MU, R)


# ------------------------------------------------------------------ against the simulator's truth
EPS = 0.3


class ValueGreedy:
    """Target: the most valuable eligible offer with probability 1 - EPS, else uniform."""

    def __init__(self, sim: Simulator, seed: int) -> None:
        self.intensity, self.banner = sim.population.contact_intensity, sim.config.banner_rate
        self.rng = np.random.default_rng(seed)

    def __call__(self, view: DayView) -> Contacts:
        s = contact_slots(view, self.intensity, self.banner, self.rng)
        ok = view.eligible(s.customer, s.channel)
        keep = ok.any(1)
        ok = ok[keep]
        best = np.where(ok, view.offers.value[None, :], -np.inf).argmax(1)
        count = ok.sum(1)
        pick = np.floor(self.rng.random(len(count)) * count).astype(np.int64)
        uniform = (ok.cumsum(1) <= pick[:, None]).sum(1)
        explore = self.rng.random(len(count)) < EPS
        offer = np.where(explore, uniform, best)
        return Contacts(s.customer[keep], offer, s.channel[keep], np.ones(len(offer)), s.ts[keep])


def _per_decision_value(sim: Simulator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    log = sim.contact_log()
    final = log.outcome != OUT["pending"]
    accepted = (log.outcome == OUT["accepted"]).astype(float)
    reward = accepted * sim.catalogue.value[log.offer] - sim.catalogue.cost[log.offer]
    return reward[final], accepted[final], final


def test_ope_matches_closed_loop_truth() -> None:
    config, seed = SimConfig(customers=3000, days=90), 11
    logged = Simulator(config, seed)
    logged.run()
    log = logged.contact_log()
    reward, accepted, final = _per_decision_value(logged)
    day = log.ts // DAY
    eligible = np.zeros((len(log.ts), logged.catalogue.n), dtype=bool)
    for d in np.unique(day):
        rows = day == d
        tenure = tenure_days(logged.population, int(d))[log.customer[rows]]
        eligible[rows] = logged.catalogue.eligible(int(d), log.channel[rows], tenure, log.lifecycle[rows])
    n = eligible.sum(1)
    assert np.allclose(log.propensity, 1 / n)  # the logging policy's propensities are what we think
    best = np.where(eligible, logged.catalogue.value[None, :], -np.inf).argmax(1)
    pi = EPS / n + (1 - EPS) * (log.offer == best)
    pi, mu = pi[final], log.propensity[final]
    # a crude reward model for DR: each offer's logged mean reward
    frame = pd.DataFrame({"offer": log.offer[final], "r": reward})
    q_offer = frame.groupby("offer")["r"].mean().reindex(range(logged.catalogue.n)).fillna(0).to_numpy()
    elig = eligible[final]
    direct = (EPS * (elig * q_offer).sum(1) / elig.sum(1)) + (1 - EPS) * q_offer[best[final]]
    estimates = {
        "ips": ips(pi, mu, reward).value,
        "snips": snips(pi, mu, reward).value,
        "dr": doubly_robust(pi, mu, reward, q_offer[log.offer[final]], direct).value,
    }

    closed = Simulator(config, seed)
    closed.run(policy=ValueGreedy(closed, seed))
    truth = _per_decision_value(closed)[0].mean()
    logged_value = reward.mean()
    assert abs(truth - logged_value) / truth > 0.3  # the target really differs from the logging policy
    for name, value in estimates.items():
        assert abs(value - truth) / truth < 0.10, (name, value, truth, logged_value)


def test_evaluate_pipeline_on_a_small_log() -> None:
    config = SimConfig(customers=400, days=70)
    trained = train_on_logging_run(config, seed=2, days=70, num_boost_round=50)
    sim = Simulator(config, seed=3)
    sim.run()
    data = dataset(sim)
    until = pd.Timestamp(config.start) + pd.Timedelta(days=70)
    result = evaluate(data, trained.model, ContactPolicy(), baseline=trained.model,
                      since=until - pd.Timedelta(days=5), until=until)
    cand = result.candidate
    assert result.n_decisions == len(cand.pi_logged) > 0
    # the target's probabilities are probabilities and the rules bite: some decisions get no offer
    assert ((cand.pi_logged >= 0) & (cand.pi_logged <= 1)).all()
    assert 0 < cand.offer_rate <= 1
    for reward in ("acceptance", "value"):
        for est in cand.estimates[reward].values():
            assert est.low <= est.value <= est.high
    text = result.markdown()
    assert "TOO UNCERTAIN TO DECIDE" in text  # five days of a 400-customer log cannot decide anything
    assert "do not see what the candidate's own choices do to later decisions" in text
    assert result.gate()[0] is False


def test_evaluate_cli_and_promotion_gate(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from nbo.cli import app
    from nbo.data import load_dataset
    from nbo.simulator import write_simulation
    from training.registry import promote
    from training.tracking import CHAMPION, PROPENSITY_MODEL, resolve_tracking, version_by_alias
    from training.train import TrainConfig, fit_and_log

    config = SimConfig(customers=400, days=80)
    sim = Simulator(config, seed=4)
    sim.run()
    write_simulation(sim, tmp_path / "data")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking = resolve_tracking(None, workdir=tmp_path / "ml")
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: keep it from leaking into later tests
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.uri)
    client = tracking.activate()
    data = load_dataset(tmp_path / "data")
    as_of = pd.Timestamp(config.start) + pd.Timedelta(days=80)
    for seed in (0, 1):
        fit_and_log("propensity", data, TrainConfig(as_of=as_of, num_boost_round=30, seed=seed), tracking,
                    progress=False)
        if seed == 0:
            promote(client, PROPENSITY_MODEL)  # first version: no champion yet
    out = tmp_path / "report" / "ope.md"
    result = CliRunner().invoke(app, ["evaluate", "--data", str(tmp_path / "data"), "--candidate", "challenger",
                                      "--baseline", "champion", "--since", "2025-03-15", "--out", str(out),
                                      "--tracking-uri", tracking.uri])
    assert result.exit_code == 0, result.output
    assert "TOO UNCERTAIN TO DECIDE" in out.read_text()
    assert (out.parent / "ope_ope_estimates.png").stat().st_size > 0
    from training.evaluate import latest_gate

    gate = latest_gate(client, f"{PROPENSITY_MODEL}/2", f"{PROPENSITY_MODEL}/1")
    assert gate is not None and gate[0] is False and "too uncertain" in gate[1]
    gated = promote(client, PROPENSITY_MODEL, force=False, require_ope=True)
    assert not gated.promoted
    assert version_by_alias(client, PROPENSITY_MODEL, CHAMPION) == "1"

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
# 20,000 customers x 90 days: at 3,000 the closed-loop truth and the estimates each moved by
# +-10 % from seed to seed, so a 10 % check measured the seed, not the estimators.
WORLD = SimConfig(customers=20_000, days=90)


def _top_k(eligible: np.ndarray, value: np.ndarray, k: int) -> np.ndarray:
    """Bool mask of each row's k most valuable eligible offers (ties: lowest index first)."""
    scored = np.where(eligible, value[None, :], -np.inf)
    order = np.argsort(-scored, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(eligible.shape[1]), order.shape), 1)
    return eligible & (rank < k)


class TopValue:
    """Target: uniform over the k most valuable eligible offers with probability 1 - EPS, else
    uniform over all eligible ones. k = 1 makes each customer the same offer again and again."""

    def __init__(self, sim: Simulator, seed: int, k: int) -> None:
        self.intensity, self.banner = sim.population.contact_intensity, sim.config.banner_rate
        self.rng, self.k = np.random.default_rng(seed), k

    def __call__(self, view: DayView) -> Contacts:
        s = contact_slots(view, self.intensity, self.banner, self.rng)
        ok = view.eligible(s.customer, s.channel)
        keep = ok.any(1)
        ok = ok[keep]
        explore = self.rng.random(len(ok)) < EPS
        pool = np.where(explore[:, None], ok, _top_k(ok, view.offers.value, self.k))
        pick = np.floor(self.rng.random(len(pool)) * pool.sum(1)).astype(np.int64)
        offer = (pool.cumsum(1) <= pick[:, None]).sum(1)
        return Contacts(s.customer[keep], offer, s.channel[keep], np.ones(len(offer)), s.ts[keep])


def _per_decision_value(sim: Simulator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    log = sim.contact_log()
    final = log.outcome != OUT["pending"]
    accepted = (log.outcome == OUT["accepted"]).astype(float)
    reward = accepted * sim.catalogue.value[log.offer] - sim.catalogue.cost[log.offer]
    return reward[final], accepted[final], final


def _estimates_and_truth(config: SimConfig, seed: int, k: int) -> tuple[dict[str, float], float, float]:
    """OPE of `TopValue(k)` on the default (uniform) logging policy's log, and its value per
    decision when it runs closed loop on the same world: (estimates, truth, logged value)."""
    logged = Simulator(config, seed)
    logged.run()
    log = logged.contact_log()
    reward, _, final = _per_decision_value(logged)
    day = log.ts // DAY
    eligible = np.zeros((len(log.ts), logged.catalogue.n), dtype=bool)
    for d in np.unique(day):
        rows = day == d
        tenure = tenure_days(logged.population, int(d))[log.customer[rows]]
        eligible[rows] = logged.catalogue.eligible(int(d), log.channel[rows], tenure, log.lifecycle[rows])
    n = eligible.sum(1)
    assert np.allclose(log.propensity, 1 / n)  # the logging policy's propensities are what we think
    top = _top_k(eligible, logged.catalogue.value, k)
    pi = EPS / n + (1 - EPS) * top[np.arange(len(n)), log.offer] / top.sum(1)
    pi, mu, elig, top = pi[final], log.propensity[final], eligible[final], top[final]
    # a crude reward model for DR: each offer's logged mean reward
    frame = pd.DataFrame({"offer": log.offer[final], "r": reward})
    q_offer = frame.groupby("offer")["r"].mean().reindex(range(logged.catalogue.n)).fillna(0).to_numpy()
    direct = EPS * (elig * q_offer).sum(1) / elig.sum(1) + (1 - EPS) * (top * q_offer).sum(1) / top.sum(1)
    estimates = {
        "ips": ips(pi, mu, reward).value,
        "snips": snips(pi, mu, reward).value,
        "dr": doubly_robust(pi, mu, reward, q_offer[log.offer[final]], direct).value,
    }
    closed = Simulator(config, seed)
    closed.run(policy=TopValue(closed, seed, k))
    return estimates, float(_per_decision_value(closed)[0].mean()), float(reward.mean())


@pytest.mark.parametrize(
    ("config", "k"),
    [
        (WORLD, 3),  # the default world: customers tire of an offer shown again (offer wear-out)
        (WORLD.model_copy(update={"offer_wearout": 0.0}), 1),  # a world where they never do
    ],
    ids=["default-world-top3", "no-wearout-greedy"],
)
def test_ope_matches_closed_loop_truth(config: SimConfig, k: int) -> None:
    """The issue's check: on a randomised logging policy's log, each estimate of a fixed target
    policy is within 10 % of the value that policy earns when it runs in the simulator. The target
    must not itself change what later decisions face, which per-decision OPE cannot see: the next
    test measures what happens when it does."""
    estimates, truth, logged_value = _estimates_and_truth(config, 11, k)
    assert abs(truth - logged_value) / truth > 0.3  # the target really differs from the logging policy
    for name, value in estimates.items():
        assert abs(value - truth) / truth < 0.10, (name, value, truth, logged_value)


def test_ope_cannot_see_the_wear_out_a_repeating_target_causes() -> None:
    """The limit the OPE report states: a target that makes each customer the same offer again and
    again wears it out in closed loop, but each logged decision comes from a log where offers were
    drawn at random and so never wore out. Every estimator overstates that target in the default
    world, and by more than in a world without wear-out, on the same customers."""
    errors = {}
    for wearout in (0.0, WORLD.offer_wearout):
        estimates, truth, _ = _estimates_and_truth(WORLD.model_copy(update={"offer_wearout": wearout}), 11, 1)
        errors[wearout] = {name: (value - truth) / truth for name, value in estimates.items()}
    assert WORLD.offer_wearout > 0
    for name, error in errors[WORLD.offer_wearout].items():
        assert error > errors[0.0][name] + 0.03, (name, errors)


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

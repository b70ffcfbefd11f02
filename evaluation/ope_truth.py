"""Off-policy estimates against the simulator's truth: does OPE value a policy at what it earns?

The issue's check: log decisions with the simulator's randomised logging policy (uniform over the
eligible offers, so `contacts.propensity` is 1 / eligible), estimate a fixed target policy on that
log with IPS, SNIPS and DR, then run the same target closed loop on the same world and seed and
compare with the value per decision it actually earned. The test suite asserts it on one seed
(`tests/training/test_ope.py`), `benchmarks/bench_ope.py` over several.

The target, `TopValuePolicy(k)`, makes one of the k most valuable eligible offers (uniformly) with
probability 1 - eps, else any eligible offer: k = 1 makes each customer the same offer again and
again, and in a world with offer wear-out that repetition lowers its own later acceptances, which
the random log never shows. Per-decision OPE cannot see that carry-over; this module measures how
much it matters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulator import Contacts, DayView, SimConfig, Simulator
from simulator.config import OUT
from simulator.policies import contact_slots, uniform_choice
from simulator.state import tenure_days
from simulator.world import DAY
from evaluation.ope import doubly_robust, ips, snips

#: The target's share of uniform exploration: keeps every eligible offer in its support.
EXPLORATION = 0.3


def top_k_mask(eligible: np.ndarray, value: np.ndarray, k: int) -> np.ndarray:
    """Bool mask of each row's k most valuable eligible offers (ties: the lowest index first)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scored = np.where(eligible, value[None, :], -np.inf)
    order = np.argsort(-scored, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(eligible.shape[1]), order.shape), 1)
    return eligible & (rank < k)


class TopValuePolicy:
    """Simulator policy: the logging policy's contact opportunities, and for each an offer drawn
    uniformly from the k most valuable eligible ones with probability 1 - eps, else from all."""

    def __init__(self, sim: Simulator, seed: int, k: int, eps: float = EXPLORATION) -> None:
        self.intensity, self.banner = sim.population.contact_intensity, sim.config.banner_rate
        self.rng, self.k, self.eps = np.random.default_rng(seed), k, eps

    def __call__(self, view: DayView) -> Contacts:
        s = contact_slots(view, self.intensity, self.banner, self.rng)
        ok = view.eligible(s.customer, s.channel)
        keep = ok.any(1)
        ok = ok[keep]
        explore = self.rng.random(len(ok)) < self.eps
        pool = np.where(explore[:, None], ok, top_k_mask(ok, view.offers.value, self.k))
        offer = uniform_choice(pool, self.rng)
        return Contacts(s.customer[keep], offer, s.channel[keep], np.ones(len(offer)), s.ts[keep])


@dataclass(frozen=True)
class TruthCheck:
    """Estimates of the target's value per decision, what it earned closed loop, and what the
    logging policy earned per decision on the log the estimates read."""

    estimates: dict[str, float]
    truth: float
    logged: float

    def errors(self) -> dict[str, float]:
        """Relative error of each estimate against the truth (+0.1 = overstates by 10 %)."""
        return {name: (value - self.truth) / self.truth for name, value in self.estimates.items()}


def decision_values(sim: Simulator) -> tuple[np.ndarray, np.ndarray]:
    """Net value of each decided contact (offer value if accepted, minus its cost) and the mask of
    the log's rows with a final outcome (pending ones are dropped, as `nbo evaluate` drops them)."""
    log = sim.contact_log()
    final = log.outcome != OUT["pending"]
    accepted = (log.outcome == OUT["accepted"]).astype(float)
    return (accepted * sim.catalogue.value[log.offer] - sim.catalogue.cost[log.offer])[final], final


def check_against_truth(config: SimConfig, seed: int, k: int, eps: float = EXPLORATION) -> TruthCheck:
    """OPE of `TopValuePolicy(k, eps)` on the default logging policy's log of (config, seed), and the
    value per decision the same target earns run closed loop on (config, seed)."""
    logged = Simulator(config, seed)
    logged.run()
    log = logged.contact_log()
    reward, final = decision_values(logged)
    day = log.ts // DAY
    eligible = np.zeros((len(log.ts), logged.catalogue.n), dtype=bool)
    for d in np.unique(day):
        rows = day == d
        tenure = tenure_days(logged.population, int(d))[log.customer[rows]]
        eligible[rows] = logged.catalogue.eligible(int(d), log.channel[rows], tenure, log.lifecycle[rows])
    n = eligible.sum(1)
    if not np.allclose(log.propensity, 1 / n):
        raise ValueError("the log's propensities are not the uniform logging policy's: not a log this check can read")
    top = top_k_mask(eligible, logged.catalogue.value, k)
    pi = eps / n + (1 - eps) * top[np.arange(len(n)), log.offer] / top.sum(1)
    pi, mu, elig, top = pi[final], log.propensity[final], eligible[final], top[final]
    # a crude reward model for DR: each offer's mean logged reward
    frame = pd.DataFrame({"offer": log.offer[final], "r": reward})
    q = frame.groupby("offer")["r"].mean().reindex(range(logged.catalogue.n)).fillna(0).to_numpy()
    direct = eps * (elig * q).sum(1) / elig.sum(1) + (1 - eps) * (top * q).sum(1) / top.sum(1)
    estimates = {
        "ips": ips(pi, mu, reward).value,
        "snips": snips(pi, mu, reward).value,
        "dr": doubly_robust(pi, mu, reward, q[log.offer[final]], direct).value,
    }
    closed = Simulator(config, seed)
    closed.run(policy=TopValuePolicy(closed, seed, k, eps))
    return TruthCheck(estimates, float(decision_values(closed)[0].mean()), float(reward.mean()))

"""What changes day by day for each customer: intent, memory, pressure, consent, lifecycle, churn.

All fields are numpy arrays indexed by customer position; the engine updates them in place once
per day, vectorised over all customers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.config import LIFE, SimConfig
from simulator.world import DAY, Population

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int8)


@dataclass
class CustomerState:
    intent: np.ndarray  # int8 category the customer is currently interested in
    recent_browse: np.ndarray  # float32 (n, k): decayed count of browse events per category
    pressure: np.ndarray  # float32 (n, 6): decayed count of contacts per contact channel
    consent: np.ndarray  # bool (n, 3): email, sms, push consent currently granted
    n_purchases: np.ndarray  # int32 purchases so far (including before the period)
    category_mask: np.ndarray  # uint8 bit per category purchased so far (first 8 categories)
    last_active_day: np.ndarray  # int32 day of the last visit or purchase (negative: before start)
    drifting: np.ndarray  # bool: latent disengagement (lower activity, higher churn)
    complaint_recent: np.ndarray  # float32 decayed complaints
    churned: np.ndarray  # bool
    churn_day: np.ndarray  # int32, day at whose end the customer churned, -1 if not
    lifecycle: np.ndarray  # int8 code into LIFECYCLE_STAGES
    offer_seen: np.ndarray  # float32 (n, offers): decayed showings per offer; (n, 0) without offer wear-out
    #: float64 (n, k): probability that each customer buys each category today without any contact
    #: (their organic purchase intent, from today's behaviour model); (0, 0) without cannibalisation.
    organic_today: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def fatigue(self, population: Population, idx: np.ndarray, tolerance: float) -> np.ndarray:
        """Felt contact fatigue of customers `idx`: channel pressure weighted by sensitivity."""
        felt = (self.pressure[idx] * population.fatigue_sensitivity[idx]).sum(1)
        return np.maximum(felt - tolerance, 0.0)


def initial_state(config: SimConfig, population: Population, rng: np.random.Generator,
                  n_offers: int = 0) -> CustomerState:
    """State at the period start; customers signed up before it get a plausible past. The memory
    of offers shown is only kept (`n_offers` columns) when the world has offer wear-out."""
    n, k = population.n, config.n_categories
    tenure = np.maximum(-population.signup_sec, 0) / DAY
    past_purchases = rng.poisson(population.activity * tenure * 0.25).astype(np.int32)
    mask = np.zeros(n, dtype=np.uint8)
    cum = population.affinity.cumsum(1)
    for _ in range(4):  # up to four past categories, drawn from affinity
        drawn = _draw_category(cum, rng.random(n))
        has = past_purchases > _
        mask |= np.where(has & (drawn < 8), (1 << np.minimum(drawn, 7)).astype(np.uint8), 0).astype(np.uint8)
    gap = rng.exponential(1.0 / np.maximum(population.activity, 1e-3)).astype(np.int32)
    last_active = np.where(tenure > 0, -np.minimum(gap, tenure.astype(np.int32)), 0).astype(np.int32)
    state = CustomerState(
        intent=_draw_category(cum, rng.random(n)).astype(np.int8),
        recent_browse=np.zeros((n, k), dtype=np.float32),
        pressure=np.zeros((n, 6), dtype=np.float32),
        consent=population.consent_at_signup.copy(),
        n_purchases=past_purchases,
        category_mask=mask,
        last_active_day=last_active,
        drifting=np.zeros(n, dtype=bool),
        complaint_recent=np.zeros(n, dtype=np.float32),
        churned=np.zeros(n, dtype=bool),
        churn_day=np.full(n, -1, dtype=np.int32),
        lifecycle=np.zeros(n, dtype=np.int8),
        offer_seen=np.zeros((n, n_offers if config.offer_wearout > 0 else 0), dtype=np.float32),
    )
    update_lifecycle(state, population, day=0)
    return state


def _draw_category(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One category per row from per-row cumulative probabilities (vectorised inverse CDF)."""
    return np.minimum((u[:, None] > cumulative).sum(1), cumulative.shape[1] - 1)


def draw_category(population: Population, idx: np.ndarray, u: np.ndarray) -> np.ndarray:
    return _draw_category(population.affinity[idx].cumsum(1), u)


def tenure_days(population: Population, day: int) -> np.ndarray:
    """Whole days since signup, seen at the start of `day` (negative before signup)."""
    return np.floor_divide(day * DAY - population.signup_sec, DAY).astype(np.int32)


def update_lifecycle(state: CustomerState, population: Population, day: int) -> None:
    """The CRM lifecycle stage from observable history (the first matching rule wins):
    lapsed if inactive > 60 days or churned long ago, at_risk if inactive > 30 days, loyal with
    10+ purchases and 120+ days of tenure, diversified with 3+ categories bought, rooted with a
    purchase and 14+ days of tenure, else new."""
    tenure = tenure_days(population, day)
    inactive = day - state.last_active_day
    life = np.full(population.n, LIFE["new"], dtype=np.int8)
    life[(state.n_purchases >= 1) & (tenure >= 14)] = LIFE["rooted"]
    life[(_POPCOUNT[state.category_mask] >= 3) & (life == LIFE["rooted"])] = LIFE["diversified"]
    life[(state.n_purchases >= 10) & (tenure >= 120) & (life == LIFE["diversified"])] = LIFE["loyal"]
    life[(inactive > 30) & (tenure > 30)] = LIFE["at_risk"]
    life[(inactive > 60) & (tenure > 60)] = LIFE["lapsed"]
    state.lifecycle = life

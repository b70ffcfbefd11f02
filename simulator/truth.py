"""The true response model: acceptance probabilities and churn hazards.

These functions are the simulator's ground truth. Contact outcomes are drawn from
`accept_probability`; an oracle policy may call the same function through `DayView.p_accept`.
"""

from __future__ import annotations

import numpy as np

from simulator.catalogue import Catalogue
from simulator.config import CH, SimConfig
from simulator.state import CustomerState
from simulator.world import Population

# Lifecycle (rows: new rooted diversified loyal at_risk lapsed) x kind
# (columns: acquisition cross_sell upsell retention loyalty), logit shifts.
LIFECYCLE_KIND = np.array(
    [
        [0.8, 0.0, -0.5, -0.5, -0.3],
        [0.0, 0.3, 0.2, -0.3, 0.0],
        [-0.3, 0.2, 0.4, -0.3, 0.3],
        [-0.5, 0.2, 0.5, -0.2, 0.8],
        [-0.3, -0.3, -0.5, 1.0, 0.0],
        [0.0, -0.8, -1.0, 0.6, -0.5],
    ],
    dtype=np.float32,
)
CHANNEL_SHIFT = np.array([-0.3, 0.0, 0.0, 0.2, -0.2, 0.1], dtype=np.float32)  # web app email sms push mail


def accept_probability(
    config: SimConfig,
    population: Population,
    state: CustomerState,
    catalogue: Catalogue,
    customer: np.ndarray,
    offer: np.ndarray,
    channel: np.ndarray,
) -> np.ndarray:
    """True probability that each (customer, offer, channel) contact is accepted today.

    Rises with the customer's affinity to the offer's category and recent browsing of it, depends
    on lifecycle x offer kind, on value (more for price-sensitive customers) and channel, and falls
    with contact fatigue and, in a world with offer wear-out, with recent showings of the offer.
    Zero for churned customers. Arrays of equal length; returns float64.
    """
    customer = np.asarray(customer, dtype=np.int64)
    offer = np.asarray(offer, dtype=np.int64)
    channel = np.asarray(channel, dtype=np.int64)
    cat = catalogue.category[offer].astype(np.int64)
    k = config.n_categories
    aff = population.affinity[customer, cat] * k - 1.0  # 0 = average interest
    browse = np.minimum(state.recent_browse[customer, cat], 3.0)
    online = population.online_share[customer]
    digital = (channel == CH["web"]) | (channel == CH["app"])
    logit = (
        config.accept_base
        + config.accept_affinity * np.minimum(aff, 4.0)
        + config.accept_browse * browse
        + LIFECYCLE_KIND[state.lifecycle[customer], catalogue.kind[offer]]
        + CHANNEL_SHIFT[channel]
        + np.where(digital, 1.0 * (online - 0.6), 0.0)
        + np.where(channel == CH["mail"], 1.0 * (0.4 - online), 0.0)
        + catalogue.value_z[offer] * (0.1 + 0.6 * population.price_sensitivity[customer])
        - config.accept_fatigue * state.fatigue(population, customer, config.fatigue_tolerance)
        - 0.7 * state.drifting[customer]
    )
    if state.offer_seen.size:
        logit = logit - config.offer_wearout * state.offer_seen[customer, offer]
    p = 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))
    p[state.churned[customer]] = 0.0
    return p


def churn_hazard(config: SimConfig, population: Population, state: CustomerState, idx: np.ndarray) -> np.ndarray:
    """Daily probability that each customer in `idx` stops buying and visiting for good."""
    fatigue = state.fatigue(population, idx, config.fatigue_tolerance)
    h = (
        config.churn_base
        * population.churn_proneness[idx]
        * (1.0 + config.churn_fatigue * fatigue)
        * (1.0 + config.churn_complaint * state.complaint_recent[idx])
        * (1.0 + config.churn_drift * state.drifting[idx])
    )
    return np.minimum(h, 0.5)

"""The true response model: acceptance probabilities and churn hazards.

These functions are the simulator's ground truth. Contact outcomes are drawn from
`accept_probability`; an oracle policy may call the same function through `DayView.p_accept`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.catalogue import Catalogue
from simulator.config import CH, SimConfig
from simulator.hours import hour_shift
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
    *,
    hour: np.ndarray | None = None,
) -> np.ndarray:
    """True probability that each (customer, offer, channel) contact is accepted today.

    Rises with the customer's affinity to the offer's category and recent browsing of it, depends
    on lifecycle x offer kind, on value (more for price-sensitive customers) and channel, and falls
    with contact fatigue and, in a world with offer wear-out, with recent showings of the offer.
    In a world with send hours, `hour` (the UTC hour each contact is delivered) moves it too
    (`simulator.hours.hour_shift`); without `hour` the contact is valued at the customer's best hour.
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
    if state.offer_seen.size:  # customers tire of the offer, whatever its incentive
        logit = logit - config.offer_wearout * state.offer_seen[customer, catalogue.base[offer]]
    if hour is not None and population.hour_profile.size:
        logit = logit + hour_shift(config, population.hour_profile[customer], channel, hour)
    if config.incentives:
        appeal = np.array([0.0] + [i.appeal for i in config.incentives], dtype=np.float32)
        logit = logit + appeal[catalogue.variant[offer].astype(np.int64) + 1] * (
            0.2 + 1.6 * population.price_sensitivity[customer]
        )
    p = 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))
    p[state.churned[customer]] = 0.0
    return p


@dataclass(frozen=True)
class Effect:
    """The true effect of contacts (customer, offer incl. its incentive variant, channel) today,
    against making no contact. Probabilities and currency units per contact.

    Without cannibalisation every acceptance is incremental (`p_organic` 0); the value of
    making no contact is 0 by definition (the organic purchase happens either way).
    """

    p_accept: np.ndarray  # P(accepted): q p_anyway + (1 - q) p_new
    p_organic: np.ndarray  # q: P(the customer buys the offer's category today without contact)
    p_accept_anyway: np.ndarray  # P(accepted | buys the category anyway)
    p_accept_new: np.ndarray  # P(accepted | would not have bought it): the incremental conversion's driver
    incremental_conversion: np.ndarray  # (1 - q) p_new: purchases the contact adds
    incremental_value: np.ndarray  # expected incremental margin - incentive cost - contact cost


def incremental_effect(
    config: SimConfig,
    population: Population,
    state: CustomerState,
    catalogue: Catalogue,
    customer: np.ndarray,
    offer: np.ndarray,
    channel: np.ndarray,
    *,
    hour: np.ndarray | None = None,
) -> Effect:
    """The true incremental effect of each (customer, offer, channel) contact today.

    A customer who buys the offer's category within the organic window anyway (probability q,
    `organic_window` of `organic_today`)
    accepts with p_anyway = sigmoid(logit + `accept_buying_anyway`): the purchase happens either
    way, only `anyway_value_share` of the plain value is incremental and the incentive is given
    away. One who would not buy accepts with p_new (`accept_probability`) and the whole plain
    value less the incentive is incremental:

        incremental value = (1 - q) p_new (value - incentive)
                            + q p_anyway (anyway_value_share x value - incentive) - contact cost
    """
    customer = np.asarray(customer, dtype=np.int64)
    offer = np.asarray(offer, dtype=np.int64)
    p_new = accept_probability(config, population, state, catalogue, customer, offer, channel, hour=hour)
    base_value = catalogue.base_value[offer]
    incentive = catalogue.incentive_cost[offer]
    if config.cannibalisation and state.organic_today.size:
        q = organic_window(config, state.organic_today[customer, catalogue.category[offer].astype(np.int64)])
        p_any = anyway_probability(config, p_new)
    else:
        q = np.zeros(len(customer))
        p_any = p_new.copy()
    gain_new = (1.0 - q) * p_new * (base_value - incentive)
    gain_any = q * p_any * (config.anyway_value_share * base_value - incentive)
    return Effect(
        p_accept=q * p_any + (1.0 - q) * p_new,
        p_organic=q,
        p_accept_anyway=p_any,
        p_accept_new=p_new,
        incremental_conversion=(1.0 - q) * p_new,
        incremental_value=gain_new + gain_any - catalogue.cost[offer],
    )


def organic_window(config: SimConfig, q_today: np.ndarray) -> np.ndarray:
    """P(buys the category within `organic_window_days`, today included) from today's organic
    probability, the later days drawn as if today's rate held: 1 - (1 - q)^W."""
    return 1.0 - (1.0 - np.asarray(q_today, dtype=np.float64)) ** config.organic_window_days


def anyway_probability(config: SimConfig, p_new: np.ndarray) -> np.ndarray:
    """P(accept) of a customer who buys the category anyway: the logit of `p_new` plus
    `accept_buying_anyway` (0 stays 0: churned customers)."""
    p = np.clip(np.asarray(p_new, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        logit = np.log(p) - np.log1p(-p)
    out = 1.0 / (1.0 + np.exp(-(logit + config.accept_buying_anyway)))
    out[p <= 0.0] = 0.0
    return out


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

"""The customers' latent traits, drawn once: who they are, not what they do.

Traits are numpy arrays indexed by customer position `i`; the id written to the tables is
`customer_ids(n)[i]`. Nothing here is visible to nbo's models except through behaviour; the
traits are written to `truth/customers_truth.parquet`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.config import CH, REGIONS, SEGMENTS, SimConfig
from nbo.vocab import AGE_BANDS, CONTACT_CHANNELS, EVENT_CHANNELS

DAY = 86_400


@dataclass(frozen=True)
class Population:
    """Latent traits, one row per customer (arrays of length n, or n x k)."""

    signup_sec: np.ndarray  # int64, seconds since the period start (negative: signed up before)
    affinity: np.ndarray  # float32 (n, n_categories), rows sum to 1
    price_sensitivity: np.ndarray  # float32 in [0, 1]
    activity: np.ndarray  # float32, expected visits per day
    online_share: np.ndarray  # float32 in [0, 1], share of visits online
    app_share: np.ndarray  # float32 in [0, 1], share of online sessions in the app
    fatigue_sensitivity: np.ndarray  # float32 (n, 6), per contact channel (web, app, email, sms, push, mail)
    churn_proneness: np.ndarray  # float32, multiplies the churn hazard
    contact_intensity: np.ndarray  # float32, the logging policy's outbound contacts per day
    segment: np.ndarray  # int8 code into SEGMENTS
    region: np.ndarray  # int8 code into REGIONS
    age_band: np.ndarray  # int8 code into AGE_BANDS, -1 = undeclared
    acquisition_channel: np.ndarray  # int8 code into EVENT_CHANNELS
    loyalty_member: np.ndarray  # bool
    consent_at_signup: np.ndarray  # bool (n, 3): email, sms, push granted at signup
    #: float64 (n, 24): engagement per UTC hour, rows sum to 1 (`simulator.hours`); (0, 24) without send hours
    hour_profile: np.ndarray = field(default_factory=lambda: np.zeros((0, 24)))

    @property
    def n(self) -> int:
        return len(self.signup_sec)


def customer_ids(n: int) -> list[str]:
    """The pseudonymous ids, `c0000000`, `c0000001`, ... (position = index in the arrays)."""
    width = max(7, len(str(n - 1)))
    return [f"c{i:0{width}d}" for i in range(n)]


def make_population(config: SimConfig, rng: np.random.Generator) -> Population:
    """Draw the latent traits of `config.customers` customers."""
    n, k = config.customers, config.n_categories
    period = config.days * DAY
    before = rng.random(n) < config.pre_period_share
    signup = np.where(
        before,
        -rng.integers(1, config.pre_period_max_days * DAY, n),
        rng.integers(0, max(period - DAY, 1), n),
    ).astype(np.int64)

    affinity = rng.dirichlet(np.full(k, config.affinity_concentration), n).astype(np.float32)
    price = rng.beta(2.0, 2.5, n).astype(np.float32)
    activity = (rng.gamma(2.0, config.activity_mean / 2.0, n)).astype(np.float32)
    online = rng.beta(2.5, 1.5, n).astype(np.float32)
    app = rng.beta(1.5, 1.5, n).astype(np.float32)
    fatigue = rng.gamma(2.0, 0.5, (n, len(CONTACT_CHANNELS))).astype(np.float32)
    fatigue[:, CH["web"]] *= 0.3  # banners annoy less than messages
    fatigue[:, CH["app"]] *= 0.3
    fatigue[:, CH["sms"]] *= 1.5
    churn_proneness = rng.lognormal(0.0, 0.5, n).astype(np.float32)
    intensity = np.minimum(
        config.contact_intensity_median * rng.lognormal(0.0, config.contact_intensity_spread, n),
        config.contact_intensity_max,
    ).astype(np.float32)

    segment = _segments(affinity, price, activity)
    region = rng.integers(0, len(REGIONS), n).astype(np.int8)
    age = rng.integers(0, len(AGE_BANDS), n).astype(np.int8)
    age[rng.random(n) < 0.07] = -1
    acq_online = rng.random(n) < online
    acq = np.where(
        acq_online,
        np.where(rng.random(n) < app, EVENT_CHANNELS.index("app"), EVENT_CHANNELS.index("web")),
        np.where(rng.random(n) < 0.9, EVENT_CHANNELS.index("store"), EVENT_CHANNELS.index("call_center")),
    ).astype(np.int8)
    loyalty = rng.random(n) < np.clip(0.15 + 2.0 * activity, 0, 0.8)
    consent = rng.random((n, 3)) < np.array([config.consent_email, config.consent_sms, config.consent_push])
    return Population(
        signup_sec=signup,
        affinity=affinity,
        price_sensitivity=price,
        activity=activity,
        online_share=online,
        app_share=app,
        fatigue_sensitivity=fatigue,
        churn_proneness=churn_proneness,
        contact_intensity=intensity,
        segment=segment,
        region=region,
        age_band=age,
        acquisition_channel=acq,
        loyalty_member=loyalty,
        consent_at_signup=consent,
    )


def _segments(affinity: np.ndarray, price: np.ndarray, activity: np.ndarray) -> np.ndarray:
    """The latent segment, a deterministic function of traits (first matching rule wins)."""
    entropy = -(affinity * np.log(np.clip(affinity, 1e-9, 1))).sum(1)
    seg = np.full(len(price), SEGMENTS.index("loyalist"), dtype=np.int8)
    seg[entropy > np.quantile(entropy, 0.6)] = SEGMENTS.index("explorer")
    seg[activity < np.quantile(activity, 0.25)] = SEGMENTS.index("occasional")
    seg[price > 0.7] = SEGMENTS.index("bargain_hunter")
    return seg

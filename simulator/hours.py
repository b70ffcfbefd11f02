"""Hour-of-day engagement (`SimConfig.send_hours`): when each customer is around, and what that
does to a message.

Each customer gets a personal profile over the 24 hours of the day (UTC; the simulated world has
one time zone): one or two peaks, each a von Mises bump around a preferred hour, on a small floor.
The preferred hours are drawn from a population shape (morning, lunch, evening and late-evening
people, evening the most common). Sessions, store visits and calls are timed by the profile
(within their opening hours), and an outbound message delivered at an hour the customer is not
around is accepted less often (`hour_shift`). Everything here draws from its own generator, so the
world's other draws are those of the world without the option.
"""

from __future__ import annotations

import numpy as np

from simulator.config import CH, SimConfig

HOURS = 24
#: The population's preferred hours: (centre hour, spread in hours, weight).
PEAKS = ((7.5, 1.0, 0.22), (12.5, 1.0, 0.18), (19.5, 1.5, 0.42), (22.5, 1.0, 0.18))
#: How much each contact channel's response depends on the hour it is delivered (web, app, email,
#: sms, push, mail): a banner is seen in a session (already an engaged hour), an e-mail waits in
#: the inbox for a while, an SMS or a push is read when it arrives or not at all, a letter any time.
CHANNEL_WEIGHT = np.array([0.0, 0.0, 0.6, 1.0, 1.0, 0.0], dtype=np.float64)


def hour_profiles(config: SimConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """float64 (n, 24): each customer's probability of being engaged in each UTC hour (rows sum to 1).

    One peak (probability 0.6) or two, each at a preferred hour drawn from `PEAKS`, with a
    concentration kappa ~ Gamma(3, 1) + 1 (larger: a sharper habit); the floor
    `config.hour_floor` keeps every hour possible."""
    centres = np.array([p[0] for p in PEAKS])
    spreads = np.array([p[1] for p in PEAKS])
    weights = np.array([p[2] for p in PEAKS])
    which = rng.choice(len(PEAKS), size=(n, 2), p=weights / weights.sum())
    centre = centres[which] + rng.normal(0.0, 1.0, (n, 2)) * spreads[which]
    kappa = rng.gamma(3.0, 1.0, (n, 2)) + 1.0
    two = rng.random(n) >= 0.6
    share = np.where(two, rng.uniform(0.3, 0.7, n), 1.0)
    hours = np.arange(HOURS) + 0.5
    angle = 2 * np.pi * (hours[None, None, :] - centre[:, :, None]) / HOURS
    bump = np.exp(kappa[:, :, None] * (np.cos(angle) - 1.0))
    bump /= bump.sum(2, keepdims=True)
    profile = share[:, None] * bump[:, 0] + (1.0 - share)[:, None] * bump[:, 1]
    profile = (1.0 - config.hour_floor) * profile + config.hour_floor / HOURS
    return profile / profile.sum(1, keepdims=True)


def draw_times(profile: np.ndarray, day0: int, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    """Seconds from the period start: one time per row of `profile` (customers' profiles) on the
    day starting at `day0`, its hour drawn from the profile restricted to hours [lo, hi), the
    second within the hour uniform."""
    m = len(profile)
    if not m:
        return np.empty(0, dtype=np.int64)
    cum = profile[:, lo:hi].cumsum(1)
    u = rng.random(m) * cum[:, -1]
    hour = lo + np.minimum((u[:, None] >= cum).sum(1), hi - lo - 1)
    return (day0 + hour * 3600 + rng.integers(0, 3600, m)).astype(np.int64)


def hour_shift(config: SimConfig, profile: np.ndarray, channel: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """Acceptance logit shift of contacts delivered at UTC `hour` on `channel` to customers whose
    profiles are the rows of `profile`: 0 at the customer's best hour, down to -`hour_effect` x the
    channel's weight (`CHANNEL_WEIGHT`) at an hour they are never around, linear in between."""
    at = profile[np.arange(len(profile)), np.asarray(hour, dtype=np.int64)]
    relative = at / profile.max(1)
    return config.hour_effect * CHANNEL_WEIGHT[np.asarray(channel, dtype=np.int64)] * (relative - 1.0)


def true_best_hours(profile: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """int (n,): each customer's most engaged hour among `allowed` (bool (24,), default all)."""
    p = profile if allowed is None else np.where(allowed[None, :], profile, -1.0)
    return p.argmax(1)


assert CH["sms"] == 3 and CH["push"] == 4, "CHANNEL_WEIGHT follows CONTACT_CHANNELS"

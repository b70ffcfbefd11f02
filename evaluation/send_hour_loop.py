"""Closed loop on the hour a message is sent (issue 22 item 5): the same outbound programme sent
at the chosen hour, at a fixed hour, or at a random hour, in a world with hour-of-day engagement
(`SimConfig.send_hours`).

Every arm runs the same programme on the same world (`Simulator(config, seed)`): the simulator's
logging policy (`RandomPolicy`, same seed: the same contact opportunities, channels and offers,
drawn uniformly among the eligible ones) and differs only in the time each outbound contact is
delivered on its day:

- `random`: uniform between 08:00 and 20:00 UTC (what the programme does by itself);
- `fixed`: at `fixed_hour`:00 UTC (10:00 by default);
- `chosen`: nbo's send-time chooser: each customer's engagement hours seen from the start of the
  day (`features.send_hours.engagement_hours`, refreshed every `refresh_days`), shrunk toward the
  population prior (`serving.send_time.SendTimeModel`, refitted with them), the best moment of the
  day outside the policy's quiet hours (`serving.send_time.best_send_times`);
- `oracle`: each customer's TRUE best hour outside quiet hours (the world's hour profiles): the
  most the hour can give.

Banners are not moved (they are shown in the session). The worlds diverge only through what the
contacts do (acceptances, and the purchases, churn and opt-outs that follow), so the decisions
stay almost the same. Value: the accepted outbound offers' value less the outbound contacts' cost
(currency units), and the whole world's value (`DayResult.value` - `cost`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from features.send_hours import engagement_hours
from nbo.vocab import CONTACT_CHANNELS
from serving.policy import QuietHours
from serving.send_time import SendTimeModel, best_send_times
from simulator import Contacts, DayView, SimConfig, Simulator
from simulator.config import OUT, OUTBOUND_CODES
from simulator.hours import true_best_hours
from simulator.world import DAY

ARMS = ("random", "fixed", "chosen", "oracle")


@dataclass(frozen=True)
class SendHourRun:
    """One arm on one world (currency units; contacts and acceptances counted)."""

    arm: str
    seed: int
    outbound_contacts: int
    outbound_accepted: int
    outbound_value: float  # value of accepted outbound offers - cost of outbound contacts
    total_value: float  # the world's value - cost, every channel
    seconds: float

    def row(self) -> dict[str, object]:
        return asdict(self)


class TimedProgramme:
    """The simulator's logging policy with its outbound contacts re-timed by `arm`."""

    def __init__(self, sim: Simulator, arm: str, quiet_hours: QuietHours, fixed_hour: int = 10,
                 refresh_days: int = 7) -> None:
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}; one of {', '.join(ARMS)}")
        if not 0 <= fixed_hour <= 23:
            raise ValueError(f"fixed_hour must be in 0..23, got {fixed_hour}")
        self.sim, self.arm, self.quiet, self.fixed_hour = sim, arm, quiet_hours, fixed_hour
        self.refresh_days = refresh_days
        self.base = sim.default_policy()
        self._counts: pd.DataFrame | None = None
        self._model: SendTimeModel | None = None
        self._fitted_day = -10**9

    def __call__(self, view: DayView) -> Contacts:
        chosen = self.base(view)
        if self.arm == "random" or not len(chosen):
            return chosen
        channel = np.asarray(chosen.channel)
        out = np.isin(channel, OUTBOUND_CODES)
        ts = np.asarray(chosen.ts, dtype=np.int64).copy()
        day0 = view.day * DAY
        if self.arm == "fixed":
            ts[out] = day0 + self.fixed_hour * 3600
        else:
            ts[out] = day0 + self._hours(view, np.asarray(chosen.customer)[out], channel[out])
        ts = np.minimum(ts, day0 + DAY - 1801)  # the simulator wants contacts before 23:30
        return Contacts(chosen.customer, chosen.offer, chosen.channel, chosen.propensity, ts, chosen.no_offers)

    def _hours(self, view: DayView, customer: np.ndarray, channel: np.ndarray) -> np.ndarray:
        """Seconds after midnight UTC at which to deliver each contact."""
        out = np.zeros(len(customer), dtype=np.int64)
        if self.arm == "oracle":
            profile = self.sim.population.hour_profile
            for code in np.unique(channel).tolist():
                name = CONTACT_CHANNELS[code]
                allowed = np.array([not self.quiet.is_quiet(name, datetime(2026, 1, 1, h)) for h in range(24)])
                rows = channel == code
                out[rows] = true_best_hours(profile[customer[rows]], allowed) * 3600
            return out
        if view.day - self._fitted_day >= self.refresh_days or self._model is None:
            self._counts = engagement_hours(view.history.events(), view.date)
            self._model = SendTimeModel().fit(self._counts)
            self._fitted_day = view.day
        assert self._counts is not None
        ids = [view.customer_ids[i] for i in customer.tolist()]
        profiles = self._model.profiles(self._counts, ids)
        now = view.date.to_pydatetime()
        for code in np.unique(channel).tolist():
            rows = np.flatnonzero(channel == code)
            when = best_send_times(profiles[rows], now, self.quiet, None, CONTACT_CHANNELS[code])
            out[rows] = [int((w - now).total_seconds()) for w in when]
        return out

    @property
    def strength(self) -> float | None:
        """The shrinkage strength of the last fit (pseudo-counts), None before."""
        return None if self._model is None else self._model.strength_


def run_arm(config: SimConfig, seed: int, arm: str, quiet_hours: QuietHours | None = None,
            fixed_hour: int = 10, refresh_days: int = 7) -> SendHourRun:
    """Run one arm for `config.days` days on the world of `seed` (send hours must be on)."""
    import time

    if not config.send_hours:
        raise ValueError("the send-hour loop needs a world with send hours (SimConfig(send_hours=True))")
    began = time.process_time()
    sim = Simulator(config, seed)
    policy = TimedProgramme(sim, arm, quiet_hours or QuietHours(), fixed_hour, refresh_days)
    sim.run(policy=policy)
    log = sim.contact_log()
    out = np.isin(log.channel, OUTBOUND_CODES)
    accepted = out & (log.outcome == OUT["accepted"])
    cat = sim.catalogue
    daily = sim.daily()
    return SendHourRun(
        arm=arm,
        seed=seed,
        outbound_contacts=int(out.sum()),
        outbound_accepted=int(accepted.sum()),
        outbound_value=float(cat.value[log.offer[accepted]].sum() - cat.cost[log.offer[out]].sum()),
        total_value=float(daily["value"].sum() - daily["cost"].sum()),
        seconds=time.process_time() - began,
    )

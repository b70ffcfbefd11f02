"""The best hour to send an outbound message: each customer's own engagement hours, shrunk toward
the population's, outside quiet hours, in the customer's time zone.

    model = SendTimeModel().fit(engagement_hours(events, as_of, timezones=tz))   # once, at start
    profile = model.profile(counts_of_one_customer_or_None)                      # 24 probabilities
    send_at = best_send_time(profile, now, policy.quiet_hours, tz="Europe/Paris", channel="sms")

The profile is an empirical-Bayes posterior: a customer's counts of engaged (day, hour) slots
(`features.send_hours.engagement_hours`) plus `strength_` pseudo-counts spread as the population
prior (Dirichlet smoothing). A new customer gets the prior; a customer seen in many slots gets
their own habit. `strength_` is estimated from the spread of customers' hours around the prior
(method of moments of the Dirichlet-multinomial) unless given.

`best_send_time` is a pure function of (profile, now, quiet hours, time zone, channel): the next
moment within 24 hours (25 across a daylight-saving change) whose local hour has the highest
probability among the moments quiet hours allow: `now` itself, the start of each local hour, and
the end of the quiet window (its first allowed minute). Ties go to the earliest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import numpy as np
import pandas as pd

from features.send_hours import HOUR_COLUMNS, HOURS, engagement_hours
from serving.policy import QuietHours, minutes_of, zone

_STEP = timedelta(minutes=15)  # every time-zone offset in use is a multiple of 15 minutes


class SendTimeModel:
    """Population prior and shrinkage strength over customers' engagement hours (an estimator:
    `fit` sets `prior_` (24 probabilities) and `strength_` (pseudo-counts) and returns self).

    `prior_strength`: the pseudo-counts of the prior (None: estimated by empirical Bayes)."""

    def __init__(self, prior_strength: float | None = None) -> None:
        self.prior_strength = prior_strength

    def fit(self, counts: pd.DataFrame) -> SendTimeModel:
        """`counts`: `engagement_hours` rows (one per customer, the 24 `HOUR_COLUMNS`)."""
        c = _matrix(counts)
        n = c.sum(1)
        seen = n > 0
        if seen.any():  # every customer weighs the same in the prior, however active
            prior = (c[seen] / n[seen, None]).mean(0)
        else:
            prior = np.full(HOURS, 1.0 / HOURS)
        prior = np.maximum(prior, 1e-6)
        self.prior_ = prior / prior.sum()
        self.strength_ = (float(self.prior_strength) if self.prior_strength is not None
                          else _moment_strength(c, self.prior_))
        self.n_customers_ = int(seen.sum())
        return self

    def _check(self) -> None:
        if not hasattr(self, "prior_"):
            raise RuntimeError("SendTimeModel is not fitted: call fit(engagement_hours(...)) first")

    def profile(self, counts: Sequence[float] | np.ndarray | None) -> np.ndarray:
        """One customer's 24 posterior probabilities (local hours); None or no counts: the prior."""
        self._check()
        if counts is None:
            return self.prior_.copy()
        c = np.asarray(counts, dtype=np.float64).reshape(HOURS)
        return (c + self.strength_ * self.prior_) / (c.sum() + self.strength_)

    def profiles(self, counts: pd.DataFrame, customer_ids: Sequence[str]) -> np.ndarray:
        """(n, 24) posteriors of `customer_ids` (customers absent from `counts` get the prior)."""
        self._check()
        c = _matrix(counts.reindex([str(i) for i in customer_ids]).fillna(0))
        return (c + self.strength_ * self.prior_) / (c.sum(1, keepdims=True) + self.strength_)


def _matrix(counts: pd.DataFrame) -> np.ndarray:
    missing = [h for h in HOUR_COLUMNS if h not in counts.columns]
    if missing:
        raise ValueError(f"engagement counts lack column(s) {', '.join(missing[:3])}: use features.send_hours.engagement_hours")
    c = counts[list(HOUR_COLUMNS)].to_numpy(dtype=np.float64)
    if (c < 0).any() or not np.isfinite(c).all():
        raise ValueError("engagement counts must be finite and >= 0")
    return c


def _moment_strength(c: np.ndarray, prior: np.ndarray) -> float:
    """Dirichlet concentration a0 by the method of moments: for a customer with n slots, the
    squared distance of their shares to the prior has expectation (1 - sum prior^2) / n x
    (1 + (n - 1) rho), rho = 1 / (a0 + 1); pooled over customers with 2+ slots. Bounded to
    [0.5, 1000] pseudo-counts; 24 (one a hour) when too few customers to say."""
    n = c.sum(1)
    many = n >= 2
    if many.sum() < 20:
        return 24.0
    share = c[many] / n[many, None]
    s = ((share - prior) ** 2).sum(1)
    spread = 1.0 - float((prior ** 2).sum())
    rho = ((n[many] * s).sum() / spread - many.sum()) / (n[many] - 1).sum()
    rho = min(max(rho, 1.0 / 1001.0), 1.0 / 1.5)
    return 1.0 / rho - 1.0


def _aware(now: datetime) -> datetime:
    """`now` as an aware UTC datetime (naive: taken as UTC, the house convention)."""
    return now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)


@lru_cache(maxsize=4096)
def send_slots(now: datetime, quiet_hours: QuietHours, tz: str | None, channel: str | None,
               horizon_h: int = 24) -> tuple[tuple[datetime, ...], tuple[int, ...]]:
    """The allowed moments of `best_send_time` (naive UTC, ascending) and their local hours.

    Depends on no profile, so a batch computes it once per (now, time zone) and every customer
    of that zone picks among the same moments. Widened to 48 hours when nothing within 24 is
    allowed (a window leaving one minute free, missed across a daylight-saving fall-back)."""
    start = _aware(now)
    local_zone = zone(tz or quiet_hours.timezone)
    end = start + timedelta(hours=horizon_h)
    quiet = channel is None or channel in quiet_hours.channels
    moments = [start]
    t = start.replace(minute=(start.minute // 15) * 15, second=0, microsecond=0) + _STEP
    while t < end:
        if t.astimezone(local_zone).minute == 0:
            moments.append(t)
        t += _STEP
    if quiet:  # the window's end: its first allowed minute, on each local date in range
        end_min = minutes_of(quiet_hours.end)
        first = start.astimezone(local_zone).date()
        for d in range(horizon_h // 24 + 2):
            day = first + timedelta(days=d)
            local = datetime(day.year, day.month, day.day, end_min // 60, end_min % 60, tzinfo=local_zone)
            at = local.astimezone(timezone.utc)
            if start <= at < end:
                moments.append(at)
    allowed = sorted({m for m in moments if not (quiet and quiet_hours.in_window(m.astimezone(local_zone)))})
    if not allowed:
        if horizon_h < 48:
            return send_slots(now, quiet_hours, tz, channel, 48)
        raise ValueError("quiet hours leave no moment to send within 48 hours")
    times = tuple(m.replace(tzinfo=None) for m in allowed)
    hours = tuple(m.astimezone(local_zone).hour for m in allowed)
    return times, hours


def best_send_time(profile: Sequence[float] | np.ndarray, now: datetime, quiet_hours: QuietHours,
                   tz: str | None = None, channel: str | None = None) -> datetime:
    """When to send: the next moment within 24 h of `now` whose local hour is the customer's most
    engaged among the moments quiet hours allow (ties: the earliest; `now` itself when it wins).

    `profile`: 24 probabilities (or any non-negative weights) of the customer's LOCAL hours 0..23
    (`SendTimeModel.profile`). `now`: naive UTC (or aware). `quiet_hours`: the policy's
    (`ContactPolicy.quiet_hours`). `tz`: the customer's IANA time zone (None: the quiet hours'
    `timezone`, UTC by default); quiet hours and the profile's hours are read in it. `channel`:
    quiet hours apply only to their `channels` (None: applied whatever the channel).
    Returns naive UTC, at or after `now`. Raises ValueError for a profile that is not 24
    non-negative numbers or an unknown time zone.
    """
    p = np.asarray(profile, dtype=np.float64)
    if p.shape != (HOURS,) or not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("profile must be 24 finite, non-negative numbers (local hours 0..23)")
    naive_now = _aware(now).replace(tzinfo=None)
    times, hours = send_slots(naive_now, quiet_hours, tz, channel)
    return times[int(np.argmax(p[list(hours)]))]


def best_send_times(profiles: np.ndarray, now: datetime, quiet_hours: QuietHours,
                    timezones: Sequence[str | None] | None = None, channel: str | None = None) -> list[datetime]:
    """`best_send_time` of many customers at once (rows of `profiles`, their `timezones`)."""
    profiles = np.asarray(profiles, dtype=np.float64)
    n = len(profiles)
    zones = [None] * n if timezones is None else [None if (z is None or (isinstance(z, float) and math.isnan(z)) or z == "") else str(z)
                                                   for z in timezones]
    naive_now = _aware(now).replace(tzinfo=None)
    out: list[datetime] = [naive_now] * n
    by_zone: dict[str | None, list[int]] = {}
    for i, z in enumerate(zones):
        by_zone.setdefault(z, []).append(i)
    for z, rows in by_zone.items():
        times, hours = send_slots(naive_now, quiet_hours, z, channel)
        pick = np.argmax(profiles[rows][:, list(hours)], axis=1)
        for i, k in zip(rows, pick.tolist(), strict=True):
            out[i] = times[k]
    return out


def customer_timezones(customers: pd.DataFrame) -> dict[str, str]:
    """Customer id -> IANA time zone, for the customers whose `timezone` is known (the contract's
    optional column; absent: none known)."""
    if "timezone" not in customers.columns:
        return {}
    known = customers[customers["timezone"].notna() & (customers["timezone"].astype(str) != "")]
    return dict(zip(known["customer_id"].astype(str), known["timezone"].astype(str), strict=True))


class SendTimes:
    """Everything a caller needs to schedule sends, built once from the data (service start, a
    batch run, a programme's outbox):

        send_times = SendTimes.from_data(events, customers, as_of)
        when = send_times.send_at(customer_id, now, policy.quiet_hours, channel)   # naive UTC

    `counts`: `engagement_hours` as of `as_of`; `model`: the fitted `SendTimeModel`; `zones`:
    customer id -> IANA time zone where known."""

    def __init__(self, counts: pd.DataFrame, model: SendTimeModel, zones: dict[str, str]) -> None:
        self.counts, self.model, self.zones = counts, model, zones

    @classmethod
    def from_data(cls, events: pd.DataFrame, customers: pd.DataFrame, as_of: datetime | pd.Timestamp,
                  prior_strength: float | None = None) -> SendTimes:
        """Engagement hours of every customer as of `as_of` (events before it), the model fitted on them."""
        zones = customer_timezones(customers)
        counts = engagement_hours(events, pd.Timestamp(as_of), timezones=zones)
        return cls(counts, SendTimeModel(prior_strength).fit(counts), zones)

    def profile(self, customer_id: str) -> np.ndarray:
        """The customer's 24 local-hour probabilities (the prior for a customer without events)."""
        cid = str(customer_id)
        return self.model.profile(self.counts.loc[cid].to_numpy() if cid in self.counts.index else None)

    def send_at(self, customer_id: str, now: datetime, quiet_hours: QuietHours, channel: str | None = None) -> datetime:
        """`best_send_time` of one customer (naive UTC, within 24 h of `now`)."""
        return best_send_time(self.profile(customer_id), now, quiet_hours, self.zones.get(str(customer_id)), channel)

    def send_at_many(self, customer_ids: Sequence[str], now: datetime, quiet_hours: QuietHours,
                     channel: str | None = None) -> dict[str, datetime]:
        """`send_at` of many customers at once (each id once)."""
        ids = [str(c) for c in dict.fromkeys(customer_ids)]
        if not ids:
            return {}
        times = best_send_times(self.model.profiles(self.counts, ids), now, quiet_hours,
                                [self.zones.get(c) for c in ids], channel)
        return dict(zip(ids, times, strict=True))


def send_times_for(customer_ids: Sequence[str], events: pd.DataFrame, customers: pd.DataFrame, as_of: datetime,
                   quiet_hours: QuietHours, channel: str) -> dict[str, datetime]:
    """When to send to each of `customer_ids` (naive UTC, within 24 h of `as_of`): their engagement
    hours as of `as_of` (events before it only), shrunk toward the prior of every customer with
    events, in their time zone. What `nbo score --send-hour best` writes as `send_at`."""
    return SendTimes.from_data(events, customers, as_of).send_at_many(customer_ids, as_of, quiet_hours, channel)

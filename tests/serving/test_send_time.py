"""The send-time chooser (issue 22 item 5): empirical-Bayes profiles and `best_send_time`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.send_hours import HOUR_COLUMNS
from serving.policy import ContactPolicy, QuietHours, parse_policy
from serving.send_time import SendTimeModel, best_send_time, best_send_times

NIGHT = QuietHours(channels=("sms", "push"), start="21:00", end="08:00")
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Asia/Kathmandu",
         "Pacific/Chatham", "America/St_Johns", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/London"]


def _counts(rows: dict[str, dict[int, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(0, index=pd.Index(list(rows), name="customer_id"), columns=list(HOUR_COLUMNS))
    for cid, hours in rows.items():
        for h, n in hours.items():
            frame.loc[cid, HOUR_COLUMNS[h]] = n
    return frame


def _population(seed: int = 0, n: int = 400) -> pd.DataFrame:
    """Customers with one habit hour each (evening the most common), a few slots each."""
    rng = np.random.default_rng(seed)
    habit = rng.choice([9, 13, 20], size=n, p=[0.25, 0.25, 0.5])
    rows = {}
    for i, h in enumerate(habit):
        slots = rng.integers(1, 30)
        hours = np.where(rng.random(slots) < 0.7, h, rng.integers(0, 24, slots))
        rows[f"c{i}"] = dict(zip(*np.unique(hours, return_counts=True)))
    return _counts(rows)


def test_a_customer_without_history_gets_the_prior() -> None:
    model = SendTimeModel().fit(_population())
    assert np.allclose(model.profile(None), model.prior_)
    assert np.allclose(model.profiles(_population(), ["nobody"])[0], model.prior_)
    assert np.allclose(model.profile(np.zeros(24)), model.prior_)
    assert int(np.argmax(model.prior_)) == 20  # the population's evening


def test_own_hours_win_with_enough_history_and_not_with_one_slot() -> None:
    assert 0.5 < SendTimeModel().fit(_population()).strength_ < 1000
    model = SendTimeModel(prior_strength=24).fit(_population())
    assert model.strength_ == 24
    one = np.zeros(24)
    one[6] = 1
    assert int(np.argmax(model.profile(one))) == 20  # one slot at 06:00 does not outweigh the prior
    many = np.zeros(24)
    many[6] = 40
    assert int(np.argmax(model.profile(many))) == 6


def test_the_estimated_strength_follows_how_much_customers_differ() -> None:
    """Customers who all share the prior's shape need a strong prior; customers each with a sharp
    habit of their own, a weak one."""
    rng = np.random.default_rng(1)
    alike = _counts({f"a{i}": dict(zip(*np.unique(rng.integers(0, 24, 30), return_counts=True))) for i in range(300)})
    sharp = _counts({f"s{i}": {int(rng.integers(0, 24)): 30} for i in range(300)})
    assert SendTimeModel().fit(alike).strength_ > 20 * SendTimeModel().fit(sharp).strength_


def test_unfitted_and_bad_profiles_are_refused() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        SendTimeModel().profile(None)
    for bad in (np.ones(23), np.full(24, np.nan), -np.ones(24)):
        with pytest.raises(ValueError, match="24"):
            best_send_time(bad, datetime(2026, 3, 2), NIGHT)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        best_send_time(np.ones(24), datetime(2026, 3, 2), NIGHT, tz="Mars/Olympus")


def test_the_next_occurrence_of_the_best_allowed_hour() -> None:
    p = np.zeros(24)
    p[19], p[23] = 0.5, 0.9  # 23:00 is quiet for sms: 19:00 wins
    now = datetime(2026, 3, 2, 20, 10)
    assert best_send_time(p, now, NIGHT, channel="sms") == datetime(2026, 3, 3, 19, 0)
    assert best_send_time(p, now, NIGHT, channel="email") == datetime(2026, 3, 2, 23, 0)  # email has no quiet hours
    p = np.zeros(24)
    p[20] = 1.0
    assert best_send_time(p, now, NIGHT, channel="email") == now  # the best hour is now: send now
    # in Paris (UTC+1 in March) local 19:00 is 18:00 UTC
    p = np.zeros(24)
    p[19] = 1.0
    assert best_send_time(p, now, NIGHT, tz="Europe/Paris", channel="sms") == datetime(2026, 3, 3, 18, 0)
    # an all-quiet morning hour: the window's end (08:15) is its first allowed minute
    q = QuietHours(start="21:30", end="08:15")
    p = np.zeros(24)
    p[8] = 1.0
    assert best_send_time(p, now, q, channel="sms") == datetime(2026, 3, 3, 8, 15)


def test_batch_equals_one_by_one() -> None:
    rng = np.random.default_rng(3)
    profiles = rng.random((50, 24))
    zones = [ZONES[i % len(ZONES)] if i % 3 else None for i in range(50)]
    now = datetime(2026, 10, 25, 0, 40)
    batch = best_send_times(profiles, now, NIGHT, zones, channel="push")
    assert batch == [best_send_time(p, now, NIGHT, tz=z, channel="push") for p, z in zip(profiles, zones)]


_hhmm = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
# around the 2026 daylight-saving changes (Europe: 29 March, 25 October; US: 8 March, 1 November)
_moments = st.datetimes(min_value=datetime(2026, 3, 6), max_value=datetime(2026, 11, 3)) | st.sampled_from(
    [datetime(2026, 3, 29, 0, 30), datetime(2026, 10, 25, 0, 59), datetime(2026, 3, 8, 6, 59), datetime(2026, 11, 1, 5, 30)])


@settings(max_examples=300, deadline=None)
@given(start=_hhmm, end=_hhmm, tz=st.sampled_from(ZONES + [None]), now=_moments,
       profile=st.lists(st.floats(0, 1), min_size=24, max_size=24))
def test_never_in_quiet_hours(start: str, end: str, tz: str | None, now: datetime, profile: list[float]) -> None:
    q = QuietHours(channels=("sms",), start=start, end=end)
    at = best_send_time(profile, now, q, tz=tz, channel="sms")
    assert not q.is_quiet("sms", at, tz)
    assert now <= at < now + timedelta(hours=48)
    local = at.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(tz or "UTC"))
    if q.start == q.end:  # nothing quiet: the customer's best hour (or a tie) within 24 h
        assert at < now + timedelta(hours=24)
        assert profile[local.hour] == max(profile) or at == now


@pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York"])
def test_quiet_hours_in_the_customers_time_zone(tz: str) -> None:
    at = datetime(2026, 7, 1, 21, 30)  # 23:30 in Paris, 17:30 in New York
    assert NIGHT.is_quiet("sms", at) is True
    assert NIGHT.is_quiet("sms", at, tz) is (tz == "Europe/Paris")
    assert NIGHT.is_quiet("email", at, tz) is False


def test_policy_timezone_is_checked() -> None:
    assert parse_policy('[quiet_hours]\ntimezone = "Europe/Paris"\n').quiet_hours.timezone == "Europe/Paris"
    with pytest.raises(Exception, match="quiet_hours.timezone.*unknown time zone 'Europe/Pariss'"):
        parse_policy('[quiet_hours]\ntimezone = "Europe/Pariss"\n')
    assert ContactPolicy().quiet_hours.timezone == "UTC"

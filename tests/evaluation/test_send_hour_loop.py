"""The closed loop on the send hour (evaluation/send_hour_loop.py): what each arm does to the times."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from evaluation.send_hour_loop import ARMS, TimedProgramme, run_arm
from serving.policy import QuietHours
from simulator import SimConfig, Simulator
from simulator.config import CH, OUTBOUND_CODES

CONFIG = SimConfig(customers=400, days=20, send_hours=True)


def _log(arm: str):  # noqa: ANN202
    sim = Simulator(CONFIG, seed=2)
    programme = TimedProgramme(sim, arm, QuietHours(), fixed_hour=10, refresh_days=5)
    sim.run(policy=programme)
    return sim.contact_log(), programme


@pytest.mark.parametrize("arm", ARMS)
def test_each_arm_times_outbound_contacts_only(arm: str) -> None:
    log, programme = _log(arm)
    out = np.isin(log.channel, OUTBOUND_CODES)
    hour = (log.ts % 86_400) // 3600
    assert out.any() and (~out).any()
    if arm == "fixed":
        assert (log.ts[out] % 86_400 == 10 * 3600).all()
    if arm in ("chosen", "oracle"):
        quiet = QuietHours()
        loud = np.isin(log.channel, [CH["sms"], CH["push"]])
        assert not any(quiet.is_quiet("sms", datetime(2025, 1, 1, int(h))) for h in hour[loud])
        assert len(np.unique(hour[out])) > 3  # customers get different hours
    if arm == "chosen":
        assert programme.strength is not None and programme.strength > 0
    random_log, _ = _log("random")
    banner = ~np.isin(random_log.channel, OUTBOUND_CODES)
    # the banners are not moved: the first day's banners (before the worlds diverge) are the same
    first = random_log.ts < 86_400
    assert np.array_equal(np.sort(random_log.ts[banner & first]), np.sort(log.ts[~out & (log.ts < 86_400)]))


def test_the_loop_needs_send_hours_and_a_known_arm() -> None:
    with pytest.raises(ValueError, match="send hours"):
        run_arm(SimConfig(customers=50, days=2), 0, "chosen")
    with pytest.raises(ValueError, match="unknown arm"):
        TimedProgramme(Simulator(CONFIG, seed=0), "midnight", QuietHours())


def test_the_oracle_hour_beats_a_fixed_hour_on_a_small_world() -> None:
    """The world's hour effect is there to be found: the true best hour accepts more than 10:00."""
    config = SimConfig(customers=3000, days=30, send_hours=True)
    oracle, fixed = run_arm(config, 1, "oracle"), run_arm(config, 1, "fixed")
    assert oracle.outbound_accepted > fixed.outbound_accepted
    assert oracle.outbound_value > fixed.outbound_value

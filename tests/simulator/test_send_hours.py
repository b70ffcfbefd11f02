"""Hour-of-day engagement in the simulator (`--send-hours`, simulator/hours.py): present only when on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from simulator import SimConfig, Simulator, no_contact
from simulator.hours import hour_shift
from simulator.io import customers_truth
from simulator.truth import accept_probability


def test_off_by_default_the_world_is_the_one_without_the_option() -> None:
    assert SimConfig().send_hours is False
    plain = Simulator(SimConfig(customers=300, days=12), seed=4)
    plain.run()
    assert plain.population.hour_profile.size == 0
    assert not any(c.startswith("engagement_h") for c in customers_truth(plain).columns)


def test_the_option_changes_only_the_hours_of_behaviour() -> None:
    """Without contacts, the same customers do the same things on the same days, at other hours."""
    a = Simulator(SimConfig(customers=300, days=15), seed=5)
    b = Simulator(SimConfig(customers=300, days=15, send_hours=True), seed=5)
    a.run(policy=no_contact)
    b.run(policy=no_contact)
    ea, eb = a.event_log(), b.event_log()
    key = lambda e: np.lexsort((e.type, e.category, e.ts // 86_400, e.customer))  # noqa: E731
    ia, ib = key(ea), key(eb)
    assert len(ea) == len(eb)
    assert np.array_equal(ea.customer[ia], eb.customer[ib]) and np.array_equal(ea.ts[ia] // 86_400, eb.ts[ib] // 86_400)
    assert not np.array_equal(np.sort(ea.ts % 86_400), np.sort(eb.ts % 86_400))


def test_events_follow_each_customers_hours() -> None:
    sim = Simulator(SimConfig(customers=1500, days=60, send_hours=True), seed=2)
    sim.run(policy=no_contact)
    ev = sim.event_log()
    profile = sim.population.hour_profile
    assert profile.shape == (1500, 24) and np.allclose(profile.sum(1), 1)
    hour = (ev.ts // 3600) % 24
    # an event's hour is more often the customer's best hour than chance would have it
    at_best = (hour == profile.argmax(1)[ev.customer]).mean()
    assert at_best > 3 / 24
    # the population shape: evenings busier than the small hours
    counts = np.bincount(hour, minlength=24)
    assert counts[19:22].sum() > 3 * counts[2:5].sum()


def test_acceptance_depends_on_the_hour_only_when_on() -> None:
    on = Simulator(SimConfig(customers=200, days=3, send_hours=True), seed=1)
    off = Simulator(SimConfig(customers=200, days=3), seed=1)
    c = np.arange(200)
    o = np.zeros(200, dtype=np.int64)
    sms = np.full(200, 3)
    best = on.population.hour_profile.argmax(1)
    worst = on.population.hour_profile.argmin(1)

    def p(sim: Simulator, hour: np.ndarray | None, channel: np.ndarray = sms) -> np.ndarray:
        return accept_probability(sim.config, sim.population, sim.state, sim.catalogue, c, o, channel, hour=hour)

    assert np.allclose(p(on, best), p(on, None))  # the best hour loses nothing
    live = p(on, None) > 0
    assert (p(on, worst)[live] < p(on, best)[live]).all()
    assert np.array_equal(p(off, worst), p(off, best))  # off: no hour effect at all
    web = np.zeros(200, dtype=np.int64)
    assert np.allclose(p(on, worst, web), p(on, best, web))  # banners are seen in a session
    shift = hour_shift(on.config, on.population.hour_profile[c], sms, worst)
    assert shift.min() >= -on.config.hour_effect and shift.max() < 0


def test_cli_flag_truth_and_config(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "--customers", "80", "--days", "5", "--seed", "3", "--out",
                                 str(tmp_path / "on"), "--send-hours", "--no-progress"])
    assert result.exit_code == 0, result.output
    import pandas as pd

    truth = pd.read_parquet(tmp_path / "on" / "truth" / "customers_truth.parquet")
    hours = truth[[f"engagement_h{h:02d}" for h in range(24)]].to_numpy()
    assert np.allclose(hours.sum(1), 1) and (truth["best_hour"].to_numpy() == hours.argmax(1)).all()
    assert json.loads((tmp_path / "on" / "truth" / "config.json").read_text())["send_hours"] is True
    assert runner.invoke(app, ["simulate", "--customers", "80", "--days", "5", "--seed", "3", "--out",
                               str(tmp_path / "off"), "--no-progress"]).exit_code == 0
    assert "send_hours" not in json.loads((tmp_path / "off" / "truth" / "config.json").read_text())


@pytest.mark.parametrize("bad", [{"hour_effect": -1}, {"hour_floor": 0}, {"hour_floor": 1.5}])
def test_bad_knobs_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SimConfig(send_hours=True, **bad)

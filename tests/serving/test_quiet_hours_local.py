"""Quiet hours in each customer's time zone (`customers.timezone`), through the decision pipeline."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from features import build_customer_features, write_materialised
from nbo.data import load_dataset
from serving.engine import DecisionEngine
from serving.settings import EngineSettings
from simulator import SimConfig, Simulator, write_simulation

AS_OF = pd.Timestamp("2025-01-31")
POLICY = """
[consent]
opt_in_channels = ["email"]
[arbitration]
max_per_category = 99
[arbitration.exploration]
rate = 0.0
"""


def _engine(root: Path, zones: dict[int, str] | None, live: bool = True) -> tuple[DecisionEngine, list[str]]:
    sim = Simulator(SimConfig(customers=200, days=30), seed=3)
    sim.run()
    data = root / "data"
    write_simulation(sim, data)
    ids = sim.customer_ids[:3]
    if zones is not None:
        customers = pd.read_parquet(data / "customers.parquet")
        customers["timezone"] = None
        for i, z in zones.items():
            customers.loc[i, "timezone"] = z
        customers.to_parquet(data / "customers.parquet", index=False)
    write_materialised(build_customer_features(load_dataset(data), AS_OF), root / "features.parquet", AS_OF)
    (root / "policy.toml").write_text(POLICY)
    settings = EngineSettings(data_dir=data, features_path=root / "features.parquet", policy_path=root / "policy.toml",
                              store=str(root / "contacts.db"))
    return DecisionEngine.from_settings(settings, load_models=False, live=live), ids


def _quiet(engine: DecisionEngine, cid: str, now: datetime) -> bool:
    d = engine.decide(cid, "sms", now=now, k=3, reserve=False)
    reasons = {s.reason for s in d.suppressed}
    if "quiet_hours" in reasons:
        assert not d.offers and reasons == {"quiet_hours"}
        return True
    return False


@pytest.mark.parametrize("now, expected", [
    # 22:30 UTC: 23:30 in Paris (quiet), 17:30 in New York (not), 22:30 without a zone (quiet, UTC)
    (datetime(2025, 1, 31, 22, 30), (True, False, True)),
    # 07:30 UTC: 08:30 in Paris (not), 02:30 in New York (quiet), 07:30 without a zone (quiet)
    (datetime(2025, 1, 31, 7, 30), (False, True, True)),
    # 14:00 UTC: nobody (09:00 in New York)
    (datetime(2025, 1, 31, 14, 0), (False, False, False)),
])
def test_quiet_hours_are_read_in_the_customers_zone(tmp_path: Path, now: datetime, expected: tuple[bool, ...]) -> None:
    engine, ids = _engine(tmp_path, {0: "Europe/Paris", 1: "America/New_York"})
    try:
        assert engine.timezones == {ids[0]: "Europe/Paris", ids[1]: "America/New_York"}
        assert tuple(_quiet(engine, c, now) for c in ids) == expected
        # inbound channels have no quiet hours whatever the zone
        assert not any("quiet_hours" in {s.reason for s in engine.decide(c, "web", now=now, reserve=False).suppressed}
                       for c in ids)
    finally:
        engine.close()


def test_without_the_column_everyone_is_in_the_policys_zone(tmp_path: Path) -> None:
    engine, ids = _engine(tmp_path, None)
    try:
        assert engine.timezones == {}
        assert [_quiet(engine, c, datetime(2025, 1, 31, 22, 30)) for c in ids] == [True, True, True]
        assert [_quiet(engine, c, datetime(2025, 1, 31, 12, 0)) for c in ids] == [False, False, False]
    finally:
        engine.close()


def test_the_quiet_hours_reason_names_the_customers_zone(tmp_path: Path) -> None:
    engine, ids = _engine(tmp_path, {0: "Europe/Paris"})
    try:
        night = datetime(2025, 1, 31, 22, 30)  # quiet for both: 23:30 in Paris, 22:30 UTC
        texts = [{s.reason_text for s in engine.decide(c, "sms", now=night, reserve=False).suppressed} for c in ids[:2]]
        assert texts[0] == {"quiet hours on sms (21:00-08:00 Europe/Paris, the customer's time zone)"}
        assert texts[1] == {"quiet hours on sms (21:00-08:00 UTC)"}  # no zone: the policy's sentence, unchanged
    finally:
        engine.close()


def test_the_one_customer_arbiter_and_the_console_read_the_customers_zone(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from console.customer import fatigue_budget

    engine, ids = _engine(tmp_path, {0: "Europe/Paris", 1: "America/New_York"})
    try:
        arbiter = engine.arbiter  # built with the customers' zones
        assert arbiter.timezones == engine.timezones
        offers = {o: 0.5 for o in engine.offer_ids}
        at = datetime(2025, 1, 31, 7, 30)  # 08:30 Paris (open), 02:30 New York (quiet), 07:30 UTC (quiet)
        quiet = ["quiet_hours" in {s.reason for s in arbiter.decide(c, "sms", at, offers, rng=1).suppressed} for c in ids]
        assert quiet == [False, True, True]
        assert arbiter.may_contact(ids[0], "sms", at, None) and not arbiter.may_contact(ids[2], "sms", at, None)
        backend = SimpleNamespace(engine=engine)
        budget = [{b.channel: b.quiet_now for b in fatigue_budget(backend, c, at)[0]}["sms"] for c in ids]  # type: ignore[arg-type]
        assert budget == [False, True, True]
    finally:
        engine.close()


def test_a_batch_engine_keeps_the_customers_zones(tmp_path: Path) -> None:
    """`nbo score`'s engines (`live=False`) skip the customers table, except for its time zones:
    a campaign obeys the same local quiet hours as `/recommend`."""
    engine, ids = _engine(tmp_path, {0: "Europe/Paris", 1: "America/New_York"}, live=False)
    try:
        assert engine.timezones == {ids[0]: "Europe/Paris", ids[1]: "America/New_York"}
        assert engine.live is None
    finally:
        engine.close()

"""The send hour of a programme's outbox row (issue 22 items 4-5): `send_hour = "best"` (the
default) schedules each customer at their most engaged local hour (serving/send_time.py), in their
time zone, never in quiet hours, and the decision and reservation are made for that moment;
`send_hour = "now"` sends at the trigger, or when the customer's quiet hours end."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features import build_customer_features, write_materialised
from nbo.data import load_dataset
from serving.contact_store.base import LiveEvent, from_epoch, to_epoch
from serving.engine import DecisionEngine
from serving.policy import zone
from serving.send_time import SendTimes
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
[quiet_hours]
channels = ["sms"]
start = "21:00"
end = "08:00"
[[programmes]]
name = "search-follow-up"
channels = ["sms"]
trigger = { kind = "event", type = "search" }
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """200 simulated customers; the first in Tokyo, the others without a time zone."""
    root = tmp_path_factory.mktemp("send-hour")
    sim = Simulator(SimConfig(customers=200, days=30), seed=3)
    sim.run()
    data = root / "data"
    write_simulation(sim, data)
    customers = pd.read_parquet(data / "customers.parquet")
    customers["timezone"] = None
    customers.loc[0, "timezone"] = "Asia/Tokyo"
    customers.to_parquet(data / "customers.parquet", index=False)
    write_materialised(build_customer_features(load_dataset(data), AS_OF), root / "features.parquet", AS_OF)
    return root, customers["customer_id"].astype(str).tolist()


def _engine(root: Path, tmp_path: Path, settings: str = "") -> DecisionEngine:
    (tmp_path / "policy.toml").write_text(POLICY + "[programme_settings]\n" + settings + "\n")
    return DecisionEngine.from_settings(EngineSettings(
        data_dir=root / "data", features_path=root / "features.parquet", policy_path=tmp_path / "policy.toml",
        store=str(tmp_path / "contacts.db")), load_models=False)


def _search(cid: str, at: datetime) -> LiveEvent:
    return LiveEvent(f"{cid}-search", cid, to_epoch(at), "search", "web", "books", None, None)


def _now(root: Path) -> datetime:
    """14:00 UTC the day after the data's last event: 23:00 in Tokyo (quiet), 14:00 UTC (open)."""
    last = pd.read_parquet(root / "data" / "events.parquet")["ts"].max()
    return (pd.Timestamp(last).normalize() + pd.Timedelta(days=1, hours=14)).to_pydatetime()


def test_best_hour_is_the_default_and_the_decision_is_made_for_it(world: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, ids = world
    engine = _engine(root, tmp_path)
    try:
        assert engine.policy.programme_settings.send_hour == "best"
        now = _now(root)
        reachable = [c for c in ids if engine.decide(c, "sms", None, now.replace(hour=12), k=1, reserve=False).offers]
        chosen = [ids[0]] + [c for c in reachable if c != ids[0]][:20]
        engine.ingest_events([_search(c, now - timedelta(minutes=1)) for c in chosen], now)
        rows = {r.customer_id: r for r in engine.store.outbox_page(None, None, 0, 100)}
        assert set(rows) == set(chosen)
        # the chooser built independently from the data's tables, as of the data's end
        data = load_dataset(root / "data")
        expected = SendTimes.from_data(data.events, data.customers, data.events["ts"].max() + pd.Timedelta(seconds=1))
        q = engine.policy.quiet_hours
        pending = [r for r in rows.values() if r.status == "pending"]
        assert len(pending) >= 10, [r.reason for r in rows.values()]
        for r in pending:
            at = from_epoch(r.scheduled)
            assert at == expected.send_at(r.customer_id, now, q, "sms")
            assert now <= at < now + timedelta(hours=24)
            assert not q.is_quiet("sms", at, engine.timezones.get(r.customer_id))
            # the contact is reserved at the scheduled moment, under the row's decision
            [contact] = engine.store.contact_rows(r.customer_id)
            assert (contact["ts"], contact["decision_id"]) == (at, r.decision_id)
        # customers' own hours: not everybody is sent at the same moment, and not all now
        assert len({r.scheduled for r in pending}) > 1
        assert any(r.scheduled != to_epoch(now) for r in pending)
        # Tokyo: quiet at 23:00 local; the send lands in Tokyo's open hours
        tokyo = rows[ids[0]]
        if tokyo.status == "pending":
            local = from_epoch(tokyo.scheduled).replace(tzinfo=zone("UTC")).astimezone(zone("Asia/Tokyo"))
            assert 8 <= local.hour < 21
    finally:
        engine.close()


def test_send_hour_now_waits_for_the_end_of_the_customers_quiet_hours(world: tuple[Path, list[str]],
                                                                      tmp_path: Path) -> None:
    root, ids = world
    engine = _engine(root, tmp_path, 'send_hour = "now"')
    try:
        now = _now(root)
        reachable = [c for c in ids[1:] if engine.decide(c, "sms", None, now, k=1, reserve=False).offers]
        utc_customer = reachable[0]
        engine.ingest_events([_search(ids[0], now - timedelta(minutes=1)), _search(utc_customer, now - timedelta(minutes=1))],
                             now)
        rows = {r.customer_id: r for r in engine.store.outbox_page(None, None, 0, 100)}
        assert rows[utc_customer].scheduled == to_epoch(now)  # 14:00 UTC: open, sent now
        tokyo = rows[ids[0]]
        if tokyo.status == "pending":  # 23:00 in Tokyo: at 08:00 Tokyo, 23:00 UTC
            assert from_epoch(tokyo.scheduled) == now.replace(hour=23)
        else:
            assert "quiet_hours" not in (tokyo.reason or "")
    finally:
        engine.close()


def test_the_chooser_is_built_once_per_engine(world: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, _ = world
    engine = _engine(root, tmp_path)
    try:
        first = engine.send_times()
        assert first is not None and engine.send_times() is first
        assert first.zones == engine.timezones
    finally:
        engine.close()

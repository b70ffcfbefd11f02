"""`nbo programmes run` (issue 22 item 4): the sweep a cron calls. Events recorded by `nbo ingest`
fire on the next run, once; a bad policy is one line, exit 2, and nothing is written."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from serving.contact_store import SQLiteContactStore
from tests.serving.test_engine import NOW, World, build_world

runner = CliRunner()
GOOD = """
[[programmes]]
name = "search-follow-up"
channels = ["email", "mail"]
trigger = { kind = "event", type = "search" }
"""


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory)


def _run(world: World, policy: Path, store: Path, at: object = NOW) -> tuple[int, str, str]:
    result = runner.invoke(app, ["programmes", "run", "--data", str(world.data), "--features", str(world.features),
                                 "--tracking-uri", world.tracking_uri, "--policy", str(policy), "--store", str(store),
                                 "--as-of", pd.Timestamp(at).isoformat()])
    return result.exit_code, result.stdout, result.stderr


def test_ingested_events_fire_on_the_next_run_once(world: World, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(GOOD)
    store = tmp_path / "contacts.db"
    customers = pd.read_parquet(world.data / "customers.parquet")["customer_id"].astype(str).tolist()[:3]
    events = tmp_path / "events.csv"
    pd.DataFrame({"event_id": [f"s{i}" for i in range(3)], "customer_id": customers,
                  "ts": [(NOW - timedelta(minutes=5)).isoformat() + "Z"] * 3, "type": ["search"] * 3,
                  "category": ["books"] * 3}).to_csv(events, index=False)
    ingested = runner.invoke(app, ["ingest", str(events), "--data", str(world.data), "--store", str(store),
                                   "--now", NOW.isoformat()])
    assert ingested.exit_code == 0, ingested.stderr
    code, out, err = _run(world, policy, store)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["by_programme"] == {"search-follow-up": 3}
    opened = SQLiteContactStore(store)
    try:
        rows = opened.outbox_page(None, None, 0, 100)
        assert sorted(r.customer_id for r in rows) == sorted(customers)
        assert all(r.status in ("pending", "none") for r in rows)
        assert all((r.channel in ("email", "mail")) if r.status == "pending" else r.reason for r in rows)
    finally:
        opened.close()
    code, out, _ = _run(world, policy, store, NOW + timedelta(minutes=30))
    assert code == 0 and json.loads(out)["fired"] == 0  # each trigger once


@pytest.mark.parametrize(
    ("text", "names"),
    [('[[programmes]]\nname = "p"\nchannels = ["email"]\ntrigger = { kind = "birthday" }\n', ("programmes.0.trigger",)),
     ('[[programmes]]\nname = "p"\ntrigger = { kind = "event", type = "search" }\n', ("programmes.0.channels",)),
     ('[[programmes]]\nname = "p"\nchannels = ["email"]\ntrigger = { kind = "browse_without_purchase", hours = -1 }\n',
      ("hours",)),
     ("[arbitration]\n", ("no enabled",))],
)
def test_a_bad_policy_is_one_line_exit_2_and_writes_nothing(world: World, tmp_path: Path, text: str,
                                                            names: tuple[str, ...]) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(text)
    store = tmp_path / "contacts.db"
    code, _, err = _run(world, policy, store)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert all(n in err for n in names), err
    assert not store.exists()

"""`nbo ingest FILE` (issue 22 item 1): the events of a file into the contact store's event log,
through the same path as `POST /events`; all or nothing; a bad row is one line and exit 2."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from serving.contact_store import SQLiteContactStore
from tests.serving.test_engine import NOW, World, world  # noqa: F401 - the shared world

runner = CliRunner()


def _ingest(world: World, file: Path, store: Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["ingest", str(file), "--data", str(world.data), "--store", str(store),
                                 "--now", NOW.isoformat()])
    return result.exit_code, result.stdout, result.stderr


def _rows(world: World, n: int) -> pd.DataFrame:
    customers = pd.read_parquet(world.data / "customers.parquet")["customer_id"].astype(str).tolist()
    return pd.DataFrame({
        "event_id": [f"pos-{i}" for i in range(n)],
        "customer_id": [customers[i % 7] for i in range(n)],
        "ts": [(NOW - timedelta(minutes=5 + i)).isoformat() + "Z" for i in range(n)],
        "type": ["purchase" if i % 3 == 0 else "product_view" for i in range(n)],
        "channel": ["store" if i % 2 else "web" for i in range(n)],
        "category": ["home"] * n,
        "amount": [25.0 if i % 3 == 0 else None for i in range(n)],
    })


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_ingest_records_a_file_once(world: World, tmp_path: Path, fmt: str) -> None:
    rows = _rows(world, 40)
    file = tmp_path / f"events.{fmt}"
    rows.to_csv(file, index=False) if fmt == "csv" else rows.to_parquet(file)
    store = tmp_path / "contacts.db"
    code, out, err = _ingest(world, file, store)
    assert code == 0, err
    assert json.loads(out) == {"received": 40, "recorded": 40, "duplicates": 0}
    code, out, _ = _ingest(world, file, store)
    assert code == 0 and json.loads(out) == {"received": 40, "recorded": 0, "duplicates": 40}
    opened = SQLiteContactStore(store)
    try:
        held = opened.live_events(rows["customer_id"].unique().tolist())
        assert sum(len(v) for v in held.values()) == 40
        first = next(e for e in held[rows["customer_id"][0]] if e.event_id == "pos-0")
        assert first.type == "purchase" and first.amount == 25.0 and first.channel == "web"
    finally:
        opened.close()


@pytest.mark.parametrize(
    ("row", "column", "value", "message"),
    [
        (5, "customer_id", "c-nobody", "row 6: customer_id"),
        (6, "ts", "yesterday", "row 7: ts"),
        (7, "ts", (NOW + timedelta(hours=1)).isoformat(), "row 8: ts"),
        (8, "type", "teleport", "row 9: type"),
        (9, "channel", "fax", "row 10: channel"),
        (3, "amount", "-4", "row 4: amount"),
        (8, "event_id", "pos-1", "row 9: event_id"),  # pos-1 of the same customer again, other content
    ],
)
def test_a_bad_row_is_one_line_exit_2_and_nothing_written(world: World, tmp_path: Path, row: int, column: str,
                                                          value: str, message: str) -> None:
    rows = _rows(world, 12).astype({"amount": object})
    rows.loc[row, column] = value
    file = tmp_path / "events.csv"
    rows.to_csv(file, index=False)
    store = tmp_path / "contacts.db"
    code, out, err = _ingest(world, file, store)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    opened = SQLiteContactStore(store)
    try:
        assert opened.live_events(rows["customer_id"].astype(str).unique().tolist()) == {}
    finally:
        opened.close()


def test_a_file_without_event_ids_is_refused(world: World, tmp_path: Path) -> None:
    file = tmp_path / "events.csv"
    _rows(world, 3).drop(columns="event_id").to_csv(file, index=False)
    code, _, err = _ingest(world, file, tmp_path / "contacts.db")
    assert code == 2 and "event_id" in err

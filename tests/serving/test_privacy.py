"""GDPR access and erasure (`nbo export` / `nbo forget`) on a small simulated world.

The world: 80 customers x 40 days (simulator), the data directory in mixed formats (events as
CSV, the rest Parquet), two materialised feature snapshots in a directory, and a SQLite contact
store filled through the store API. Everything the export lists is erased; nothing else changes.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features import build_customer_features, materialised_meta, read_materialised, write_materialised
from cli import app
from nbo.data import load_dataset, load_table, write_table
from simulator import SimConfig, Simulator, write_simulation
from serving.contact_store import OfferRef, SQLiteContactStore
from serving.contact_store.base import LiveEvent, to_epoch
from serving.privacy import hash_id
from serving.policy import ContactPolicy

runner = CliRunner()
T0 = datetime(2025, 2, 9, 12, 0)


def _pick_customer(data_dir: Path) -> tuple[str, str]:
    """A customer present in every table (the one to erase) and a neighbour who must stay."""
    data = load_dataset(data_dir)
    ids = set(data.customers["customer_id"])
    for table in ("consents", "events", "contacts"):
        ids &= set(data.table(table)["customer_id"])
    target, other = sorted(ids)[:2]
    return target, other


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.setenv("NBO_LEDGER", str(tmp_path / "nbo-outputs.jsonl"))  # this world's own ledger
    sim = Simulator(SimConfig(customers=80, days=40), seed=3)
    sim.run()
    data_dir = tmp_path / "data"
    write_simulation(sim, data_dir)
    # mixed formats: events as CSV
    events = load_table(data_dir, "events")
    (data_dir / "events.parquet").unlink()
    write_table(events, data_dir / "events.csv")
    target, other = _pick_customer(data_dir)
    dataset = load_dataset(data_dir)
    features_dir = tmp_path / "features"
    for day in ("2025-01-25", "2025-02-09"):
        as_of = pd.Timestamp(day)
        write_materialised(build_customer_features(dataset, as_of), features_dir / f"features-{day}.parquet", as_of)
    store_path = tmp_path / "contacts.db"
    store = SQLiteContactStore(store_path)
    policy = ContactPolicy()
    offer = OfferRef("o-1", "travel")
    for i, cid in enumerate([target, target, other]):
        store.check_and_reserve(cid, "web", [offer], T0 + pd.Timedelta(hours=i), policy, f"dec-{i}", {"o-1": 0.5},
                                {"propensity": "nbo-propensity/1"})
    store.record_outcome("dec-0", "o-1", "declined", T0 + pd.Timedelta(hours=5))
    store.check_and_reserve(target, "email", [], T0, policy, "dec-empty", {}, None)  # an empty decision is logged too
    store.record_consent(target, "email", False, T0)  # a withdrawal posted at runtime (POST /consents)
    store.append_events([LiveEvent("ev-1", target, to_epoch(T0), "purchase", "store", "home", None, 12.5)])  # POST /events
    sent = store.outbox_claim(f"welcome:{target}:first_purchase", "welcome", target, T0)  # a programme's send
    store.outbox_settle(sent, "pending", T0, scheduled=T0 + pd.Timedelta(hours=9), channel="email", offer_id="o-1",
                        decision_id="dec-1")
    store.close()
    return {"data": data_dir, "features": features_dir, "store": store_path, "target": target, "other": other}


def _run(*args: str) -> dict:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _sources(world: dict, customer: str) -> list[str]:
    return ["--customer", customer, "--data", str(world["data"]), "--store", str(world["store"]),
            "--features", str(world["features"])]


def test_export_lists_everything_and_forget_erases_exactly_that(world: dict, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    target, other = world["target"], world["other"]
    before = load_dataset(world["data"])
    other_before = _run("export", *_sources(world, other))

    exported = _run("export", *_sources(world, target))
    src = exported["sources"]
    assert exported["customer_id"] == target
    assert {r["decision_id"] for r in src["store.contacts"]} == {"dec-0", "dec-1"}
    assert {r["decision_id"] for r in src["store.decisions"]} == {"dec-0", "dec-1", "dec-empty"}
    assert [r["outcome"] for r in src["store.contacts"]] == ["declined", "pending"]
    assert [(r["channel"], r["granted"]) for r in src["store.consents"]] == [("email", False)]
    assert [(r["event_id"], r["amount"]) for r in src["store.events"]] == [("ev-1", 12.5)]
    assert [(r["programme"], r["status"], r["scheduled"]) for r in src["store.outbox"]] == [
        ("welcome", "pending", (T0 + pd.Timedelta(hours=9)).isoformat())]
    for table in ("customers", "consents", "events", "contacts"):
        ext = "csv" if table == "events" else "parquet"
        rows = src[f"data.{table}.{ext}"]
        expected = before.table(table)
        assert len(rows) == int((expected["customer_id"] == target).sum()) > 0, table
        assert all(r["customer_id"] == target for r in rows)
    assert "data.offers.parquet" not in src  # no customer_id column: not personal data
    features = {k: v for k, v in src.items() if k.startswith("features.")}
    assert sorted(features) == ["features.features-2025-01-25.parquet", "features.features-2025-02-09.parquet"]
    assert all(len(v) == 1 and v[0]["customer_id"] == target for v in features.values())
    assert exported["total_records"] == sum(len(v) for v in src.values())

    metas = {p.name: materialised_meta(p) for p in world["features"].glob("*.parquet")}
    schemas = {p.name: pq.read_schema(p) for p in world["features"].glob("*.parquet")}
    erased = _run("forget", *_sources(world, target))
    assert erased["total_records"] == exported["total_records"]
    assert erased["erased"] == {k: len(v) for k, v in src.items()}

    again = _run("export", *_sources(world, target))
    assert again["total_records"] == 0 and all(v == [] for v in again["sources"].values())
    assert set(again["sources"]) == set(src)

    # Nothing else changed: the neighbour's records, the other rows, formats, metadata, references.
    assert _run("export", *_sources(world, other)) == other_before
    after = load_dataset(world["data"])  # still valid, references still hold
    for table in ("customers", "consents", "events", "contacts"):
        kept = before.table(table)[before.table(table)["customer_id"] != target].reset_index(drop=True)
        pd.testing.assert_frame_equal(after.table(table), kept, check_dtype=False)
    pd.testing.assert_frame_equal(after.offers, before.offers)
    assert (world["data"] / "events.csv").exists() and not (world["data"] / "events.parquet").exists()
    assert not list(world["data"].glob(".*tmp*")) and not list(world["features"].glob(".*tmp*"))
    for path in world["features"].glob("*.parquet"):
        assert materialised_meta(path) == metas[path.name]
        assert pq.read_schema(path).equals(schemas[path.name], check_metadata=True)
        frame, _ = read_materialised(path)
        assert target not in frame.index and other in frame.index
    # The SQLite file (and its WAL) no longer holds the id anywhere, not even in free pages.
    for path in world["store"].parent.glob("contacts.db*"):
        assert target.encode() not in path.read_bytes(), path.name
    # Logs carry the hashed id only.
    assert target not in caplog.text and hash_id(target) in caplog.text


def test_forget_is_idempotent_and_sources_are_optional(world: dict) -> None:
    target = world["target"]
    first = _run("forget", "--customer", target, "--store", str(world["store"]))
    assert set(first["erased"]) == {"store.contacts", "store.decisions", "store.consents", "store.events",
                                    "store.outbox"}
    assert first["total_records"] == 8
    second = _run("forget", "--customer", target, "--store", str(world["store"]))
    assert second["total_records"] == 0
    only_features = _run("export", "--customer", target, "--features", str(world["features"]))
    assert only_features["total_records"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--customer", "c1"], "at least one source"),
        (["--customer", "", "--features", "."], "--customer"),
        (["--customer", "x" * 129, "--features", "."], "--customer"),
        (["--customer", "c1", "--store", "no-such.db"], "does not exist"),
        (["--customer", "c1", "--data", "no-such-dir"], "is not a directory"),
        (["--customer", "c1", "--features", "no-such.parquet"], "does not exist"),
    ],
)
@pytest.mark.parametrize("command", ["export", "forget"])
def test_bad_arguments_are_one_line_errors(command: str, args: list[str], message: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NBO_LEDGER")  # the default ledger: none in this fresh working directory
    result = runner.invoke(app, [command, *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "no-such.db").exists()  # a mistyped store is not created empty


@pytest.mark.redis
def test_redis_store_export_and_forget(redis_port: int) -> None:
    from serving.contact_store import RedisContactStore

    url = f"redis://127.0.0.1:{redis_port}/0"
    store = RedisContactStore(url=url)  # the default prefix, as `nbo serve --store redis://...` uses
    cid = "c-privacy-redis"
    store.check_and_reserve(cid, "web", [OfferRef("o-1", "travel")], T0, ContactPolicy(), "dec-redis-privacy",
                            {"o-1": 0.5})
    store.close()
    exported = _run("export", "--customer", cid, "--store", url)
    assert len(exported["sources"]["store.contacts"]) == 1 and len(exported["sources"]["store.decisions"]) == 1
    assert _run("forget", "--customer", cid, "--store", url)["total_records"] == 2
    assert _run("export", "--customer", cid, "--store", url)["total_records"] == 0


def test_forget_erases_where_a_symlinked_table_points(world: dict, tmp_path: Path) -> None:
    """Issue 19.4: the link stays a link, and the real file no longer holds the customer."""
    target, other = world["target"], world["other"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = world["data"] / "customers.parquet"
    real = elsewhere / "customers.parquet"
    link.rename(real)
    link.symlink_to(real)
    erased = _run("forget", "--customer", target, "--data", str(world["data"]))
    assert erased["erased"]["data.customers.parquet"] == 1
    assert link.is_symlink() and link.resolve() == real
    kept = pd.read_parquet(real)
    assert target not in set(kept["customer_id"]) and other in set(kept["customer_id"])
    assert not list(elsewhere.glob(".*tmp*")) and not list(world["data"].glob(".*tmp*"))


def test_forget_reaches_every_file_the_ledger_names(world: dict, tmp_path: Path) -> None:
    """Issue 19.5: files nbo wrote (features, batch outputs and their killed work directories,
    predictions) are erased through the ledger; what cannot be read is listed, not claimed."""
    from nbo.ledger import read_ledger, record_output

    target, other = world["target"], world["other"]
    ledger = tmp_path / "nbo-outputs.jsonl"
    out = tmp_path / "out"
    out.mkdir()
    features = out / "features.parquet"
    result = runner.invoke(app, ["features", "--data", str(world["data"]), "--as-of", "2025-02-09",
                                 "--out", str(features)])
    assert result.exit_code == 0, result.output
    # What `nbo score` and `nbo predict` leave behind (their own registration is tested with them).
    rows = pd.DataFrame({"customer_id": [target, other, target], "offer_id": ["a", "b", "c"]})
    rows.to_parquet(out / "offers.parquet", index=False)
    work = out / "offers.parquet.work"
    (work / "spark-plan").mkdir(parents=True)
    rows.to_parquet(work / "part-00000.parquet", index=False)
    rows.to_parquet(work / "spark-plan" / "part-0.parquet", index=False)
    rows.to_csv(out / "churn.csv", index=False)
    (out / "broken.parquet").write_bytes(b"not parquet")
    for path, kind in ((out / "offers.parquet", "batch_output"), (work, "batch_work_dir"),
                       (out / "churn.csv", "predictions"), (out / "broken.parquet", "predictions"),
                       (out / "gone.parquet", "batch_output")):
        record_output(ledger, path, kind)
    assert {e.path for e in read_ledger(ledger)} >= {features.resolve(), work.resolve()}

    exported = _run("export", "--customer", target, "--ledger", str(ledger))
    ledger_sources = {k: len(v) for k, v in exported["sources"].items() if k.startswith("ledger.")}
    assert ledger_sources == {
        f"ledger.features:{features}": 1, f"ledger.batch_output:{out / 'offers.parquet'}": 2,
        f"ledger.batch_work_dir:{work / 'part-00000.parquet'}": 2,
        f"ledger.batch_work_dir:{work / 'spark-plan' / 'part-0.parquet'}": 2, f"ledger.predictions:{out / 'churn.csv'}": 2,
    }
    assert list(exported["not_reached"]) == [f"ledger.predictions:{out / 'broken.parquet'}"]
    assert exported["not_present"] == [str(out / "gone.parquet")]

    result = runner.invoke(app, ["forget", "--customer", target, "--ledger", str(ledger)])
    assert result.exit_code == 0, result.output
    erased = json.loads(result.stdout)
    assert {k: v for k, v in erased["erased"].items()} == ledger_sources
    assert f"not erased: ledger.predictions:{out / 'broken.parquet'}" in result.stderr
    for path in (out / "offers.parquet", work / "part-00000.parquet", work / "spark-plan" / "part-0.parquet"):
        assert list(pd.read_parquet(path)["customer_id"]) == [other], path
    assert list(pd.read_csv(out / "churn.csv")["customer_id"]) == [other]
    frame, meta = read_materialised(features)
    assert target not in frame.index and other in frame.index and meta["as_of"] == pd.Timestamp("2025-02-09")
    assert _run("export", "--customer", target, "--ledger", str(ledger))["total_records"] == 0


def test_a_ledger_line_that_is_not_an_entry_is_an_error(tmp_path: Path) -> None:
    ledger = tmp_path / "nbo-outputs.jsonl"
    ledger.write_text('{"path": "/x.parquet", "kind": "features"}\nnot json\n')
    result = runner.invoke(app, ["forget", "--customer", "c1", "--ledger", str(ledger)])
    assert result.exit_code == 2 and "line 2 is not a ledger entry" in result.stderr

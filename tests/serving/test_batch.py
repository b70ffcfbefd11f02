"""`nbo score` (serving.batch): output and summary, dry run, exactly-once reservation, kill -9 and
resume, restrictions, bad input, batch == real time, Spark == pandas.

Runs on the simulated world of test_engine.py (1,500 customers x 240 days, both champions trained
with 50 rounds in a temporary SQLite MLflow), built once per session.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import read_materialised
from cli import app
from serving.batch import OUTPUT_COLUMNS, BatchJob, open_engine, plan_chunk, reserve_plan
from serving.engine import DecisionEngine
from tests.serving.test_engine import NOW, World, build_world

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
WHEN = NOW.isoformat()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory)


def args(world: World, out: Path, store: Path, *extra: str, channel: str = "email") -> list[str]:
    return ["score", "--data", str(world.data), "--features", str(world.features), "--tracking-uri", world.tracking_uri,
            "--as-of", WHEN, "--channel", channel, "--out", str(out), "--store", str(store), "--no-progress", *extra]


def score(world: World, out: Path, store: Path, *extra: str, channel: str = "email") -> dict:
    result = runner.invoke(app, args(world, out, store, *extra, channel=channel))
    assert result.exit_code == 0, result.output + (result.stderr if result.stderr_bytes else "")
    return json.loads(result.stdout.strip().splitlines()[-1])


def reserved(store: Path) -> tuple[int, int]:
    """(decisions, contacts) nbo reserved in a SQLite contact store: the data's contact history
    seeded into it at start (rank 0, `import_history`) is not nbo's."""
    if not store.exists():
        return 0, 0
    with sqlite3.connect(store) as conn:
        return (conn.execute("SELECT count(*) FROM decisions").fetchone()[0],
                conn.execute("SELECT count(*) FROM contacts WHERE rank > 0").fetchone()[0])


@pytest.fixture(scope="module")
def dry(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    """A dry run over every customer on e-mail (the reference output of several tests)."""
    root = tmp_path_factory.mktemp("batch-dry")
    summary = score(world, root / "offers.parquet", root / "contacts.db", "--dry-run", "--chunk-size", "500")
    return root / "offers.parquet", summary, root / "contacts.db"


def test_output_schema_and_summary(dry: tuple[Path, dict, Path]) -> None:
    out, summary, _ = dry
    frame = pd.read_parquet(out)
    assert tuple(frame.columns) == OUTPUT_COLUMNS
    assert len(frame) and (frame["rank"] == 1).all() and frame["customer_id"].is_unique  # k = 1
    assert frame["decision_id"].is_unique
    assert frame["p_accept"].between(0, 1).all() and frame["propensity"].between(0, 1, inclusive="right").all()
    assert frame["reasons"].str.contains("best expected value|explored").all()
    on_disk = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert on_disk == {k: v for k, v in summary.items()}
    assert summary["customers_scored"] == 1500
    assert summary["customers_offered"] == frame["customer_id"].nunique() == summary["offers"] == len(frame)
    assert summary["customers_suppressed"] == 1500 - len(frame) == sum(summary["suppressed_by_reason"].values())
    assert summary["suppressed_by_reason"].get("consent", 0) > 0  # e-mail needs an opt-in
    assert summary["expected_value"] == pytest.approx(frame["expected_value"].sum())
    assert not out.with_name(out.name + ".work").exists()  # a dry run leaves no work dir


def test_dry_run_reserves_nothing(dry: tuple[Path, dict, Path]) -> None:
    assert reserved(dry[2]) == (0, 0)
    assert dry[1]["reserved"] is False


def test_real_run_reserves_once_and_rerun_reserves_nothing(world: World, dry: tuple[Path, dict, Path], tmp_path: Path) -> None:
    store = tmp_path / "contacts.db"
    first = score(world, tmp_path / "a.parquet", store, "--campaign", "spring", "--chunk-size", "500")
    frame = pd.read_parquet(tmp_path / "a.parquet")
    assert reserved(store) == (len(frame), len(frame)) == (first["offers"], first["offers"])
    # The decisions are those of the dry run (same clock, empty store), with campaign decision ids.
    reference = pd.read_parquet(dry[0])
    pd.testing.assert_frame_equal(frame.drop(columns="decision_id"), reference.drop(columns="decision_id"))
    again = score(world, tmp_path / "a.parquet", store, "--campaign", "spring", "--chunk-size", "500")
    assert again["already_complete"] is True
    assert reserved(store) == (len(frame), len(frame))
    # Even into another output (no ledger there), the store's decision ids prevent a second reservation.
    score(world, tmp_path / "b.parquet", store, "--campaign", "spring", "--chunk-size", "500")
    assert reserved(store) == (len(frame), len(frame))


def test_worker_processes_give_the_single_process_answer(world: World, dry: tuple[Path, dict, Path],
                                                          tmp_path: Path) -> None:
    """`--workers 2`: each worker reads its own rows of the features file and writes its plan; a
    chunk the store took whole becomes its part as a link to the plan file. Same decisions as the
    one-process dry run, each reserved once; a rerun (another output, same store) reserves nothing
    and reports what a one-process rerun reports."""
    store = tmp_path / "contacts.db"
    summary = score(world, tmp_path / "a.parquet", store, "--campaign", "pool", "--chunk-size", "150", "--workers", "2")
    frame = pd.read_parquet(tmp_path / "a.parquet")
    assert reserved(store) == (len(frame), len(frame)) == (summary["offers"], summary["offers"])
    reference = pd.read_parquet(dry[0])
    pd.testing.assert_frame_equal(frame.drop(columns="decision_id"), reference.drop(columns="decision_id"))
    again = score(world, tmp_path / "b.parquet", store, "--campaign", "pool", "--chunk-size", "150", "--workers", "2")
    assert reserved(store) == (len(frame), len(frame))
    one = score(world, tmp_path / "c.parquet", store, "--campaign", "pool", "--chunk-size", "150")  # one process
    assert reserved(store) == (len(frame), len(frame))
    assert {k: v for k, v in again.items() if k != "output"} == {k: v for k, v in one.items() if k != "output"}


def test_reserving_a_plan_twice_reserves_once(world: World, tmp_path: Path) -> None:
    """What a resumed chunk does when the kill came between its reservations and its part file."""
    engine = open_engine(world.settings(tmp_path / "contacts.db"))
    frame, _ = read_materialised(world.features)
    job = BatchJob(campaign="twice", channel="web", as_of=NOW, k=2, features="x")
    plan = plan_chunk(engine, frame.iloc[:200], job)
    first, stats = reserve_plan(engine, plan, job)
    assert stats == {"already_reserved": 0, "refused_at_reservation": 0}
    second, stats = reserve_plan(engine, plan, job)
    assert stats["already_reserved"] == plan.loc[plan["offer_id"].notna(), "decision_id"].nunique()
    pd.testing.assert_frame_equal(first, second)
    assert reserved(tmp_path / "contacts.db")[1] == int(first["offer_id"].notna().sum())
    engine.close()


def test_kill_9_half_way_then_rerun_completes_without_duplicates(world: World, dry: tuple[Path, dict, Path],
                                                                 tmp_path: Path) -> None:
    out, store = tmp_path / "offers.parquet", tmp_path / "contacts.db"
    work = tmp_path / "offers.parquet.work"
    cmd = [sys.executable, "-m", "cli", *args(world, out, store, "--campaign", "killed", "--chunk-size", "20")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (work / "part-00001.json").exists():
            assert proc.poll() is None, "nbo score ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    assert reserved(store)[1] > 0  # some reservations were made before the kill
    summary = score(world, out, store, "--campaign", "killed", "--chunk-size", "20")
    frame = pd.read_parquet(out)
    decisions, contacts = reserved(store)
    assert contacts == len(frame) == summary["offers"]
    assert decisions == frame["decision_id"].nunique()
    assert frame["customer_id"].is_unique
    reference = pd.read_parquet(dry[0])
    pd.testing.assert_frame_equal(frame.drop(columns="decision_id"), reference.drop(columns="decision_id"))


def test_a_group_of_chunks_whose_transaction_fails_is_reserved_once_by_the_rerun(
        world: World, dry: tuple[Path, dict, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks are reserved `RESERVE_CHUNKS` at a time in one SQLite transaction. A failure inside the
    second group's transaction, after its decisions rows were inserted, rolls the whole group back:
    nothing of it is in the store, none of its part files exists, the first group's are there. The
    re-run reserves the second group (each customer once) and its output is the dry run's."""
    from serving.batch.run import RESERVE_CHUNKS
    from serving.contact_store.sqlite_store import SQLiteContactStore

    out, store = tmp_path / "offers.parquet", tmp_path / "contacts.db"
    work = tmp_path / "offers.parquet.work"
    calls: list[int] = []
    real = SQLiteContactStore.check_and_reserve_many

    class HalfWrite:
        """The store's connection, whose insert of the contacts rows fails (the decisions rows of
        the same transaction were inserted just before)."""

        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def executemany(self, sql: str, rows: object) -> object:
            if sql.startswith("INSERT INTO contacts"):
                # this transaction holds the group's decisions rows (not committed) beside the first group's
                assert self.conn.in_transaction
                assert self.conn.execute("SELECT count(*) FROM decisions").fetchone()[0] > calls[0]
                raise sqlite3.OperationalError("disk I/O error (injected)")
            return self.conn.executemany(sql, rows)

        def __getattr__(self, name: str) -> object:
            return getattr(self.conn, name)

    def failing(self, requests, now, policy):  # type: ignore[no-untyped-def]
        calls.append(len(requests))
        if len(calls) != 2:
            return real(self, requests, now, policy)
        conn = self._conn()
        self._conn = lambda: HalfWrite(conn)
        try:
            return real(self, requests, now, policy)
        finally:
            del self._conn

    monkeypatch.setattr(SQLiteContactStore, "check_and_reserve_many", failing)
    result = runner.invoke(app, args(world, out, store, "--campaign", "grouped", "--chunk-size", "100"))
    assert result.exit_code != 0 and len(calls) == 2
    assert calls[0] > 100  # the first store call held several chunks' decisions
    parts = sorted(p.name for p in work.glob("part-*.json"))
    assert parts == [f"part-{i:05d}.json" for i in range(RESERVE_CHUNKS)]
    first_group = pd.concat([pd.read_parquet(work / f"part-{i:05d}.parquet") for i in range(RESERVE_CHUNKS)])
    offered = int(first_group["offer_id"].notna().sum())
    assert calls[0] == offered
    assert reserved(store) == (offered, offered)  # nothing of the failed group was left half-written
    assert not out.exists()
    monkeypatch.setattr(SQLiteContactStore, "check_and_reserve_many", real)
    summary = score(world, out, store, "--campaign", "grouped", "--chunk-size", "100")
    frame = pd.read_parquet(out)
    assert reserved(store) == (len(frame), len(frame)) == (summary["offers"], summary["offers"])
    assert summary["already_reserved"] == 0 and frame["customer_id"].is_unique
    reference = pd.read_parquet(dry[0])
    pd.testing.assert_frame_equal(frame.drop(columns="decision_id"), reference.drop(columns="decision_id"))


@pytest.mark.parametrize("channel", ["web", "email"])
def test_chosen_columns_are_the_shown_offers_of_every_row(world: World, tmp_path: Path, channel: str) -> None:
    """`DecisionBlock.chosen` (the batch plan's columns) holds, row by row, what `shown` answers
    (the offers `/recommend` shows): k = 3, with customers without any offer (no e-mail consent)."""
    from serving.pipeline import CustomerBlock

    engine = open_engine(world.settings(tmp_path / "contacts.db"))
    frame, _ = read_materialised(world.features)
    frame = frame.iloc[:400]
    ids = frame.index.tolist()
    block = engine.with_features(frame).decide_block(CustomerBlock(ids), channel, NOW, None, 3)
    chosen = block.chosen()
    expected = [(i, o) for i in range(len(ids)) for o in block.shown(i)]
    assert len(expected) > len(ids)  # several offers per customer
    assert any(not block.shown(i) for i in range(len(ids))) == (channel == "email")
    assert chosen["row"] == [i for i, _ in expected]
    for name in ("rank", "offer_id", "p_accept", "expected_value", "propensity", "reasons", "reason_texts"):
        assert chosen[name] == [getattr(o, name) for _, o in expected], name
    engine.close()


def test_customers_and_segment_restrict(world: World, tmp_path: Path) -> None:
    frame, _ = read_materialised(world.features)
    chosen = frame.index[::150].tolist()
    listing = tmp_path / "ids.txt"
    listing.write_text("\n".join([*chosen, "nobody-like-this"]) + "\n")
    summary = score(world, tmp_path / "some.csv", tmp_path / "c.db", "--dry-run", "--customers", str(listing),
                    channel="web")
    out = pd.read_csv(tmp_path / "some.csv")
    assert tuple(out.columns) == OUTPUT_COLUMNS
    assert set(out["customer_id"]) <= set(chosen)
    assert summary["customers_scored"] == len(chosen) and summary["customers_unknown"] == 1

    rule = 'lifecycle in ["at_risk", "lapsed"] and tenure_days > 30'
    summary = score(world, tmp_path / "seg.parquet", tmp_path / "c.db", "--dry-run", "--segment", rule, channel="web")
    out = pd.read_parquet(tmp_path / "seg.parquet")
    members = frame[frame["lifecycle"].isin(["at_risk", "lapsed"]) & (frame["tenure_days"] > 30)]
    assert 0 < len(members) < len(frame)
    assert set(out["customer_id"]) <= set(members.index)
    assert summary["customers_scored"] == len(members)
    assert summary["segment_excluded"] == len(frame) - len(members)


@pytest.mark.parametrize(
    ("extra", "channel", "message"),
    [
        ((), "fax", "--channel 'fax' is not one of"),
        (("--segment", "tenure_days >"), "email", "segment"),
        (("--segment", "favourite_colour == 'red'"), "email", "favourite_colour"),
        (("--customers", "/nonexistent/ids.txt"), "email", "does not exist"),
        (("--k", "0"), "email", "--k 0 is out of range"),
        (("--k", "21"), "email", "--k 21 is out of range"),
        (("--out-dir-missing",), "email", "does not exist"),
        (("--out-is-dir",), "email", "is a directory"),
        ((), "email", "--campaign is required"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_output(world: World, tmp_path: Path, extra: tuple[str, ...],
                                                        channel: str, message: str) -> None:
    out = tmp_path / "offers.parquet"
    if extra == ("--out-dir-missing",):
        out, extra = tmp_path / "missing" / "offers.parquet", ("--dry-run",)
    elif extra == ("--out-is-dir",):
        out.mkdir()
        extra = ("--dry-run",)
    elif message != "--campaign is required":
        extra = (*extra, "--dry-run")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(app, args(world, out, tmp_path / "c.db", *extra, channel=channel))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, not even a store


def test_batch_equals_real_time(world: World, tmp_path: Path) -> None:
    """Same models, features, policy and clock: batch and `DecisionEngine.decide` agree exactly."""
    frame, _ = read_materialised(world.features)
    sample = frame.index[np.random.default_rng(7).choice(len(frame), 80, replace=False)].tolist()
    listing = tmp_path / "ids.csv"
    pd.DataFrame({"customer_id": sample}).to_csv(listing, index=False)
    store = tmp_path / "c.db"
    score(world, tmp_path / "batch.parquet", store, "--dry-run", "--k", "3", "--customers", str(listing),
          "--chunk-size", "37", channel="web")
    batch = pd.read_parquet(tmp_path / "batch.parquet")
    engine = DecisionEngine.from_settings(world.settings(store))
    rows = []
    for cid in sample:
        d = engine.decide(cid, "web", now=NOW, k=3, reserve=False)
        rows += [(cid, o.offer_id, o.rank, o.p_accept, o.expected_value, o.propensity, "; ".join(o.reasons),
                  "; ".join(o.reason_texts)) for o in d.offers]
    engine.close()
    online = pd.DataFrame(rows, columns=[c for c in OUTPUT_COLUMNS if c != "decision_id"])
    batch = batch.drop(columns="decision_id").sort_values(["customer_id", "rank"]).reset_index(drop=True)
    online = online.sort_values(["customer_id", "rank"]).reset_index(drop=True)
    assert len(online) > len(sample)  # k = 3 on the web: most customers get several offers
    pd.testing.assert_frame_equal(batch, online, check_dtype=False, check_exact=True)


def _java() -> bool:
    return shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME"))


@pytest.mark.spark
@pytest.mark.skipif(not _java(), reason="Java not found (install a JRE 17 or set JAVA_HOME); Spark engine test skipped")
def test_spark_engine_equals_pandas_engine(world: World, dry: tuple[Path, dict, Path], tmp_path: Path,
                                          capfd: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder) -> None:
    pytest.importorskip("pyspark", reason="pyspark not installed; Spark engine test skipped")
    summary = score(world, tmp_path / "spark.parquet", tmp_path / "c.db", "--dry-run", "--engine", "spark",
                    "--master", "local[2]", "--chunk-size", "500")
    # PySpark 4.3 warns on every run that pandas 3 is "not fully supported": nbo's path is the
    # equality below, so the warning is silenced there (driver and Python workers), and only it.
    out, err = capfd.readouterr()
    assert "does not yet fully support pandas" not in out + err
    assert not [w for w in recwarn if "does not yet fully support pandas" in str(w.message)]
    spark = pd.read_parquet(tmp_path / "spark.parquet").sort_values(["customer_id", "rank"]).reset_index(drop=True)
    pandas = pd.read_parquet(dry[0]).sort_values(["customer_id", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(spark, pandas, check_exact=True)
    skip = ("engine", "output", "expected_value")
    assert {k: v for k, v in summary.items() if k not in skip} == {k: v for k, v in dry[1].items() if k not in skip}
    assert summary["expected_value"] == pytest.approx(dry[1]["expected_value"], rel=1e-12)


@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_work_path_nbo_did_not_create_is_refused_and_kept(world: World, tmp_path: Path, kind: str) -> None:
    """Issue 19.3: a pre-existing `<out>.work` (or a link to someone's folder) is never emptied."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "important.txt").write_text("keep")
    out = tmp_path / "offers.parquet"
    work = tmp_path / "offers.parquet.work"
    if kind == "folder":
        work.mkdir()
        (work / "important.txt").write_text("keep")
    else:
        work.symlink_to(mine, target_is_directory=True)
    result = runner.invoke(app, args(world, out, tmp_path / "contacts.db", "--dry-run"))
    assert result.exit_code == 2, result.output
    assert ("symbolic link" if kind == "link" else "not a work directory of nbo") in result.stderr
    assert (mine / "important.txt").read_text() == "keep"
    assert kind == "link" or (work / "important.txt").read_text() == "keep"
    assert not out.exists()


def test_score_records_its_files_in_the_ledger(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19.5: the output, its work directory and the features it computed are reachable by
    `nbo forget` (recorded before they are written, so a killed run's parts are too)."""
    from nbo.ledger import read_ledger

    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("NBO_LEDGER", str(ledger))
    out = tmp_path / "offers.parquet"
    cmd = ["score", "--data", str(world.data), "--tracking-uri", world.tracking_uri, "--as-of", WHEN,
           "--channel", "email", "--out", str(out), "--store", str(tmp_path / "c.db"), "--no-progress", "--dry-run"]
    result = runner.invoke(app, cmd)
    assert result.exit_code == 0, result.output
    kinds = {e.kind: e.path for e in read_ledger(ledger)}
    assert kinds["batch_output"] == out and kinds["batch_work_dir"] == tmp_path / "offers.parquet.work"
    assert kinds["features_cache"].name.startswith("offers.parquet.features-") and kinds["features_cache"].exists()
    customer = pd.read_parquet(out)["customer_id"].iloc[0]
    forgot = runner.invoke(app, ["forget", "--customer", customer])
    assert forgot.exit_code == 0, forgot.output
    assert customer not in set(pd.read_parquet(out)["customer_id"])
    assert customer not in set(read_materialised(kinds["features_cache"])[0].index)


def test_a_batch_engine_holds_no_live_features(world: World, tmp_path: Path) -> None:
    """Batch scoring decides blocks only: its engines (driver and every worker) skip the live
    features and the customers table, which `decide` and live input need and which were indexed
    per customer in every process (~0.4 GB each at 1,000,000 customers)."""
    engine = open_engine(world.settings(tmp_path / "contacts.db"))
    try:
        assert engine.live is None
        frame, _ = read_materialised(world.features)
        job = BatchJob(campaign="no-live", channel="web", as_of=NOW, k=2, features="x")
        plan = plan_chunk(engine, frame.iloc[:50], job)
        assert plan["customer_id"].nunique() == 50
    finally:
        engine.close()

"""Faults in the contact store (issue 9): degraded answers, fail closed, recovery by itself.

- in process: a SQLite store that refuses writes -> `StoreUnavailable`, nothing recorded, the
  breaker skips the store for `store_retry_s`, then the engine recovers;
- a real `nbo serve` on a private redis-server that is stopped (SIGTERM), restarted, then frozen
  (SIGSTOP: a *slow* Redis) under load: every answer is 200 and fast, answers during the outage
  have no offers and `degraded: true`, `/feedback` is 503 (never 200 unless recorded), offers come
  back after the restart, every offer returned is in the store, no cap is exceeded;
- a real `nbo serve` on SQLite whose file is locked by another process: same promises.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest
import redis

from serving.contact_store.errors import StoreUnavailable
from serving.engine import DecisionEngine
from tests.serving.helpers import kill_process_tree
from tests.serving.test_engine import NOW, World, build_world

KEY = "fault-key-51c2"
WEB_CAP = 10  # default policy: web, 10 contacts per day


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Serve:
    url: str
    proc: subprocess.Popen
    log: Path

    def post(self, path: str, body: object, client: httpx.Client | None = None, timeout: float = 10) -> httpx.Response:
        headers = {"Authorization": f"Bearer {KEY}"}
        if client is not None:
            return client.post(self.url + path, json=body, headers=headers, timeout=timeout)
        return httpx.post(self.url + path, json=body, headers=headers, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                kill_process_tree(self.proc.pid)


def start_serve(world: World, work: Path, store: str, *extra: str, workers: int = 2) -> Serve:
    """`nbo serve` in a subprocess on a free port of 127.0.0.1 (simulated clock at NOW), once ready."""
    port = free_port()
    env = {**os.environ, "NBO_API_KEYS": KEY}
    env.pop("NBO_API_KEYS_FILE", None)
    log = work / f"server-{port}.log"
    cmd = [sys.executable, "-m", "cli", "serve", "--data", str(world.data), "--features", str(world.features),
           "--tracking-uri", world.tracking_uri, "--store", store, "--port", str(port), "--workers", str(workers),
           "--state-dir", str(work / "state"), "--clock-start", pd.Timestamp(NOW).isoformat(), *extra]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=work, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return Serve(url, proc, log)
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            kill_process_tree(proc.pid)
            pytest.fail(f"nbo serve did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)


# ---------------------------------------------------------------------------------- load
@dataclass
class Answer:
    sent: float
    done: float
    status: int
    body: dict
    customer: str


@dataclass
class Load:
    """Closed-loop /recommend calls from a few threads; a third of them go to a few hot customers."""

    serve: Serve
    customers: list[str]
    hot: list[str]
    threads: int = 4
    answers: list[Answer] = field(default_factory=list)
    feedback: list[tuple[float, float, int, dict]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self, n: int) -> None:
        i = n
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                i += self.threads
                cid = self.hot[i % len(self.hot)] if i % 3 == 0 else self.customers[i % len(self.customers)]
                sent = time.monotonic()
                try:
                    r = self.serve.post("/recommend", {"customer_id": cid, "channel": "web", "k": 2}, client)
                    body = r.json()
                    status = r.status_code
                except httpx.HTTPError as exc:
                    body, status = {"error": type(exc).__name__}, 0
                self.answers.append(Answer(sent, time.monotonic(), status, body, cid))
                if status == 200 and body.get("offers") and i % 5 == 0:
                    fb = {"decision_id": body["decision_id"], "offer_id": body["offers"][0]["offer_id"], "outcome": "clicked"}
                    t0 = time.monotonic()
                    try:
                        f = self.serve.post("/feedback", fb, client)
                        self.feedback.append((t0, time.monotonic(), f.status_code, f.json()))
                    except httpx.HTTPError as exc:
                        self.feedback.append((t0, time.monotonic(), 0, {"error": type(exc).__name__}))
                time.sleep(0.005)

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(self.threads)]
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)

    def between(self, t0: float, t1: float) -> list[Answer]:
        """Answers to requests sent after t0 and answered before t1."""
        return [a for a in list(self.answers) if a.sent >= t0 and a.done <= t1]


def wait_for(predicate, timeout: float, what: str) -> float:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def check_fail_closed(answers: list[Answer], recorded: dict[str, set[tuple[str, str]]]) -> None:
    """Every offer returned is recorded in the store; no customer got more web contacts than the cap."""
    for a in answers:
        for o in a.body.get("offers", []):
            assert (a.body["decision_id"], o["offer_id"]) in recorded[a.customer], "an offer was returned unrecorded"
    for cid, shows in recorded.items():
        assert len({d for d, _ in shows}) <= WEB_CAP, f"web cap exceeded for a customer: {len({d for d, _ in shows})}"


def assert_degraded_window(answers: list[Answer]) -> None:
    assert answers, "no request was answered during the outage"
    assert all(a.status == 200 for a in answers), {a.status for a in answers}
    assert all(a.body["degraded"] is True and a.body["offers"] == [] for a in answers)
    assert max(a.done - a.sent for a in answers) < 1.9, "an answer took longer than the request timeout"


# ---------------------------------------------------------------------------------- in process
@pytest.fixture(scope="module")
def faults_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory)


def test_unwritable_sqlite_store_degrades_records_nothing_and_recovers(faults_world: World, tmp_path: Path) -> None:
    engine = DecisionEngine.from_settings(faults_world.settings(tmp_path / "c.db", store_timeout_s=0.2, store_retry_s=0.3))
    cid = engine.features.index[5]
    assert engine.decide(cid, "web", None, NOW, k=2).offers  # the store works
    conn = engine.store._conn()  # the connection this thread uses  # noqa: SLF001
    conn.execute("PRAGMA query_only = ON")  # every write now fails as on a read-only file
    before = len(engine.store.export(cid)["contacts"])
    with pytest.raises(StoreUnavailable) as failed:
        engine.decide(cid, "web", None, NOW, k=2)
    assert failed.value.cause == "error"
    with pytest.raises(StoreUnavailable) as skipped:  # the breaker: not even tried
        engine.decide(cid, "web", None, NOW, k=2)
    assert skipped.value.cause == "backoff"
    with pytest.raises(StoreUnavailable):
        engine.record_outcome("any", "o1", "accepted", NOW)
    conn.execute("PRAGMA query_only = OFF")
    assert len(engine.store.export(cid)["contacts"]) == before  # nothing recorded while unwritable
    time.sleep(0.35)
    assert engine.decide(cid, "web", None, NOW, k=2).offers  # recovered by itself
    engine.close()


# ---------------------------------------------------------------------------------- redis, real server
def _redis(port: int, workdir: Path) -> subprocess.Popen:
    """A private redis-server persisting every write (AOF, fsync always), so a restart keeps the caps."""
    exe = shutil.which("redis-server")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
         "--appendfsync", "always", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            client.close()
            return proc
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)


@pytest.mark.redis
def test_redis_stopped_restarted_and_frozen_under_load(faults_world: World, tmp_path_factory: pytest.TempPathFactory) -> None:
    from features import read_materialised
    from serving.contact_store import RedisContactStore
    from serving.settings import latest_features_file

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found on PATH")
    work = tmp_path_factory.mktemp("faults-redis")
    rport = free_port()
    rproc = _redis(rport, work)
    serve = start_serve(faults_world, work, f"redis://127.0.0.1:{rport}/0")
    frame, _ = read_materialised(latest_features_file(faults_world.features))
    ids = frame.index.tolist()
    hot, others = ids[:3], ids[3:600]
    try:
        with Load(serve, others, hot) as load:
            wait_for(lambda: any(a.body.get("offers") for a in load.answers), 10, "first offers")
            time.sleep(1.0)
            shown = next(a.body for a in list(load.answers) if a.body.get("offers"))
            feedback = {"decision_id": shown["decision_id"], "offer_id": shown["offers"][0]["offer_id"],
                        "outcome": "accepted"}
            # 1. Redis goes away (clean stop: its AOF is complete)
            rproc.terminate()
            rproc.wait(timeout=10)
            down = time.monotonic()
            time.sleep(0.2)
            refused = [serve.post("/feedback", feedback) for _ in range(3)]  # tried, then during the breaker
            time.sleep(2.8)
            fb_down = [f for f in list(load.feedback) if f[0] >= down + 0.1]
            up = time.monotonic()
            rproc = _redis(rport, work)
            back = wait_for(lambda: any(a.sent > up and a.body.get("offers") for a in load.answers), 10,
                            "offers after the restart")
            # 2. Redis hangs (SIGSTOP: connections accepted, no answer) -> socket timeout, degraded
            time.sleep(1.0)
            rproc.send_signal(signal.SIGSTOP)
            frozen = time.monotonic()
            time.sleep(3.0)
            thawed = time.monotonic()
            rproc.send_signal(signal.SIGCONT)
            wait_for(lambda: any(a.sent > thawed and a.body.get("offers") for a in load.answers), 10,
                     "offers after the freeze")
            time.sleep(0.5)
        answers = list(load.answers)
        assert all(a.status == 200 for a in answers), {a.status for a in answers}  # no 5xx, no timeout
        assert_degraded_window(load.between(down + 0.05, up))
        assert_degraded_window(load.between(frozen + 1.5, thawed))  # after the in-flight calls timed out
        assert max(a.done - a.sent for a in answers) < 1.9
        assert back - up < 10
        # feedback during the outage: 503 with a message, never 200; recorded once the store is back
        for r in refused:
            assert r.status_code == 503 and "not recorded" in r.json()["error"].lower(), (r.status_code, r.text)
            assert r.headers.get("retry-after") == "1"
        again = serve.post("/feedback", feedback)
        assert again.status_code == 200 and again.json()["recorded"] is True, again.text
        # feedback during the outage: 503 with a message, never 200
        assert fb_down or not [f for f in load.feedback if down < f[0] < up]
        for t0, t1, status, body in load.feedback:
            if down + 0.05 < t0 and t1 < up:
                assert status == 503 and "not recorded" in body["error"].lower(), (status, body)
            else:
                assert status in (200, 503), status
        metrics = httpx.get(serve.url + "/metrics").text
        assert "nbo_degraded_total{" in metrics
        if any(status == 503 for _, _, status, _ in load.feedback):
            assert 'nbo_store_unavailable_total{endpoint="feedback"' in metrics
        store = RedisContactStore(redis.Redis(port=rport, decode_responses=True))
        customers = {a.customer for a in answers if a.body.get("offers")} | set(hot)
        recorded = {c: {(r["decision_id"], r["offer_id"]) for r in store.export(c)["contacts"]} for c in customers}
        store.close()
        check_fail_closed(answers, recorded)
        assert any(len({d for d, _ in recorded[c]}) == WEB_CAP for c in hot), "the hot customers never reached the cap"
    finally:
        serve.stop()
        if rproc.poll() is None:
            rproc.send_signal(signal.SIGCONT)
            rproc.terminate()
            rproc.wait(timeout=10)


# ---------------------------------------------------------------------------------- sqlite, real server
def test_locked_sqlite_store_under_load(faults_world: World, tmp_path_factory: pytest.TempPathFactory) -> None:
    from features import read_materialised
    from serving.contact_store import SQLiteContactStore
    from serving.settings import latest_features_file

    work = tmp_path_factory.mktemp("faults-sqlite")
    db = work / "contacts.db"
    serve = start_serve(faults_world, work, str(db))
    frame, _ = read_materialised(latest_features_file(faults_world.features))
    ids = frame.index.tolist()
    hot, others = ids[600:603], ids[603:1200]
    try:
        with Load(serve, others, hot) as load:
            wait_for(lambda: any(a.body.get("offers") for a in load.answers), 10, "first offers")
            time.sleep(1.0)
            locker = sqlite3.connect(db, timeout=10, isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
            locked = time.monotonic()
            time.sleep(3.0)
            released = time.monotonic()
            locker.execute("ROLLBACK")
            locker.close()
            wait_for(lambda: any(a.sent > released and a.body.get("offers") for a in load.answers), 10,
                     "offers after the lock")
            time.sleep(0.5)
        answers = list(load.answers)
        assert all(a.status == 200 for a in answers), {a.status for a in answers}
        assert_degraded_window(load.between(locked + 0.6, released))  # in-flight commits finished first
        for t0, t1, status, body in load.feedback:
            if locked + 0.6 < t0 and t1 < released:
                assert status == 503 and "not recorded" in body["error"].lower(), (status, body)
        store = SQLiteContactStore(db)
        customers = {a.customer for a in answers if a.body.get("offers")} | set(hot)
        recorded = {c: {(r["decision_id"], r["offer_id"]) for r in store.export(c)["contacts"]} for c in customers}
        store.close()
        check_fail_closed(answers, recorded)
    finally:
        serve.stop()

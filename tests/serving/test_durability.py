"""Durability (issue 9): what `nbo serve` acknowledged survives `kill -9`; no key, no service.

- Feedback answered 200 (and every offer answered 200) by a real `nbo serve` on SQLite is in the
  store after the whole service (BentoML's supervisor and both workers) is killed with SIGKILL the
  moment after the last acknowledgement. SQLite commits in WAL mode before the answer is sent;
  `synchronous=NORMAL` makes a commit durable against a crash of the process (what this tests),
  not against a power cut (docs/reliability.md).
- `nbo serve` without an API key exits with status 2 and a one-line message naming the variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from tests.serving.test_engine import World, build_world
from tests.serving.helpers import kill_process_tree
from tests.serving.test_faults import KEY, start_serve


@pytest.fixture(scope="module")
def dur_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory)


def test_acknowledged_feedback_survives_kill_9(dur_world: World, tmp_path_factory: pytest.TempPathFactory) -> None:
    from features import read_materialised
    from serving.contact_store import SQLiteContactStore
    from serving.settings import latest_features_file

    work = tmp_path_factory.mktemp("durability")
    db = work / "contacts.db"
    serve = start_serve(dur_world, work, str(db))
    frame, _ = read_materialised(latest_features_file(dur_world.features))
    ids = frame.index.tolist()[:400]
    served: list[tuple[str, str, str]] = []  # (customer, decision, offer) answered 200
    acked: list[tuple[str, str, str, str]] = []  # (customer, decision, offer, outcome) answered 200
    lock = threading.Lock()
    killed = threading.Event()
    victims: list[int] = []
    outcomes = ("accepted", "declined", "ignored", "clicked")

    def client(n: int) -> None:
        with httpx.Client(timeout=5) as c:
            for i, cid in enumerate(ids[n::4]):
                if killed.is_set():
                    return
                try:
                    r = serve.post("/recommend", {"customer_id": cid, "channel": "app", "k": 2}, c)
                    if r.status_code != 200 or not r.json()["offers"]:
                        continue
                    d = r.json()
                    with lock:
                        served.extend((cid, d["decision_id"], o["offer_id"]) for o in d["offers"])
                    outcome = outcomes[i % 4]
                    f = serve.post("/feedback", {"decision_id": d["decision_id"], "offer_id": d["offers"][0]["offer_id"],
                                                 "outcome": outcome}, c)
                    if f.status_code == 200:
                        with lock:
                            acked.append((cid, d["decision_id"], d["offers"][0]["offer_id"], outcome))
                            if len(acked) >= 40 and not killed.is_set():
                                # the moment after an acknowledgement: kill the whole service (supervisor
                                # and workers, which BentoML starts in sessions of their own), no clean-up
                                victims.extend(kill_process_tree(serve.proc.pid))
                                killed.set()
                except httpx.HTTPError:
                    return  # the service is gone

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert killed.is_set(), f"only {len(acked)} feedbacks acknowledged before the customers ran out"
        assert len(victims) >= 3, f"expected the supervisor and 2 workers, killed {victims}"
        assert not [v for v in victims if psutil.pid_exists(v) and psutil.Process(v).status() != psutil.STATUS_ZOMBIE]
    finally:
        if serve.proc.poll() is None:
            kill_process_tree(serve.proc.pid)
    store = SQLiteContactStore(db)  # opening it recovers the WAL as a restarted service would
    try:
        rows = {}
        for cid in {c for c, _, _ in served}:
            for r in store.export(cid)["contacts"]:
                rows[(r["decision_id"], r["offer_id"])] = r["outcome"]
    finally:
        store.close()
    missing = [s for s in served if (s[1], s[2]) not in rows]
    assert not missing, f"{len(missing)} of {len(served)} offers answered 200 are not in the store"
    lost = [a for a in acked if rows.get((a[1], a[2])) != a[3]]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged feedbacks were lost"


def test_serve_refuses_to_start_without_an_api_key(dur_world: World, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NBO_API_KEYS", "NBO_API_KEYS_FILE")}
    cmd = [sys.executable, "-m", "cli", "serve", "--data", str(dur_world.data), "--features", str(dur_world.features),
           "--tracking-uri", dur_world.tracking_uri, "--store", str(tmp_path / "c.db"), "--port", "1"]
    for extra in ({}, {"NBO_API_KEYS": " , "}, {"NBO_API_KEYS_FILE": str(tmp_path / "empty-keys")}):
        (tmp_path / "empty-keys").write_text("# no key here\n\n")
        done = subprocess.run(cmd, env={**env, **extra}, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert done.returncode == 2, (done.returncode, done.stderr[-500:])
        assert "no API keys" in done.stderr and "NBO_API_KEYS" in done.stderr
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "c.db").exists()  # refused before anything was opened
    assert KEY not in env.get("NBO_API_KEYS", "")

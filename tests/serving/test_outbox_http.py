"""The outbox over real HTTP (issue 22 item 4): a `nbo serve` (SQLite store) whose policy has a
programme; `POST /events` fires it, `GET /outbox` pages the pending sends (API key, filters, bad
parameters a 400 naming the parameter), `POST /outbox/ack` marks them sent."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.serving.helpers import start_nbo_serve, stop_nbo_serve
from tests.serving.test_engine import NOW, World, build_world

KEY = "outbox-test-key-5b2e91"
POLICY = """
[[programmes]]
name = "search-follow-up"
channels = ["email"]
trigger = { kind = "event", type = "search" }
[programme_settings]
sweep_every_minutes = 0.05
"""


class _Server:
    def __init__(self, url: str, customers: list[str], store: Path | None = None) -> None:
        self.url, self.customers, self.store = url, customers, store

    def post(self, path: str, body: object, key: str | None = KEY) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=60)

    def get(self, path: str, key: str | None = KEY, **params: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.get(self.url + path, params=params, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    from features import read_materialised
    from serving.settings import latest_features_file

    world: World = build_world(tmp_path_factory)
    work: Path = tmp_path_factory.mktemp("outbox-serve")
    policy = work / "policy.toml"
    policy.write_text(POLICY)
    url, proc, log, _ = start_nbo_serve(world, work, str(work / "contacts.db"), "--policy", str(policy),
                                        "--timeout", "20", env={**os.environ, "NBO_API_KEYS": KEY},
                                        workers=1, name="outbox")
    frame, _ = read_materialised(latest_features_file(world.features))
    try:
        yield _Server(url, frame.index.tolist(), work / "contacts.db")
    finally:
        stop_nbo_serve(proc)
    # stopped cleanly: the in-service sweep gave its lease up (serving/sweeper.py) and the process ended
    assert proc.returncode is not None
    from serving.contact_store import SQLiteContactStore
    from serving.sweeper import LEASE

    store = SQLiteContactStore(work / "contacts.db")
    try:
        assert store.lease(LEASE, "after-the-service", 60.0)
    finally:
        store.close()


def _search(cid: str, i: int) -> dict:
    return {"event_id": f"s-{cid}-{i}", "customer_id": cid, "ts": (NOW - timedelta(minutes=5)).isoformat(),
            "type": "search", "channel": "web", "category": "travel"}


def test_an_event_posted_fires_one_pending_send_read_and_acknowledged(server: _Server) -> None:
    cid = next(c for c in server.customers[300:800]
               if server.post("/recommend", {"customer_id": c, "channel": "email", "k": 1}).json()["offers"])
    for _ in range(2):  # the second post repeats the same event: nothing fires again
        r = server.post("/events", {"events": [_search(cid, 0)]})
        assert r.status_code == 200, r.text
    page = server.get("/outbox")
    assert page.status_code == 200, page.text
    rows = page.json()["rows"]
    assert [(x["customer_id"], x["programme"], x["status"], x["channel"]) for x in rows] == \
        [(cid, "search-follow-up", "pending", "email")]
    row = rows[0]
    assert row["offer_id"] and row["scheduled"].endswith("Z") and page.json()["next_after"] is None
    assert server.get("/outbox", since=(NOW + timedelta(hours=1)).isoformat()).json()["rows"] == []
    # acknowledged: no longer pending; twice is harmless; an unknown id is listed
    ack = server.post("/outbox/ack", {"outbox_ids": [row["outbox_id"], 987654], "status": "sent"})
    assert ack.status_code == 200, ack.text
    assert ack.json() == {"statuses": {str(row["outbox_id"]): "sent"}, "unknown": [987654]}
    again = server.post("/outbox/ack", {"outbox_ids": [row["outbox_id"]], "status": "failed"})
    assert again.json()["statuses"] == {str(row["outbox_id"]): "sent"}
    assert server.get("/outbox").json()["rows"] == []
    assert [x["outbox_id"] for x in server.get("/outbox", status="sent").json()["rows"]] == [row["outbox_id"]]
    assert server.get("/outbox", status="any", limit=1).json()["next_after"] == row["outbox_id"]


def test_a_complaint_cancels_the_pending_send(server: _Server) -> None:
    # the first 8 customers with an e-mail offer (asked one by one, as many as needed: not all 600)
    emailable = list(itertools.islice(
        (c for c in server.customers[800:1400]
         if server.post("/recommend", {"customer_id": c, "channel": "email", "k": 1}).json()["offers"]), 8))
    assert server.post("/events", {"events": [_search(c, 1) for c in emailable[:8]]}).status_code == 200
    pending = {x["customer_id"]: x for x in server.get("/outbox").json()["rows"]}
    assert len(pending) >= 2, server.get("/outbox", status="any").json()["rows"]
    cid = sorted(pending)[0]
    others = sorted(set(pending) - {cid})
    complaint = {"event_id": f"c-{cid}", "customer_id": cid, "ts": (NOW - timedelta(minutes=1)).isoformat(),
                 "type": "complaint", "channel": "web"}
    assert server.post("/events", {"events": [complaint]}).status_code == 200
    assert sorted(x["customer_id"] for x in server.get("/outbox").json()["rows"]) == others
    [cancelled] = server.get("/outbox", status="cancelled").json()["rows"]
    assert (cancelled["outbox_id"], cancelled["status"], cancelled["reason"]) == \
        (pending[cid]["outbox_id"], "cancelled", "complaint_pause")
    # a cancelled send cannot be acknowledged as sent
    ack = server.post("/outbox/ack", {"outbox_ids": [cancelled["outbox_id"]], "status": "sent"})
    assert ack.json()["statuses"] == {str(cancelled["outbox_id"]): "cancelled"}


def test_the_in_service_sweep_fires_events_recorded_without_firing(server: _Server) -> None:
    """`sweep_every_minutes`: events recorded by `nbo ingest` without a policy (straight into the
    store here) fire on the service's next sweep, without a cron."""
    from serving.contact_store import SQLiteContactStore
    from serving.contact_store.base import LiveEvent, to_epoch

    cid = next(c for c in server.customers[1400:]
               if server.post("/recommend", {"customer_id": c, "channel": "email", "k": 1}).json()["offers"])
    store = SQLiteContactStore(server.store)  # type: ignore[arg-type]
    try:
        store.append_events([LiveEvent(f"swept-{cid}", cid, to_epoch(NOW - timedelta(minutes=2)), "search", "web",
                                       "travel", None, None)])
    finally:
        store.close()
    deadline = time.monotonic() + 90  # a sweep every 3 s: wait for the settled row, not for a fixed time
    rows: list[dict] = []
    while not (rows and rows[0]["status"] != "deciding") and time.monotonic() < deadline:
        rows = [x for x in server.get("/outbox", status="any", limit=1000).json()["rows"] if x["customer_id"] == cid]
        if not (rows and rows[0]["status"] != "deciding"):
            time.sleep(0.25)
    assert [(x["programme"], x["status"] in ("pending", "none")) for x in rows] == [("search-follow-up", True)]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"status": "queued"}, "status"), ({"limit": 0}, "limit"), ({"limit": 5000}, "limit"), ({"after": -1}, "after"),
     ({"after": "x"}, "after"), ({"since": "yesterday"}, "since"), ({"colour": "red"}, "colour")],
)
def test_bad_outbox_parameters_are_a_400_naming_the_parameter(server: _Server, params: dict, field: str) -> None:
    r = server.get("/outbox", **params)
    assert r.status_code == 400, r.text
    assert field in r.json()["error"]


def test_outbox_needs_a_key_and_a_good_ack_body(server: _Server) -> None:
    assert server.get("/outbox", key=None).status_code == 401
    assert server.get("/outbox", key="wrong").status_code == 401
    assert server.post("/outbox/ack", {"outbox_ids": [1], "status": "sent"}, key=None).status_code == 401
    assert httpx.get(server.url + "/outbox?status=pending&status=sent", headers={"Authorization": f"Bearer {KEY}"},
                     timeout=30).status_code == 400
    for body, field in [({"outbox_ids": [], "status": "sent"}, "outbox_ids"), ({"outbox_ids": [1], "status": "read"}, "status"),
                        ({"outbox_ids": ["1"], "status": "sent"}, "outbox_ids"), ({"status": "sent"}, "outbox_ids")]:
        r = server.post("/outbox/ack", body)
        assert r.status_code == 400 and field in r.text, r.text

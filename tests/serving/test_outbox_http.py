"""The outbox over real HTTP (issue 22 item 4): a `nbo serve` (SQLite store) whose policy has a
programme; `POST /events` fires it, `GET /outbox` pages the pending sends (API key, filters, bad
parameters a 400 naming the parameter), `POST /outbox/ack` marks them sent."""

from __future__ import annotations

import os
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
"""


class _Server:
    def __init__(self, url: str, customers: list[str]) -> None:
        self.url, self.customers = url, customers

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
        yield _Server(url, frame.index.tolist())
    finally:
        stop_nbo_serve(proc)


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

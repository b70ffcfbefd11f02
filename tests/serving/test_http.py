"""The service over real HTTP: `nbo serve` in a subprocess on 127.0.0.1 (2 workers, SQLite store).

Happy paths, hostile inputs, auth, body size, feedback, forget, fallback, consent, caps under
concurrency across workers, and a champion reload under load with zero failed requests.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.serving.helpers import kill_process_tree
from tests.serving.test_engine import NOW, World, build_world

KEY = "test-key-7f3a9c"
SECRET_ID = "c-secret-7781"  # must never show up in the server's log


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path
    world: World
    customers: list[str]

    def post(self, path: str, body: object, key: str | None = KEY, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if isinstance(body, (bytes, str)):
            return httpx.post(self.url + path, content=body, headers=headers, timeout=10, **kw)
        return httpx.post(self.url + path, json=body, headers=headers, timeout=10, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from features import read_materialised
    from serving.settings import latest_features_file

    world = build_world(tmp_path_factory)
    work = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = {**os.environ, "NBO_API_KEYS": f"other-key,{KEY}"}
    env.pop("NBO_API_KEYS_FILE", None)
    log = work / "server.log"
    cmd = [sys.executable, "-m", "cli", "serve", "--data", str(world.data), "--features", str(world.features),
           "--tracking-uri", world.tracking_uri, "--store", str(work / "contacts.db"), "--port", str(port),
           "--workers", "2", "--reload-interval", "2", "--state-dir", str(work / "state"),
           "--clock-start", pd.Timestamp(NOW).isoformat()]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=work)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            kill_process_tree(proc.pid)
            pytest.fail(f"nbo serve did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)
    frame, _ = read_materialised(latest_features_file(world.features))
    yield Server(url, proc, log, world, frame.index.tolist())
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        kill_process_tree(proc.pid)
    text = log.read_text(errors="replace")
    assert KEY not in text and SECRET_ID not in text, "the log holds an API key or a raw customer id"


def test_recommend_happy_path(server: Server) -> None:
    cid = server.customers[10]
    r = server.post("/recommend", {"customer_id": cid, "channel": "web", "k": 3,
                                   "context": {"page_category": "travel", "session_categories": ["travel", "books"],
                                               "device": "mobile"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"decision_id", "customer_id", "channel", "offers", "suppressed", "model_version", "fallback",
                         "degraded"}
    assert body["customer_id"] == cid and body["channel"] == "web" and body["fallback"] is False
    assert body["degraded"] is False and body["model_version"].startswith("nbo-propensity/")
    assert len(body["offers"]) <= 3
    for rank, o in enumerate(body["offers"], start=1):
        assert o["rank"] == rank and 0 <= o["p_accept"] <= 1 and 0 < o["propensity"] <= 1
        assert set(o) >= {"offer_id", "rank", "p_accept", "expected_value", "propensity", "reasons"} and o["reasons"]
    # only the two required fields
    r = server.post("/recommend", {"customer_id": server.customers[11], "channel": "app"})
    assert r.status_code == 200 and len(r.json()["offers"]) <= 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "web"}, "customer_id"),
        ({"customer_id": SECRET_ID}, "channel"),
        ({"customer_id": SECRET_ID, "channel": "fax"}, "channel"),
        ({"customer_id": 123, "channel": "web"}, "customer_id"),
        ({"customer_id": SECRET_ID, "channel": "web", "k": "3"}, "k"),
        ({"customer_id": SECRET_ID, "channel": "web", "k": 0}, "k"),
        ({"customer_id": SECRET_ID, "channel": "web", "k": 21}, "k"),
        ({"customer_id": SECRET_ID, "channel": "web", "k": 2.5}, "k"),
        ({"customer_id": "x" * 129, "channel": "web"}, "customer_id"),
        ({"customer_id": "", "channel": "web"}, "customer_id"),
        ({"customer_id": SECRET_ID, "channel": "web", "context": {"device": "toaster"}}, "device"),
        ({"customer_id": SECRET_ID, "channel": "web", "context": {"page_category": "p" * 65}}, "page_category"),
        ({"customer_id": SECRET_ID, "channel": "web", "context": {"session_categories": ["s"] * 51}}, "session_categories"),
        ({"customer_id": SECRET_ID, "channel": "web", "context": {"session_categories": ["s" * 65]}}, "session_categories"),
        ({"customer_id": SECRET_ID, "channel": "web", "context": "travel"}, "context"),
        ({"customer_id": SECRET_ID, "channel": "web", "kk": 3}, "kk"),
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        ("\u00ff\u00fe".encode("latin-1"), "body"),
        (b"[" * 10_000, "body"),
        (b'{"customer_id": ' + b"[" * 5_000 + b"]" * 5_000 + b', "channel": "web"}', "body"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(server: Server, body: object, field: str) -> None:
    r = server.post("/recommend", body)
    assert 400 <= r.status_code < 500, r.text
    assert field in r.text
    assert SECRET_ID not in r.text


def test_auth(server: Server) -> None:
    body = {"customer_id": server.customers[0], "channel": "web"}
    assert server.post("/recommend", body, key=None).status_code == 401
    assert server.post("/recommend", body, key="wrong").status_code == 401
    assert httpx.post(server.url + "/recommend", json=body, headers={"Authorization": KEY}).status_code == 401
    assert server.post("/recommend", body, key="other-key").status_code == 200
    for path in ("/feedback", "/forget", "/admin/reload"):
        assert server.post(path, {}, key=None).status_code == 401
    assert httpx.get(server.url + "/docs.json").status_code == 401
    spec = httpx.get(server.url + "/docs.json", headers={"Authorization": f"Bearer {KEY}"})
    assert spec.status_code == 200 and "/recommend" in spec.json()["paths"]
    for path in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert httpx.get(server.url + path).status_code == 200


def test_oversized_body_is_413(server: Server) -> None:
    big = json.dumps({"customer_id": "c1", "channel": "web", "context": {"page_category": "x" * 20_000}})
    assert server.post("/recommend", big).status_code == 413
    # without a content-length (chunked upload) too
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 1024
    r = httpx.post(server.url + "/recommend", content=chunks(), headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 413
    # and nothing is asked of an unauthenticated client
    assert server.post("/recommend", big, key=None).status_code == 401


def test_feedback_is_idempotent_and_unknown_is_404(server: Server) -> None:
    decision = None
    for cid in server.customers[20:60]:
        body = server.post("/recommend", {"customer_id": cid, "channel": "web", "k": 1}).json()
        if body["offers"]:
            decision = body
            break
    assert decision is not None
    fb = {"decision_id": decision["decision_id"], "offer_id": decision["offers"][0]["offer_id"], "outcome": "accepted"}
    first, second = server.post("/feedback", fb), server.post("/feedback", fb)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() and first.json()["recorded"] is True
    r = server.post("/feedback", {**fb, "decision_id": "no-such-decision"})
    assert r.status_code == 404 and r.json()["recorded"] is False
    assert server.post("/feedback", {**fb, "offer_id": "o-not-in-it"}).status_code == 404
    assert server.post("/feedback", {**fb, "outcome": "loved"}).status_code == 400


def test_unknown_customer_gets_fallback_and_consent_is_respected(server: Server) -> None:
    r = server.post("/recommend", {"customer_id": SECRET_ID, "channel": "web", "k": 3}).json()
    assert r["fallback"] is True and r["model_version"] == "popularity"
    # no consent row on an opt-in channel: no offer, even in the fallback
    r = server.post("/recommend", {"customer_id": SECRET_ID, "channel": "email", "k": 3}).json()
    assert r["offers"] == [] and {s["reason"] for s in r["suppressed"]} == {"consent"}


def test_opted_out_customer_gets_nothing_on_that_channel(server: Server) -> None:
    from nbo.data import load_table

    consents = load_table(server.world.data, "consents")
    latest = consents.sort_values("ts").groupby(["customer_id", "channel"]).tail(1)
    out = latest[(latest["channel"] == "email") & ~latest["granted"]]["customer_id"].tolist()[:10]
    assert out
    for cid in out:
        r = server.post("/recommend", {"customer_id": cid, "channel": "email", "k": 3}).json()
        assert r["offers"] == [] and r["fallback"] is False


def test_web_cap_holds_under_50_concurrent_requests(server: Server) -> None:
    cid = server.customers[200]
    cap = 10  # default policy: web 10 per day
    body = {"customer_id": cid, "channel": "web", "k": 1}
    with httpx.Client(timeout=20) as client, ThreadPoolExecutor(50) as pool:
        def call(_: int) -> httpx.Response:
            return client.post(server.url + "/recommend", json=body, headers={"Authorization": f"Bearer {KEY}"})

        answers = list(pool.map(call, range(50)))
    assert all(a.status_code == 200 for a in answers)
    served = [a.json() for a in answers if a.json()["offers"]]
    assert 0 < len(served) <= cap
    reasons = {s["reason"] for a in answers for s in a.json()["suppressed"]}
    assert "cap_channel" in reasons


def test_forget_erases_history_and_caps_start_again(server: Server) -> None:
    cid = server.customers[300]
    for _ in range(12):
        server.post("/recommend", {"customer_id": cid, "channel": "web", "k": 1})
    capped = server.post("/recommend", {"customer_id": cid, "channel": "web", "k": 1}).json()
    assert capped["offers"] == []
    r = server.post("/forget", {"customer_id": cid})
    assert r.status_code == 200 and r.json()["erased_shows"] >= 1
    again = server.post("/recommend", {"customer_id": cid, "channel": "web", "k": 1}).json()
    assert again["offers"]
    assert server.post("/forget", {"customer_id": ""}).status_code == 400


def test_metrics_count_offers_suppressions_and_fallbacks(server: Server) -> None:
    server.post("/recommend", {"customer_id": "c-metrics-unknown", "channel": "web"})
    text = httpx.get(server.url + "/metrics").text
    for name in ("nbo_offers_served_total", "nbo_suppressions_total", "nbo_fallbacks_total",
                 "nbo_model_reload_failures_total", "bentoml_service_request_total"):
        assert name in text


def test_reload_to_a_new_champion_under_load_fails_no_request(server: Server) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.world.tracking_uri, server.world.tracking_uri)
    name = "nbo-propensity"
    current = client.get_model_version_by_alias(name, "champion")
    new = client.create_model_version(name, current.source, run_id=current.run_id)
    for _ in range(100):
        if client.get_model_version(name, new.version).status == "READY":
            break
        time.sleep(0.1)
    client.set_registered_model_alias(name, "champion", new.version)

    stop = threading.Event()
    results: list[tuple[int, str]] = []
    ids = server.customers[400:700]

    def load() -> None:
        with httpx.Client(timeout=10) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = c.post(server.url + "/recommend", json={"customer_id": ids[i % len(ids)], "channel": "app", "k": 2},
                               headers={"Authorization": f"Bearer {KEY}"})
                    results.append((r.status_code, r.json().get("model_version", "")))
                except httpx.HTTPError as exc:
                    results.append((0, type(exc).__name__))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        reload = server.post("/admin/reload", {})
        assert reload.status_code == 200 and reload.json()["ok"], reload.text
        assert reload.json()["versions"]["propensity"] == f"{name}/{new.version}"
        # The other worker follows at its marker check (1 s) or interval (2 s), then loads and
        # compiles the new pair while still answering with the old one: wait until both answer new.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(1)
            if len(results) > 40 and all(v == f"{name}/{new.version}" for _, v in results[-40:]):
                break
    finally:
        stop.set()  # also when an assertion failed: the load threads must not outlive the test
        for t in threads:
            t.join()
    assert results and all(code == 200 for code, _ in results), {c for c, _ in results}
    tail = [v for _, v in results[-40:]]
    assert all(v == f"{name}/{new.version}" for v in tail), set(tail)
    assert f"{name}/{current.version}" in {v for _, v in results}  # the old one answered before the swap

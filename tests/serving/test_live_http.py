"""Live input over real HTTP (issue 22): `POST /consents` and `POST /events` on a running `nbo serve`
(2 workers, SQLite store; the shared server of test_http.py). A withdrawal posted is obeyed, and a
store purchase posted is read, on the next call by every worker; bad input is one 4xx naming the
field, never a 5xx, and writes nothing.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from serving.contact_store import SQLiteContactStore
from tests.serving.test_engine import NOW
from tests.serving.test_http import SECRET_ID, Server, server  # noqa: F401 - the shared server fixture

TS = NOW.isoformat()


def _store(server: Server) -> SQLiteContactStore:
    return SQLiteContactStore(server.log.parent / "contacts.db")  # where test_http.py's server keeps it


def _email(server: Server, cid: str) -> dict:
    r = server.post("/recommend", {"customer_id": cid, "channel": "email", "k": 1})
    assert r.status_code == 200, r.text
    return r.json()


def _email_customer(server: Server) -> str:
    """A customer the service makes an e-mail offer (one e-mail contact of the cap's two in 7 days)."""
    for cid in server.customers[400:900]:
        if _email(server, cid)["offers"]:
            return cid
    pytest.fail("no customer gets an e-mail offer")


def test_a_withdrawal_posted_is_obeyed_on_the_next_call_by_every_worker(server: Server) -> None:
    cid = _email_customer(server)
    r = server.post("/consents", {"customer_id": cid, "channel": "email", "granted": False, "ts": TS})
    assert r.status_code == 200, r.text
    assert r.json()["recorded"] is True and r.json()["granted"] is False
    # Twelve calls almost surely reach both workers (test_live_consents.py checks the second
    # worker's path deterministically); each one obeys: no offer, and consent is the reason.
    answers = [_email(server, cid) for _ in range(12)]
    assert all(a["offers"] == [] and {s["reason"] for s in a["suppressed"]} == {"consent"} for a in answers), answers[0]
    # Posting it again is an idempotent 200 that records nothing new.
    again = server.post("/consents", {"customer_id": cid, "channel": "email", "granted": False, "ts": TS})
    assert again.status_code == 200 and again.json()["recorded"] is False
    # A grant at the same instant does not undo it (a tie is a withdrawal); a later one does.
    server.post("/consents", {"customer_id": cid, "channel": "email", "granted": True, "ts": TS})
    assert _email(server, cid)["offers"] == []
    later = (NOW.replace(microsecond=0)).isoformat() + ".5+00:00"
    assert server.post("/consents", {"customer_id": cid, "channel": "email", "granted": True, "ts": later}).status_code == 200
    assert _email(server, cid)["offers"]


@pytest.mark.parametrize(
    ("change", "field", "status"),
    [
        ({"customer_id": SECRET_ID}, "customer_id", 404),
        ({"ts": "2999-01-01T00:00:00Z"}, "ts", 422),
        ({"ts": "1999-01-01T00:00:00"}, "ts", 422),
        ({"ts": "9999-12-31T23:00:00-05:00"}, "ts", 422),
        ({"ts": "yesterday"}, "ts", 400),
        ({"ts": 1767225600}, "ts", 400),
        ({"channel": "fax"}, "channel", 400),
        ({"granted": "no"}, "granted", 400),
        ({"granted": None}, "granted", 400),
        ({"customer_id": "x" * 129}, "customer_id", 400),
        ({"extra": 1}, "extra", 400),
        ({"ts": None}, "ts", 400),
    ],
)
def test_bad_consent_is_a_4xx_naming_the_field_and_writes_nothing(server: Server, change: dict, field: str,
                                                                   status: int) -> None:
    cid = server.customers[950]
    body = {"customer_id": cid, "channel": "email", "granted": False, "ts": TS, **change}
    r = server.post("/consents", body)
    assert r.status_code == status, r.text
    assert field in r.text and SECRET_ID not in r.text
    store = _store(server)
    try:
        assert store.consent_changes([cid, SECRET_ID]) == {}
    finally:
        store.close()


@pytest.mark.parametrize(("body", "status"), [(b"{not json", 400), (b"[1]", 400), (b"", 400), ({}, 400)])
def test_malformed_consent_bodies_are_400(server: Server, body: object, status: int) -> None:
    r = server.post("/consents", body)
    assert r.status_code == status, r.text
    assert "body" in r.text or "customer_id" in r.text


def test_consents_needs_a_key(server: Server) -> None:
    body = {"customer_id": server.customers[951], "channel": "email", "granted": True, "ts": TS}
    assert server.post("/consents", body, key=None).status_code == 401
    assert server.post("/consents", body, key="wrong").status_code == 401


# ------------------------------------------------------------------------------ POST /events
def _view(server: Server, cid: str) -> dict:
    r = server.post("/customer", {"customer_id": cid})
    assert r.status_code == 200, r.text
    return r.json()


def _store_events(server: Server, ids: list[str]) -> dict:
    store = _store(server)
    try:
        return store.live_events(ids)
    finally:
        store.close()


def test_a_store_purchase_posted_changes_recency_lifecycle_and_offers_on_the_next_recommend(server: Server) -> None:
    from features import read_materialised
    from serving.settings import latest_features_file

    frame, _ = read_materialised(latest_features_file(server.world.features))
    lapsing = frame[frame["lifecycle"].isin(["at_risk", "lapsed"]) & (frame["purchases_total"] > 2)]
    cid = str(lapsing.index[-1])
    before = _view(server, cid)
    assert before["source"] == "materialised" and before["lifecycle"] in ("at_risk", "lapsed")
    body = {"customer_id": cid, "channel": "web", "k": 3, "context": {"page_category": "home", "device": "mobile"}}
    shown = server.post("/recommend", body).json()
    purchase = {"event_id": "pos-4711", "customer_id": cid, "ts": (NOW - timedelta(hours=1)).isoformat() + "Z",
                "type": "purchase", "channel": "store", "category": "home", "product_id": "p-home-3", "amount": 180.0}
    r = server.post("/events", {"events": [purchase]})
    assert r.status_code == 200 and r.json() == {"received": 1, "recorded": 1, "duplicates": 0}, r.text
    # The next call, whichever worker takes it (twelve calls almost surely reach both).
    views = [_view(server, cid) for _ in range(12)]
    for after in views:
        assert after["source"] == "live", after["source"]
        assert after["features"]["recency_days"] < 0.5 < before["features"]["recency_days"]
        assert after["lifecycle"] not in ("at_risk", "lapsed")
        assert after["features"]["purchases_total"] == before["features"]["purchases_total"] + 1
    again = server.post("/recommend", body).json()
    assert again["fallback"] is False
    assert {o["offer_id"]: o["p_accept"] for o in again["offers"]} != {o["offer_id"]: o["p_accept"] for o in shown["offers"]}
    # Posting the same event again is an idempotent 200.
    r = server.post("/events", {"events": [purchase]})
    assert r.status_code == 200 and r.json() == {"received": 1, "recorded": 0, "duplicates": 1}


def _event(cid: str, i: int = 0, **kw: object) -> dict:
    return {"event_id": f"ev-{i}", "customer_id": cid, "ts": (NOW - timedelta(hours=2)).isoformat(), "type": "search",
            "channel": "web", "category": "travel", **kw}


@pytest.mark.parametrize(
    ("bad", "field", "status"),
    [
        ({"customer_id": SECRET_ID}, "customer_id", 404),
        ({"ts": "2999-01-01T00:00:00Z"}, "ts", 422),
        ({"ts": "2001-01-01T00:00:00Z"}, "ts", 422),
        ({"ts": (NOW - timedelta(days=20)).isoformat()}, "ts", 422),  # before the data's last event
        ({"ts": "9999-12-31T23:00:00-05:00"}, "ts", 422),
        ({"type": "teleport"}, "type", 400),
        ({"channel": "fax"}, "channel", 400),
        ({"amount": -1}, "amount", 400),
        ({"amount": "12"}, "amount", 400),
        ({"event_id": ""}, "event_id", 400),
        ({"event_id": "ev-0", "category": "books"}, "event_id", 409),  # ev-0 again in the body, other content
        ({"color": "red"}, "color", 400),
    ],
)
def test_a_bad_event_is_a_4xx_naming_the_field_and_nothing_of_the_batch_is_written(server: Server, bad: dict,
                                                                                    field: str, status: int) -> None:
    cid = server.customers[960]
    body = {"events": [_event(cid, 0), {**_event(cid, 1), **bad}, _event(cid, 2)]}
    r = server.post("/events", body)
    assert r.status_code == status, r.text
    assert field in r.text and SECRET_ID not in r.text
    assert _store_events(server, [cid, SECRET_ID]) == {}


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b"[]", 400), ({}, 400), ({"events": []}, 400), ({"events": {"a": 1}}, 400),
     (b'{"events": [{"event_id": "e", "customer_id": "c", "ts": "2025-08-29T09:00:00", "type": "purchase", "amount": NaN}]}', 400)],
)
def test_malformed_event_bodies_are_400(server: Server, body: object, status: int) -> None:
    r = server.post("/events", body)
    assert r.status_code == status, r.text


@pytest.mark.parametrize("n", [1001, 10_000])
def test_too_many_events_in_one_body_is_a_4xx_and_writes_nothing(server: Server, n: int) -> None:
    cid = server.customers[961]
    r = server.post("/events", {"events": [_event(cid, i) for i in range(n)]})
    assert r.status_code in (400, 413), r.text
    assert "events" in r.text or "body" in r.text
    assert _store_events(server, [cid]) == {}


def test_a_batch_of_1000_events_is_one_200(server: Server) -> None:
    ids = server.customers[962:972]
    events = [_event(ids[i % 10], i, ts=(NOW - timedelta(minutes=1 + i % 300)).isoformat()) for i in range(1000)]
    r = server.post("/events", {"events": events})
    assert r.status_code == 200 and r.json()["recorded"] == 1000, r.text
    assert sum(len(v) for v in _store_events(server, ids).values()) == 1000

"""Live input over real HTTP (issue 22): `POST /consents` on a running `nbo serve` (2 workers,
SQLite store; the shared server of test_http.py). A withdrawal posted is obeyed on the next call
by every worker; bad input is one 4xx naming the field, never a 5xx, and writes nothing.
"""

from __future__ import annotations

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

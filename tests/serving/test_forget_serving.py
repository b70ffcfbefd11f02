"""`POST /forget` on a running `nbo serve` (issue 19 item 5): the service forgets the customer in
memory too, in every worker, and the SQLite store's file and WAL no longer hold the id.

Over the real server of test_http.py (2 workers, SQLite store; shared, started once per session).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serving.test_engine import NOW
from tests.serving.test_http import Server, server  # noqa: F401 - the shared server fixture


def _store_bytes(server: Server) -> bytes:
    db = server.log.parent / "contacts.db"  # where test_http.py's server keeps its store
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())


def _recommend(server: Server, cid: str) -> dict:
    r = server.post("/recommend", {"customer_id": cid, "channel": "web", "k": 3,
                                   "context": {"page_category": "travel", "device": "mobile"}})
    assert r.status_code == 200, r.text
    return r.json()


def _personalised(body: dict) -> bool:
    """Not the fallback of an unknown customer (which scores by popularity, with no features)."""
    return body["fallback"] is not True or body["model_version"] != "popularity"


def test_forget_makes_the_next_decision_the_anonymous_fallback_in_every_worker(server: Server) -> None:
    cid = server.customers[77]
    before = _recommend(server, cid)
    assert _personalised(before), before
    assert cid.encode() in _store_bytes(server), "the decision was not logged: the byte check below would prove nothing"

    r = server.post("/forget", {"customer_id": cid})
    assert r.status_code == 200, r.text
    # The id is gone from the database file and from the WAL (checkpointed and truncated).
    assert cid.encode() not in _store_bytes(server)

    # Every later answer, from whichever of the two workers takes it, is the fallback of an unknown
    # customer: no materialised row, no reasons from the customer's features. Twelve requests almost
    # surely reach both workers; the test below checks the second worker's path deterministically.
    answers = [_recommend(server, cid) for _ in range(12)]
    personalised = [a for a in answers if _personalised(a)]
    assert not personalised, personalised[0]
    # ... and none of them wrote the id again (issue 22 item 3): an erased customer's decisions are
    # answered, not recorded; outbound channels offer nothing (only a record could cap them).
    for channel in ("email", "mail"):
        r = server.post("/recommend", {"customer_id": cid, "channel": channel, "k": 3})
        assert r.status_code == 200 and r.json()["offers"] == [], r.text
    assert cid.encode() not in _store_bytes(server)
    # Nor can a consent be recorded for the erased id.
    r = server.post("/consents", {"customer_id": cid, "channel": "email", "granted": True, "ts": NOW.isoformat()})
    assert r.status_code == 404 and "customer_id" in r.text

    # Another customer is still personalised.
    other = _recommend(server, server.customers[78])
    assert other["fallback"] is False


def test_a_worker_that_did_not_serve_the_forget_learns_it_from_the_store(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Two engines on one SQLite file, as two workers: the forget goes to one, the other obeys on
    its next decision for the id (deterministic, unlike the routing of the HTTP test above)."""
    from serving.engine import DecisionEngine
    from tests.serving.test_engine import NO_EXPLORATION, NOW, build_world

    world = build_world(tmp_path_factory)
    policy = tmp_path / "policy.toml"
    policy.write_text(NO_EXPLORATION)
    settings = world.settings(tmp_path / "contacts.db", policy_path=policy)
    first = DecisionEngine.from_settings(settings)
    second = DecisionEngine.from_settings(settings, models=(first.models.propensity, first.models.churn))
    try:
        cid = first.features.index[5]
        assert not second.decide(cid, "web", None, NOW, k=3).fallback
        first.forget(cid)
        assert first.positions([cid])[0] == -1 and first.decide(cid, "web", None, NOW, k=3).fallback
        assert second.positions([cid])[0] >= 0, "the second worker still holds the row until it reads the store"
        again = second.decide(cid, "web", None, NOW, k=3)
        assert again.fallback and again.model_versions == {"fallback": "popularity"}
        assert second.positions([cid])[0] == -1
        other = first.features.index[6]
        assert not second.decide(other, "web", None, NOW, k=3).fallback
    finally:
        first.close()
        second.close()

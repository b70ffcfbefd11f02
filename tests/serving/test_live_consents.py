"""Consents at runtime and forget-means-forget through the decision engine (issue 22 items 2-3).

Two engines on one SQLite file stand for two workers (deterministic, unlike HTTP routing; the HTTP
test is tests/serving/test_live_http.py): a consent change recorded through one is obeyed by the
other on its next decision; bad changes are refused with the field named and nothing written; an
erased customer's next decision is the anonymous fallback and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from serving.engine import DecisionEngine
from serving.live import LiveInputError
from tests.serving.test_engine import NO_EXPLORATION, NOW, World, world  # noqa: F401 - the shared world

S = timedelta(seconds=1)


@pytest.fixture
def two_workers(world: World, tmp_path: Path) -> Iterator[tuple[DecisionEngine, DecisionEngine]]:
    policy = tmp_path / "policy.toml"
    policy.write_text(NO_EXPLORATION)
    settings = world.settings(tmp_path / "contacts.db", policy_path=policy)
    first = DecisionEngine.from_settings(settings)
    second = DecisionEngine.from_settings(settings, models=(first.models.propensity, first.models.churn))
    yield first, second
    first.close()
    second.close()


def _email_customers(engine: DecisionEngine, n: int) -> list[str]:
    """Customers who get an e-mail offer at NOW (consent granted in the data), without reserving."""
    found = []
    for cid in engine.features.index.tolist():
        if engine.decide(cid, "email", None, NOW, k=1, reserve=False).offers:
            found.append(cid)
            if len(found) == n:
                return found
    pytest.fail("no customer gets an e-mail offer in the test world")


def _reasons(decision) -> set[str]:  # noqa: ANN001
    return {s.reason for s in decision.suppressed}


def test_a_withdrawal_through_one_worker_is_obeyed_by_the_other_on_its_next_decision(two_workers) -> None:  # noqa: ANN001
    first, second = two_workers
    cid, other = _email_customers(second, 2)
    assert second.decide(cid, "email", None, NOW, k=1, reserve=False).offers  # consent from the data
    assert first.record_consent(cid, "email", False, NOW - S, NOW) is True
    for engine in (second, first):
        d = engine.decide(cid, "email", None, NOW, k=1, reserve=False)
        assert d.offers == [] and _reasons(d) == {"consent"}
    assert second.decide(other, "email", None, NOW, k=1, reserve=False).offers  # another customer: untouched
    # The same withdrawal again changes nothing; a later grant wins; a grant at the withdrawal's
    # own time does not (a tie is a withdrawal).
    assert first.record_consent(cid, "email", False, NOW - S, NOW) is False
    first.record_consent(cid, "email", True, NOW - S, NOW)
    assert not second.decide(cid, "email", None, NOW, k=1, reserve=False).offers
    first.record_consent(cid, "email", True, NOW, NOW)
    assert second.decide(cid, "email", None, NOW, k=1, reserve=False).offers


def test_a_withdrawal_is_obeyed_by_batch_scoring_of_the_same_store(two_workers) -> None:  # noqa: ANN001
    from serving.pipeline import CustomerBlock

    first, second = two_workers
    ids = _email_customers(first, 3)
    second.record_consent(ids[1], "email", False, NOW - S, NOW)
    desk = first.desk
    block = first.decide_block(CustomerBlock(ids, desk.histories(ids, NOW), desk.contact_rows_many(ids),
                                             desk.consent_changes(ids)), "email", NOW, None, 1)
    assert [bool(block.shown(i)) for i in range(3)] == [True, False, True]
    assert block.no_offer(1) == "consent"


@pytest.mark.parametrize(
    ("change", "field", "status"),
    [
        ({"customer_id": "c-not-a-customer"}, "customer_id", 404),
        ({"ts": NOW + timedelta(minutes=6)}, "ts", 422),
        ({"ts": NOW - timedelta(days=366)}, "ts", 422),
    ],
)
def test_bad_changes_are_refused_naming_the_field_and_nothing_is_written(two_workers, change, field, status) -> None:  # noqa: ANN001
    first, _ = two_workers
    cid = first.features.index[3]
    args = {"customer_id": cid, "channel": "email", "granted": False, "ts": NOW - S, **change}
    with pytest.raises(LiveInputError) as info:
        first.record_consent(args["customer_id"], args["channel"], args["granted"], args["ts"], NOW)
    assert info.value.field == field and info.value.status == status and str(info.value).startswith(f"{field}: ")
    assert first.store.consent_changes([cid, args["customer_id"]]) == {}
    # a clock a few minutes ahead is tolerated
    assert first.record_consent(cid, "email", False, NOW + timedelta(minutes=4), NOW) is True


def test_after_forget_the_next_decision_is_the_anonymous_fallback_and_writes_nothing(two_workers) -> None:  # noqa: ANN001
    first, second = two_workers
    cid = _email_customers(first, 1)[0]
    assert second.decide(cid, "web", None, NOW, k=3).offers  # reserved: the store holds the customer
    first.record_consent(cid, "email", True, NOW - S, NOW)
    first.forget(cid)
    # The worker that did not serve the forget: fallback on web, nothing on outbound channels, no write.
    web = second.decide(cid, "web", None, NOW, k=3)
    assert web.fallback and web.model_versions == {"fallback": "popularity"} and web.offers
    for channel in ("email", "mail", "sms"):
        d = second.decide(cid, channel, None, NOW, k=3)
        assert d.offers == [] and _reasons(d) <= {"consent", "quiet_hours"}, channel
    held = first.store.export(cid)
    assert held == {"decisions": [], "contacts": [], "consents": [], "events": [], "outbox": []}
    assert first.store.read_customer(cid, NOW).history.contacts == ()
    # Nor can a consent be recorded for the erased id, in either worker.
    for engine in (first, second):
        with pytest.raises(LiveInputError) as info:
            engine.record_consent(cid, "email", True, NOW, NOW)
        assert info.value.field == "customer_id" and info.value.status == 404
    assert first.store.export(cid)["consents"] == []

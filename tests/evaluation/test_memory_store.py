"""The in-memory contact store of the closed loop applies the policy's caps and cooldowns."""

from __future__ import annotations

from datetime import datetime, timedelta

from evaluation.memory_store import MemoryContactStore
from evaluation.rule_sets import uncapped
from serving.contact_store.base import OfferRef
from serving.policy import ContactPolicy


def test_memory_store_applies_caps_and_cooldowns() -> None:
    policy = ContactPolicy()
    store = MemoryContactStore()
    t0 = datetime(2025, 1, 1, 10)
    offer = OfferRef("o-1", "books")
    for i in range(2):
        assert store.check_and_reserve("c", "email", [offer if i == 0 else OfferRef("o-2", "books")],
                                       t0 + timedelta(hours=i), policy, f"d{i}", {}).ok
    refused = store.check_and_reserve("c", "email", [OfferRef("o-3", "home")], t0 + timedelta(hours=3), policy, "d3", {})
    assert refused.refused == (("o-3", "cap_channel"),)  # email: 2 per 7 days
    assert store.check_and_reserve("c", "email", [OfferRef("o-3", "home")], t0 + timedelta(days=7, hours=2),
                                   policy, "d4", {}).ok
    store.add_declines(["c"], ["o-1"], ["books"], [(t0 + timedelta(days=8)).timestamp()])
    late = store.history("c", t0 + timedelta(days=9))
    assert late.last_decline_offer == {"o-1": (t0 + timedelta(days=8)).timestamp()}
    assert store.history("c", t0 + timedelta(days=7)).last_decline_offer == {}  # not observed yet
    free = uncapped(policy)
    assert free.caps == {} and free.cooldown.offer_days == 0 and free.consent == policy.consent

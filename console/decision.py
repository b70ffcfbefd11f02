"""A live decision for the console: the engine `/recommend` uses, on the same path, nothing recorded.

`DecisionEngine.decide(..., reserve=False)` is the very call `/recommend` makes (`Recommender.decide`
passes `reserve=True`): the same store read, the same `decide_block` pipeline, the same arbiter.
The console only previews, so no contact is reserved and no fatigue budget is spent. Each
suppressed offer is shown with its reason in plain words, its code and the rule of the policy (or the
catalogue) that removed it; each shown offer with its reasons in plain words next to their codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from console.backend import ConsoleBackend
from serving.contact_store.errors import StoreUnavailable
from serving.decision import Decision, ShownOffer
from serving.reasons import suppression_setting

#: Fields of a shown offer the decision page lays out itself (the reasons in plain words, each with
#: its code); any other field the decision carries is shown as it comes.
LAID_OUT = frozenset({"offer_id", "rank", "p_accept", "expected_value", "propensity", "explored", "reasons",
                      "reason_texts"})


@dataclass(frozen=True)
class Removed:
    offer_id: str
    offer: dict[str, Any]
    reason: str
    rule: str
    text: str = ""  # the reason in plain words (serving.reasons)


@dataclass(frozen=True)
class LiveDecision:
    customer_id: str
    channel: str
    found: bool  # a materialised customer (else: the fallback for an unknown id)
    decision: Decision | None
    offers: list[tuple[ShownOffer, dict[str, Any], dict[str, Any]]]  # (offer, catalogue row, other fields)
    removed: list[Removed]
    error: str | None = None


def live_decision(backend: ConsoleBackend, customer_id: str, channel: str, k: int,
                  page_category: str | None = None, device: str | None = None) -> LiveDecision:
    """Decide for `customer_id` on `channel` now, without reserving."""
    engine = backend.engine
    known = customer_id in engine.features.index
    in_data = bool(len(backend.customer_table(customer_id)))
    context = {k_: v for k_, v in (("page_category", page_category), ("device", device)) if v}
    try:
        decision = engine.decide(customer_id, channel, context or None, backend.clock(), k=k, reserve=False)
    except StoreUnavailable as exc:
        return LiveDecision(customer_id, channel, known or in_data, None, [], [],
                            error=f"{exc}: /recommend answers degraded (no offers) until it is back")
    catalogue = {str(r["offer_id"]): r for r in engine.offers.to_dict("records")}
    offers = []
    for o in decision.offers:
        extra = {name: value for name, value in o.model_dump().items() if name not in LAID_OUT}
        offers.append((o, catalogue.get(o.offer_id, {}), extra))
    by_id = engine.arbiter.catalogue.by_id
    removed = [Removed(s.offer_id, catalogue.get(s.offer_id, {}), s.reason,
                       suppression_setting(s.reason, by_id.get(s.offer_id), channel, engine.policy), s.reason_text)
               for s in decision.suppressed]
    return LiveDecision(customer_id, channel, known or in_data, decision, offers, removed)

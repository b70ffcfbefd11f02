"""The contact desk: the one place around the (pure) arbiter that reads contact history and
reserves contacts.

Before a decision the desk reads what the arbiter and the features need from the contact store
(`read_customer`: the features' contact rows and the caps' history in one read; `histories` and
`contact_rows_many` for a batch chunk). After it, the desk reserves what the arbiter picked:
`reserve` for one decision (the store re-checks every cap atomically; offers it refuses leave the
answer with the store's reason and the ranks close up), `reserve_many` for a chunk's decisions in
one store call. `ContactDesk.decide` is the three steps for callers that hold scores already
(OPE replays, the closed-loop simulation, tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import numpy as np

from serving.contact_store import ConsentBook, ContactHistory, ContactStore, ReserveRequest, ReserveResult
from serving.contact_store.base import ConsentChange, CustomerState
from serving.decision import Candidate, Decision
from serving.holdout import no_offer_reason
from serving.policy import ContactPolicy
from serving.ranking import Arbiter


class ContactDesk:
    """Reads contact history for `arbiter` and reserves its picks in `store`."""

    def __init__(self, arbiter: Arbiter, store: ContactStore) -> None:
        self.arbiter = arbiter
        self.store = store

    @property
    def policy(self) -> ContactPolicy:
        return self.arbiter.policy

    # ---------------------------------------------------------------- reading
    def read_customer(self, customer_id: str, now: datetime) -> CustomerState:
        """One customer's contact rows (for the features) and history (for the caps), one read."""
        return self.store.read_customer(customer_id, now)

    def read_customers(self, customer_ids: list[str], now: datetime) -> list[CustomerState]:
        """`read_customer` of several distinct customers, in one store read (a micro-batch)."""
        return self.store.read_customers(customer_ids, now)

    def history(self, customer_id: str, now: datetime) -> ContactHistory:
        return self.store.history(customer_id, now)

    def histories(self, customer_ids: list[str], now: datetime) -> dict[str, ContactHistory]:
        return self.store.histories(customer_ids, now)

    def contact_rows_many(self, customer_ids: list[str]) -> dict[str, list[dict[str, object]]]:
        return self.store.contact_rows_many(customer_ids)

    def consent_changes(self, customer_ids: list[str]) -> dict[str, tuple[ConsentChange, ...]]:
        """The consent changes recorded at runtime (`POST /consents`) of these customers."""
        return self.store.consent_changes(customer_ids)

    # ---------------------------------------------------------------- reserving
    def reserve(self, decision: Decision, now: datetime | None = None) -> Decision:
        """Reserve a decision's offers at `now` (default: its `ts`; the store re-checks the caps
        atomically and logs the decision, even an empty one); offers refused are suppressed with
        the store's reason."""
        r = self._request(decision)
        result = self.store.check_and_reserve(r.customer_id, r.channel, list(r.offers), decision.ts if now is None else now,
                                              self.arbiter.policy, r.decision_id, r.propensities, r.model_versions,
                                              no_offer=r.no_offer)
        return self._apply(decision, result)

    def reserve_block(self, decisions: list[Decision], now: datetime) -> list[Decision]:
        """`reserve` of each decision (distinct customers), in order, in one store call
        (`check_and_reserve_many`: one transaction or one round trip instead of one per decision).
        The store checks each decision as `check_and_reserve` would, after the ones before it,
        so every answer is the one `reserve` gives. ValueError for a decision id recorded before."""
        results = self.store.check_and_reserve_many([self._request(d) for d in decisions], now, self.arbiter.policy)
        for d, result in zip(decisions, results, strict=True):
            if result is None:
                raise ValueError(f"decision {d.decision_id!r} already recorded")
        return [self._apply(d, r) for d, r in zip(decisions, results, strict=True)]  # type: ignore[arg-type]

    def _request(self, decision: Decision) -> ReserveRequest:
        """What the store is asked to reserve for a decision."""
        offers = decision.offers
        return ReserveRequest(
            decision.customer_id, decision.channel, tuple(self.arbiter.offer_ref(o.offer_id) for o in offers),
            decision.decision_id, {o.offer_id: o.propensity for o in offers}, decision.model_versions,
            # a decision without contact is logged with why and its probability (P(no contact))
            None if offers else (no_offer_reason([s.reason for s in decision.suppressed]), decision.slate_propensity),
        )

    def _apply(self, decision: Decision, result: ReserveResult) -> Decision:
        if not result.refused and len(result.reserved) == len(decision.offers):
            return decision
        kept = {r.offer_id for r in result.reserved}
        shown = [o for o in decision.offers if o.offer_id in kept]
        shown = [o if o.rank == r else o.model_copy(update={"rank": r}) for r, o in enumerate(shown, start=1)]
        suppressed = decision.suppressed + [self.arbiter.suppression(oid, why, decision.channel) for oid, why in result.refused]
        return decision.model_copy(update={"offers": shown, "suppressed": suppressed})

    def reserve_many(self, requests: list[ReserveRequest], now: datetime) -> list[ReserveResult | None]:
        """Many decisions' reservations in one store call, in order; None for a decision id the
        store holds already (a re-run: look it up with `reserved_offers`)."""
        return self.store.check_and_reserve_many(requests, now, self.arbiter.policy)

    def reserved_offers(self, customer_id: str, decision_id: str) -> set[str]:
        """The offers the store recorded for a decision made before."""
        return {c["offer_id"] for c in self.store.export(customer_id)["contacts"] if c["decision_id"] == decision_id}

    # ---------------------------------------------------------------- all three
    def decide(
        self,
        customer_id: str,
        channel: str,
        now: datetime,
        candidates: Mapping[str, float] | Iterable[Candidate],
        features: Mapping[str, object] | None = None,
        context: Mapping[str, object] | None = None,
        churn_probability: float = 0.0,
        customer_value: float = 0.0,
        k: int = 1,
        rng: np.random.Generator | int | None = None,
        consents: Mapping[str, bool] | ConsentBook | None = None,
        model_versions: Mapping[str, str] | None = None,
        fallback: bool = False,
        decision_id: str | None = None,
        reserve: bool = True,
        history: ContactHistory | None = None,
        uplift: Mapping[str, float] | None = None,
    ) -> Decision:
        """Read the customer's history (unless given), `Arbiter.decide`, then reserve (unless
        `reserve=False`: a what-if that records nothing). `uplift`: offer id -> incremental
        conversion, for the `uplift` objective (`Arbiter.decide`)."""
        if now.tzinfo is not None:
            now = now.astimezone(UTC).replace(tzinfo=None)
        if history is None and self.arbiter.may_contact(customer_id, channel, now, consents):
            history = self.store.history(customer_id, now)
        decision = self.arbiter.decide(
            customer_id, channel, now, candidates, features=features, context=context,
            churn_probability=churn_probability, customer_value=customer_value, k=k, rng=rng, consents=consents,
            model_versions=model_versions, fallback=fallback, decision_id=decision_id, history=history,
            uplift=uplift,
        )
        return self.reserve(decision, now) if reserve else decision

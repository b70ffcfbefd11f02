"""An in-process contact store for closed-loop simulations: the shared cap logic, no server."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from serving.contact_store.base import (
    ContactHistory,
    ContactRecord,
    ContactStore,
    ReserveResult,
    split_offers,
    to_epoch,
)


class MemoryContactStore(ContactStore):
    """An in-process contact store (one simulation, one thread) with the shared cap logic.

    Contacts are added by `check_and_reserve` (closed loop) or `add_contacts` (replaying a log);
    declines by `add_declines`, each at the moment it is observed: `history(now)` only sees
    contacts and declines strictly before `now`.
    """

    def __init__(self, horizon_days: int = 90) -> None:
        self.horizon_days = horizon_days
        self._contacts: dict[str, list[ContactRecord]] = defaultdict(list)
        self._declines: dict[str, list[tuple[float, str, str]]] = defaultdict(list)

    def add_contacts(self, customer_id: str, records: list[ContactRecord]) -> None:
        self._contacts[customer_id].extend(records)

    def add_declines(self, customer_ids, offer_ids, categories, ts_epoch) -> None:
        for c, o, k, t in zip(customer_ids, offer_ids, categories, ts_epoch, strict=True):
            self._declines[c].append((float(t), o, k))

    def history(self, customer_id: str, now: datetime | float) -> ContactHistory:
        t = now if isinstance(now, float) else to_epoch(now)
        since = t - self.horizon_days * 86_400.0
        rows = self._contacts.get(customer_id, ())
        recent = tuple(r for r in rows if since < r.ts < t)
        if len(recent) < len(rows) and rows and rows[0].ts <= since:  # forget what left the horizon
            self._contacts[customer_id] = [r for r in rows if r.ts > since]
        last_offer: dict[str, float] = {}
        last_cat: dict[str, float] = {}
        for ts, offer, cat in self._declines.get(customer_id, ()):
            if ts < t:
                if ts > last_offer.get(offer, -1.0):
                    last_offer[offer] = ts
                if ts > last_cat.get(cat, -1.0):
                    last_cat[cat] = ts
        return ContactHistory(customer_id, t, recent, last_offer, last_cat)

    def check_and_reserve(self, customer_id, channel, offers, now, policy, decision_id, propensities,
                          model_versions=None, no_offer=None) -> ReserveResult:
        history = self.history(customer_id, now)
        ok, refused = split_offers(history, channel, offers, policy)
        t = to_epoch(now)
        self._contacts[customer_id].extend(ContactRecord(decision_id, o.offer_id, o.category, channel, t) for o in ok)
        return ReserveResult(decision_id, tuple(ok), tuple(refused))

    def record_outcome(self, decision_id: str, offer_id: str, outcome: str, ts: datetime) -> bool:
        return False  # outcomes come from the simulator's log (add_declines)

    def forget(self, customer_id: str) -> int:
        n = len(self._contacts.pop(customer_id, []))
        self._declines.pop(customer_id, None)
        return n

    def export(self, customer_id: str) -> dict[str, list[dict[str, object]]]:
        return {"decisions": [], "contacts": [r.__dict__ for r in self._contacts.get(customer_id, [])]}

"""serving: contact policy, rule language, contact store, arbitration and the decision pipeline (no HTTP here)."""

from serving.contact_store import (
    ConsentBook,
    ContactHistory,
    ContactStore,
    OfferRef,
    RedisContactStore,
    ReserveResult,
    SQLiteContactStore,
)
from serving.policy import ContactPolicy, load_policy, parse_policy
from serving.decision import REASON_CODES, Candidate, Decision, ShownOffer, Suppressed
from serving.catalogue import compile_offer_rules
from serving.ranking import Arbiter
from serving.reservation import ContactDesk
from serving.rules import CONTEXT_NAMES, Rule, RuleError, compile_rule

__all__ = [
    "CONTEXT_NAMES",
    "REASON_CODES",
    "Arbiter",
    "Candidate",
    "ConsentBook",
    "ContactDesk",
    "ContactHistory",
    "ContactPolicy",
    "ContactStore",
    "Decision",
    "OfferRef",
    "RedisContactStore",
    "ReserveResult",
    "Rule",
    "RuleError",
    "SQLiteContactStore",
    "ShownOffer",
    "Suppressed",
    "compile_offer_rules",
    "compile_rule",
    "load_policy",
    "parse_policy",
]

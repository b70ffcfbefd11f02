"""serving: contact policy, rule language, contact store, arbitration and the decision pipeline (no HTTP here).

Public names are imported on first use (`nbo.lazy`): BentoML's supervisor imports the service
module only, not the stores and the arbiter.
"""

from nbo.lazy import lazy_exports

#: public name -> the module that defines it (imported when the name is first used)
_EXPORTS = {
    "CONTEXT_NAMES": "serving.rules",
    "REASON_CODES": "serving.decision",
    "Arbiter": "serving.ranking",
    "Candidate": "serving.decision",
    "ConsentBook": "serving.contact_store",
    "ContactDesk": "serving.reservation",
    "ContactHistory": "serving.contact_store",
    "ContactPolicy": "serving.policy",
    "ContactStore": "serving.contact_store",
    "Decision": "serving.decision",
    "OfferRef": "serving.contact_store",
    "RedisContactStore": "serving.contact_store",
    "ReserveResult": "serving.contact_store",
    "Rule": "serving.rules",
    "RuleError": "serving.rules",
    "SQLiteContactStore": "serving.contact_store",
    "ShownOffer": "serving.decision",
    "Suppressed": "serving.decision",
    "compile_offer_rules": "serving.catalogue",
    "compile_rule": "serving.rules",
    "load_policy": "serving.policy",
    "parse_policy": "serving.policy",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""Contact stores: where caps are counted and the decision log is kept (SQLite or Redis).

Public names are imported on first use (`nbo.lazy`): a service on SQLite does not import Redis' client.
"""

from nbo.lazy import lazy_exports

#: public name -> the module that defines it (imported when the name is first used)
_EXPORTS = {
    "FEEDBACK_OUTCOMES": "serving.contact_store.base",
    "OUTCOME_ORDER": "serving.contact_store.base",
    "ConsentBook": "serving.contact_store.consent",
    "ContactHistory": "serving.contact_store.base",
    "ContactRecord": "serving.contact_store.base",
    "ContactStore": "serving.contact_store.base",
    "CustomerState": "serving.contact_store.base",
    "OfferRef": "serving.contact_store.base",
    "RedisContactStore": "serving.contact_store.redis_store",
    "RedisPersistence": "serving.contact_store.redis_store",
    "ReserveRequest": "serving.contact_store.base",
    "ReserveResult": "serving.contact_store.base",
    "SQLiteContactStore": "serving.contact_store.sqlite_store",
    "check_persistence": "serving.contact_store.redis_store",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""Contact stores: where caps are counted and the decision log is kept (SQLite or Redis)."""

from serving.contact_store.base import (
    FEEDBACK_OUTCOMES,
    OUTCOME_ORDER,
    ContactHistory,
    ContactRecord,
    ContactStore,
    CustomerState,
    OfferRef,
    ReserveRequest,
    ReserveResult,
)
from serving.contact_store.consent import ConsentBook
from serving.contact_store.redis_store import RedisContactStore, RedisPersistence, check_persistence
from serving.contact_store.sqlite_store import SQLiteContactStore

__all__ = [
    "FEEDBACK_OUTCOMES",
    "OUTCOME_ORDER",
    "ConsentBook",
    "ContactHistory",
    "ContactRecord",
    "ContactStore",
    "CustomerState",
    "OfferRef",
    "RedisContactStore",
    "RedisPersistence",
    "ReserveRequest",
    "ReserveResult",
    "SQLiteContactStore",
    "check_persistence",
]

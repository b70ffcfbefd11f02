"""Contact stores: where caps are counted and the decision log is kept (SQLite or Redis)."""

from serving.contact_store.base import (
    FEEDBACK_OUTCOMES,
    ContactHistory,
    ContactRecord,
    ContactStore,
    CustomerState,
    OfferRef,
    ReserveRequest,
    ReserveResult,
)
from serving.contact_store.consent import ConsentBook
from serving.contact_store.redis_store import RedisContactStore
from serving.contact_store.sqlite_store import SQLiteContactStore

__all__ = [
    "FEEDBACK_OUTCOMES",
    "ConsentBook",
    "ContactHistory",
    "ContactRecord",
    "ContactStore",
    "CustomerState",
    "OfferRef",
    "RedisContactStore",
    "ReserveRequest",
    "ReserveResult",
    "SQLiteContactStore",
]

"""What a contact store failure looks like to its callers: fail closed, say why.

The online path turns any of `STORE_ERRORS` into `StoreUnavailable` (a degraded answer with no
offer); `store_cause` names the cause for metrics and logs.
"""

from __future__ import annotations

import sqlite3

import redis

from nbo.errors import NboError

#: What a contact store raises when it cannot answer: locked or unwritable SQLite file, Redis down,
#: refusing or too slow. The online path turns these into a degraded answer (no offers).
STORE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, redis.RedisError, OSError)


class StoreFileChanged(OSError):
    """The SQLite store's file was deleted or replaced since the store opened it (issue 19 item 2).

    An `OSError`, so one of `STORE_ERRORS`: decisions fail closed (degraded, no offer). The store
    does not recreate the file: an empty new database would forget every contact, and caps with it.
    """


class StoreUnavailable(NboError):
    """The contact store could not answer; `cause` is `timeout`, `error` or `backoff` (not tried).

    Raised by `decide`, `record_outcome` and `forget`: nothing was shown, and whatever the store
    may or may not have recorded, no offer is returned (fail closed).
    """

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


def store_cause(exc: BaseException) -> str:
    if isinstance(exc, redis.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        return "timeout"
    return "error"

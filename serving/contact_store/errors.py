"""What a contact store failure looks like to its callers: fail closed, say why.

The online path turns any of `store_errors()` into `StoreUnavailable` (a degraded answer with no
offer); `store_cause` names the cause for metrics and logs.

Redis' client is not imported here (~0.4 s of CPU at every `nbo serve` start and in each worker of
a service on SQLite): a Redis store imports it when it is created, and a process that has not
loaded it cannot meet a Redis error. `store_errors()` is therefore asked when an error is caught.
"""

from __future__ import annotations

import sqlite3
import sys

from nbo.errors import NboError


def store_errors() -> tuple[type[BaseException], ...]:
    """What a contact store raises when it cannot answer: locked or unwritable SQLite file, Redis
    down, refusing or too slow (`redis.RedisError` once Redis' client is loaded). The online path
    turns these into a degraded answer (no offers)."""
    redis = sys.modules.get("redis")
    return (sqlite3.Error, OSError) if redis is None else (sqlite3.Error, redis.RedisError, OSError)


def __getattr__(name: str) -> object:
    """`STORE_ERRORS`: `store_errors()` now (the stores loaded so far)."""
    if name == "STORE_ERRORS":
        return store_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class StoreFileChanged(OSError):
    """The SQLite store's file was deleted or replaced since the store opened it (issue 19 item 2).

    An `OSError`, so one of `store_errors()`: decisions fail closed (degraded, no offer). The store
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
    redis = sys.modules.get("redis")
    if isinstance(exc, TimeoutError) or (redis is not None and isinstance(exc, redis.TimeoutError)):
        return "timeout"
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        return "timeout"
    return "error"

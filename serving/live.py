"""Live input: what callers tell the service while it runs (issue 22): consent changes
(`POST /consents`) and events (`POST /events`, `nbo ingest`), and the live features computed
from those events (`LiveFeatures`).

Checked here, before anything is written: the time of a change must lie within
[now - `max_past_days`, now + `max_skew_s`] (a clock a few minutes ahead is tolerated; a change
from the future, or years old, is a caller's mistake), and the customer must be one of the data's
customers and not erased. A refusal is a `LiveInputError` naming the field, answered as a 4xx.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features import build_customer_features
from nbo.data import Dataset, empty_table, load_table
from nbo.errors import NboError
from nbo.table_cache import load_table_cached
from nbo.vocab import EVENT_CHANNELS, EVENT_TYPES
from serving.contact_store.base import (
    ConsentChange,
    ContactStore,
    EventConflict,
    LiveEvent,
    from_epoch,
    to_epoch,
    unique_events,
)


class LiveInputError(NboError):
    """Live input refused (nothing written): `field` names what was wrong; `status` the HTTP answer."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True)
class LiveLimits:
    """How far from the service's clock a live change's time may lie."""

    max_past_days: float = 365.0
    max_skew_s: float = 300.0


def check_time(field: str, ts: datetime, now: datetime, limits: LiveLimits) -> None:
    """Refuse (`LiveInputError`, 422) a naive-UTC `ts` after `now + max_skew_s` or before
    `now - max_past_days`."""
    if ts > now + timedelta(seconds=limits.max_skew_s):
        raise LiveInputError(field, f"in the future (more than {limits.max_skew_s:g} s after the service's clock)")
    if ts < now - timedelta(days=limits.max_past_days):
        raise LiveInputError(field, f"more than {limits.max_past_days:g} days in the past")


def utc_time(field: str, ts: datetime) -> datetime:
    """`ts` as naive UTC (naive = UTC already); `LiveInputError` when the conversion leaves the
    calendar (`9999-12-31T23:00-05:00`)."""
    if ts.tzinfo is None:
        return ts
    try:
        return ts.astimezone(UTC).replace(tzinfo=None)
    except (OverflowError, ValueError):
        raise LiveInputError(field, "out of range once converted to UTC") from None


# ------------------------------------------------------------------------------ events
def check_events(events: Sequence[LiveEvent], knows: Callable[[str], bool], now: datetime, limits: LiveLimits,
                 horizon: datetime | None) -> list[LiveEvent]:
    """Refuse (`LiveInputError` naming `events[i].<field>`) a batch with an unknown customer, a time
    out of range or not after the data's own events (`horizon`: the latest `ts` of the data
    directory's events table, whose events the features read already); repeats of one event id
    with the same content are dropped, with other content refused (409). Nothing is written here."""
    for i, e in enumerate(events):  # first: a time out of range would not convert to nanoseconds
        check_time(f"events[{i}].ts", from_epoch(e.ts), now, limits)
    stamps = event_ns(events)  # the event's time as the feature code reads it (to the nanosecond)
    for i, e in enumerate(events):
        if horizon is not None and stamps[i] <= pd.Timestamp(horizon).value:
            raise LiveInputError(f"events[{i}].ts", f"not after the data's last event ({horizon.isoformat()}): "
                                 "events up to then are read from the data directory's events table")
        if not knows(e.customer_id):
            raise LiveInputError(f"events[{i}].customer_id", "unknown customer (not in the data's customers table, or erased)",
                                 404)
    try:
        return unique_events(events)
    except EventConflict as exc:
        raise LiveInputError(f"events[{list(events).index(exc.event)}].event_id",
                             "repeated in this body with other content", 409) from None


def conflict_error(events: Sequence[LiveEvent], exc: EventConflict) -> LiveInputError:
    """The 409 of an event id the store holds with other content (nothing of the batch written)."""
    i = next((i for i, e in enumerate(events) if e is exc.event), 0)
    return LiveInputError(f"events[{i}].event_id", "already recorded for this customer with other content", 409)


@dataclass(frozen=True)
class IngestResult:
    """What one call of `DecisionEngine.ingest_events` did."""

    received: int
    recorded: int  # new events written
    duplicates: int  # events already recorded (same id, same content): nothing written
    fired: int = 0  # outbox rows the programmes wrote for these events (`DecisionEngine.ingest_events`)


# ------------------------------------------------------------------------------ live features
_EVENT_COLUMNS = ("customer_id", "ts", "channel", "type", "category", "product_id", "amount")


def event_ns(events: Sequence[LiveEvent]) -> np.ndarray:
    """The events' times in nanoseconds since the epoch, converted as `events_frame` (and a data
    export written with pandas) converts them: the one comparison with the data's horizon."""
    return pd.to_datetime([e.ts for e in events], unit="s").as_unit("ns").asi8


def events_frame(events: Sequence[LiveEvent], like: pd.DataFrame) -> pd.DataFrame:
    """Live events as rows of the data's `events` table (`like`'s columns and dtypes)."""
    values: dict[str, object] = {
        "customer_id": [e.customer_id for e in events],
        "ts": pd.to_datetime([e.ts for e in events], unit="s").as_unit("ns"),
        "channel": [e.channel for e in events], "type": [e.type for e in events],
        "category": [e.category for e in events], "product_id": [e.product_id for e in events],
        "amount": np.array([np.nan if e.amount is None else e.amount for e in events], dtype=np.float64),
    }
    # Each column built once in the table's dtype (a DataFrame then `astype` costs ~4x more).
    columns = {}
    for name in like.columns:
        if name not in values:
            continue
        value, dtype = values[name], like[name].dtype
        same = isinstance(value, np.ndarray | pd.DatetimeIndex) and value.dtype == dtype
        columns[name] = value if same else pd.array(value, dtype=dtype)
    return pd.DataFrame(columns, copy=False)


def consents_frame(changes: Sequence[ConsentChange], customer_id: str, like: pd.DataFrame) -> pd.DataFrame:
    """Runtime consent changes as rows of the data's `consents` table."""
    frame = pd.DataFrame({"customer_id": [customer_id] * len(changes), "channel": [c.channel for c in changes],
                          "granted": [c.granted for c in changes],
                          "ts": pd.to_datetime([c.ts for c in changes], unit="s").as_unit("ns")})
    columns = list(like.columns)
    return frame[columns].astype({c: like[c].dtype for c in columns})


def by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows sorted by customer (stable: each customer's rows keep their order), index 0..n-1."""
    return frame.sort_values("customer_id", kind="stable").reset_index(drop=True)


class _ByCustomer:
    """A table sorted by customer, sliced per customer without a scan (row ranges)."""

    def __init__(self, frame: pd.DataFrame, *, presorted: bool = False) -> None:
        self.frame = frame if presorted else by_customer(frame)
        ids = self.frame["customer_id"].to_numpy(dtype=object)
        self._ranges: dict[str, tuple[int, int]] = {}
        if len(ids):
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
            ends = np.r_[starts[1:], len(ids)]
            self._ranges = {ids[s]: (int(s), int(e)) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)}

    def rows(self, customer_id: str) -> pd.DataFrame:
        s, e = self._ranges.get(customer_id, (0, 0))
        return self.frame.iloc[s:e]


class LiveFeatures:
    """A customer's feature row recomputed with the events posted while nbo runs.

    One definition per feature: the row is `features.build_customer_features` (the batch code) on
    the customer's own rows - the data directory's customers, events, consents and contacts, plus
    the events and consent changes recorded in the contact store and the contacts nbo recorded
    there - as of the decision's time. The data's events are loaded once per process, on first
    use (`prepare`), sorted by customer. Rows are cached per customer until a new event or consent
    change, a model reload, or `refresh_s` seconds (then recomputed as of the new time).

    Memory: an entry older than `refresh_s` can never be used again, so `keep` drops those (the
    cache is ordered by when each row was computed); it holds the customers decided in the last
    `refresh_s` seconds, at most `max_cached`, whatever the number of events. The key it compares
    is a digest of the customer's posted events (`state_key`), not the events themselves.
    """

    def __init__(self, data_dir: Path, customers: pd.DataFrame, consents: pd.DataFrame, *,
                 refresh_s: float = 60.0, max_cached: int = 10_000, table_cache: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.table_cache = table_cache
        self.refresh_s = refresh_s
        self.max_cached = max_cached
        self._customers = _ByCustomer(customers)
        self._consents = _ByCustomer(consents)
        self._consents_like = consents
        self._events: _ByCustomer | None = None
        self.horizon: datetime | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[object, float, object]] = OrderedDict()

    def prepare(self) -> None:
        """Load the data directory's events table (once per process)."""
        with self._lock:
            if self._events is not None:
                return
            # Sorted once per data file for every process (nbo.table_cache), not by each worker.
            events = load_table_cached(self.data_dir, "events", self.table_cache, variant="by-customer",
                                       prepare=by_customer)
            self._events = _ByCustomer(events, presorted=True)
            latest = events["ts"].max() if len(events) else None
            # A Timestamp (a datetime to the nanosecond): a datetime would drop the nanoseconds, and a
            # posted event in the data's last microsecond would then count twice.
            self.horizon = None if latest is None or pd.isna(latest) else pd.Timestamp(latest)

    def data_events(self) -> pd.DataFrame:
        """The data directory's events table (sorted by customer; loaded once, `prepare`)."""
        self.prepare()
        assert self._events is not None
        return self._events.frame

    def dataset(self, customer_id: str, events: Sequence[LiveEvent], consents: Sequence[ConsentChange],
                contacts: Mapping[str, np.ndarray] | pd.DataFrame) -> Dataset:
        """The customer's own rows, data and live, as the batch code reads a data directory."""
        self.prepare()
        assert self._events is not None
        data_events = self._events.rows(customer_id)
        # Older events are in the data already. Appended in time order (then id): a sum over
        # events is then the same float whatever order they were posted in.
        if self.horizon is not None and events:
            events = [e for e, ns in zip(events, event_ns(events).tolist(), strict=True) if ns > self.horizon.value]
        fresh = sorted(events, key=lambda e: (e.ts, e.event_id))
        if fresh:
            data_events = pd.concat([data_events, events_frame(fresh, self._events.frame)], ignore_index=True)
        own_consents = self._consents.rows(customer_id)
        if consents:
            own_consents = pd.concat([own_consents, consents_frame(consents, customer_id, self._consents_like)],
                                     ignore_index=True)
        return Dataset(customers=self._customers.rows(customer_id), consents=own_consents, events=data_events,
                       offers=_empty("offers"), contacts=contacts,  # type: ignore[arg-type]
                       no_offers=_empty("no_offers"))

    def row(self, customer_id: str, events: Sequence[LiveEvent], consents: Sequence[ConsentChange],
            contacts: Mapping[str, np.ndarray] | pd.DataFrame, now: datetime) -> pd.DataFrame:
        """The customer's feature row as of `now` (0 rows if they signed up at or after `now`)."""
        data = self.dataset(customer_id, events, consents, contacts)
        return build_customer_features(data, pd.Timestamp(now))

    def cached(self, customer_id: str, key: object, now: datetime) -> object | None:
        """What `keep` stored for the customer under `key`, if younger than `refresh_s`."""
        t = to_epoch(now)
        with self._lock:
            hit = self._cache.get(customer_id)
            if hit is None or hit[0] != key or not (hit[1] <= t < hit[1] + self.refresh_s):
                return None
            return hit[2]

    def keep(self, customer_id: str, key: object, now: datetime, value: object) -> None:
        """Cache `value` (computed as of `now`); drop the oldest rows beyond `max_cached` and every
        row older than `refresh_s` (at the front: the cache is in the order rows were computed)."""
        t = to_epoch(now)
        with self._lock:
            self._cache.pop(customer_id, None)
            self._cache[customer_id] = (key, t, value)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
            while self._cache:
                _, (_, kept, _) = next(iter(self._cache.items()))
                if t < kept + self.refresh_s:
                    break
                self._cache.popitem(last=False)

    def __len__(self) -> int:
        """How many rows are cached."""
        return len(self._cache)

    def drop(self, customer_id: str) -> None:
        with self._lock:
            self._cache.pop(customer_id, None)


@functools.cache
def _empty(table: str) -> pd.DataFrame:
    """An empty table of the contract (read only: shared by every live row)."""
    return empty_table(table)


def state_key(events: Sequence[LiveEvent], consents: Sequence[ConsentChange]) -> tuple[int, int, int]:
    """What a cached live row depends on besides time and models: the posted events and consents,
    as (number of events, number of consent changes, a hash of both). A digest, so that a cached
    entry's size does not grow with the customer's events (the tuples themselves were ~150 bytes
    an event, per cached customer); the counts make a stale hit need a 64-bit hash collision
    between two states of the same customer with as many events."""
    return (len(events), len(consents), hash((tuple(sorted((e.event_id, e.ts) for e in events)),
                                               tuple(sorted((c.channel, c.ts, c.granted) for c in consents)))))


# ------------------------------------------------------------------------------ ingestion
def ingest(store: ContactStore, events: Sequence[LiveEvent], knows: Callable[[str], bool], now: datetime,
           limits: LiveLimits, horizon: datetime | None) -> IngestResult:
    """The one ingestion path (`POST /events`, `nbo ingest`): `check_events`, refuse erased
    customers, then `ContactStore.append_events` (all or nothing). `LiveInputError` on any refusal,
    nothing written."""
    unique = check_events(events, knows, now, limits, horizon)
    erased = {c for c in {e.customer_id for e in unique} if store.forgotten(c)}
    if erased:
        i = next(i for i, e in enumerate(events) if e.customer_id in erased)
        raise LiveInputError(f"events[{i}].customer_id", "unknown customer (erased)", 404)
    try:
        n = store.append_events(unique)
    except EventConflict as exc:
        raise conflict_error(events, exc) from None
    return IngestResult(len(events), n, len(events) - n)


def compact(store: ContactStore, horizon: datetime | None) -> int:
    """Snapshot-and-truncate: delete the posted events at or before `horizon` (the data directory's
    last event) from the store's event log; returns how many.

    Exact: the live row reads a customer's posted events only after the horizon (`LiveFeatures.dataset`),
    and `check_events` refuses an event at or before it (422), so a deleted event can neither count
    again nor come back. What the log holds is therefore the events since the last data export."""
    if horizon is None:
        return 0
    # One microsecond below the horizon: a float's nanoseconds are not the store's to compare, and
    # an event of the last microsecond left in the log is still skipped by `LiveFeatures.dataset`.
    return store.compact_events((pd.Timestamp(horizon).value - 1_000) / 1e9)


#: Columns of an `nbo ingest` file: the `events` table's and `event_id`.
INGEST_REQUIRED = ("event_id", "customer_id", "ts", "type")
INGEST_OPTIONAL = ("channel", "category", "product_id", "amount")


def read_events_file(path: Path) -> list[LiveEvent]:
    """Events of a CSV or Parquet file (`INGEST_REQUIRED` columns, optionally `INGEST_OPTIONAL`);
    `LiveInputError` naming the row and column of the first bad value (types as `POST /events`)."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as exc:
        raise LiveInputError("file", f"{path} cannot be read as CSV or Parquet ({type(exc).__name__})", 400) from None
    missing = [c for c in INGEST_REQUIRED if c not in frame.columns]
    if missing:
        raise LiveInputError("file", f"{path} has no column {missing[0]!r} (needs {', '.join(INGEST_REQUIRED)})", 400)
    unknown = [c for c in frame.columns if c not in (*INGEST_REQUIRED, *INGEST_OPTIONAL)]
    if unknown:
        raise LiveInputError("file", f"{path}: unknown column {str(unknown[0])[:64]!r}", 400)
    ts = pd.to_datetime(frame["ts"], utc=True, errors="coerce", format="ISO8601")
    amounts = pd.to_numeric(frame["amount"], errors="coerce") if "amount" in frame else pd.Series(np.nan, index=frame.index)
    out = []
    for i, values in enumerate(frame.to_dict("records")):
        where = f"row {i + 1}"
        if pd.isna(ts.iloc[i]):
            raise LiveInputError(f"{where}: ts", "not a time (ISO 8601)", 400)
        if values["type"] not in EVENT_TYPES:
            raise LiveInputError(f"{where}: type", f"not one of {', '.join(EVENT_TYPES)}", 400)
        channel = _text(values.get("channel"))
        if channel is not None and channel not in EVENT_CHANNELS:
            raise LiveInputError(f"{where}: channel", f"not one of {', '.join(EVENT_CHANNELS)}", 400)
        raw_amount = _text(values.get("amount"))
        amount = None if raw_amount is None else float(amounts.iloc[i])
        if amount is not None and not (np.isfinite(amount) and amount >= 0):
            raise LiveInputError(f"{where}: amount", "not a number >= 0", 400)
        for name, most in (("event_id", 128), ("customer_id", 128), ("category", 64), ("product_id", 128)):
            text = _text(values.get(name))
            if name in INGEST_REQUIRED and not text:
                raise LiveInputError(f"{where}: {name}", "empty", 400)
            if text is not None and len(text) > most:
                raise LiveInputError(f"{where}: {name}", f"longer than {most} characters", 400)
        stamp = ts.iloc[i].tz_convert("UTC").tz_localize(None)
        out.append(LiveEvent(str(values["event_id"]), str(values["customer_id"]), to_epoch(stamp.to_pydatetime()),
                             str(values["type"]), channel, _text(values.get("category")),
                             _text(values.get("product_id")), amount))
    return out


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return str(value)


def ingest_file(path: Path, *, data_dir: Path, store: ContactStore | None, now: datetime, limits: LiveLimits,
                record: Callable[[Sequence[LiveEvent]], IngestResult] | None = None) -> IngestResult:
    """`nbo ingest`: the events of a file through `ingest`, against the data directory's customers
    and its events' horizon, into `store` (all or nothing). `record`: what stores them instead
    (`DecisionEngine.ingest_events`, which also fires the programmes: `nbo ingest --policy`)."""
    events = read_events_file(path)
    if not events:
        return IngestResult(0, 0, 0)
    if record is None:
        assert store is not None
        customers = set(load_table(data_dir, "customers")["customer_id"].astype(str).tolist())
        data_events = load_table(data_dir, "events")
        latest = data_events["ts"].max() if len(data_events) else None
        horizon = None if latest is None or pd.isna(latest) else pd.Timestamp(latest)
        record = functools.partial(ingest, store, knows=customers.__contains__, now=now, limits=limits, horizon=horizon)
    try:
        return record(events)
    except LiveInputError as exc:  # events[i].field -> the file's row i + 1, as `read_events_file` says
        where, _, field = exc.field.partition("].")
        if not where.startswith("events[") or not field:
            raise
        raise LiveInputError(f"row {int(where.removeprefix('events[')) + 1}: {field}", exc.message, exc.status) from None

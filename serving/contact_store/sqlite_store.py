"""The SQLite contact store: one file, WAL mode, `BEGIN IMMEDIATE` transactions; one machine.

`BEGIN IMMEDIATE` takes the database's write lock before the caps are read, so two processes or
threads deciding for the same customer are serialised: the second one sees the first one's
contacts. Each thread gets its own connection. Rows are kept past the horizon (the decision log
feeds off-policy evaluation); `forget` erases a customer.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from serving.contact_store.base import (
    DAY,
    ContactHistory,
    ContactRecord,
    ConsentChange,
    ContactStore,
    CustomerState,
    EventConflict,
    ImportedShow,
    LiveEvent,
    OfferRef,
    OUTBOX_SETTLED,
    OutboxEntry,
    ReserveRequest,
    ReserveResult,
    check_outcome,
    check_propensities,
    consent_records,
    event_records,
    forgotten_key,
    from_epoch,
    imported_shows,
    outbox_records,
    split_offers,
    supersedes,
    to_epoch,
    unique_events,
)
from serving.contact_store.errors import StoreFileChanged
from serving.policy import ContactPolicy

log = logging.getLogger(__name__)

#: Ids per `IN (...)` list (SQLite allows 32,766 parameters since 3.32; stay well below).
_IN_BATCH = 500
#: WAL pages between automatic checkpoints on a connection that reserves in bulk (`expect_bulk_writes`).
_BULK_CHECKPOINT_PAGES = 10_000
#: With a background checkpointer, a commit checkpoints itself only past this many WAL pages (~80 MB).
_BACKSTOP_PAGES = 20_000
#: The background checkpointer restarts the WAL (a short RESTART checkpoint) once it holds this many pages (~8 MB).
_RESTART_PAGES = 2_000
#: Longest wait (ms) of that RESTART for the write lock and for readers: if busy, the next pass tries again.
_RESTART_WAIT_MS = 50

#: One customer's contact rows, all columns, in the order `contact_rows` returns them (imported
#: shows, `rank` 0, included: `contact_rows` leaves them out, the caps count them).
_CUSTOMER_ROWS = "SELECT * FROM contacts WHERE customer_id = ? ORDER BY ts, decision_id, rank"
#: The `rank` of a show imported from the data's contacts table (`import_history`); nbo's own are 1, 2...
IMPORTED_RANK = 0
#: Seconds `import_history` waits for the write lock at least (another process importing).
_IMPORT_WAIT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    ts REAL NOT NULL,
    n_offers INTEGER NOT NULL,
    model_versions TEXT NOT NULL,
    no_offer TEXT,
    no_offer_propensity REAL
);
CREATE INDEX IF NOT EXISTS decisions_customer ON decisions (customer_id, ts);
CREATE TABLE IF NOT EXISTS contacts (
    decision_id TEXT NOT NULL,
    offer_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    category TEXT NOT NULL,
    channel TEXT NOT NULL,
    ts REAL NOT NULL,
    rank INTEGER NOT NULL,
    propensity REAL NOT NULL,
    outcome TEXT NOT NULL DEFAULT 'pending',
    outcome_ts REAL,
    PRIMARY KEY (decision_id, offer_id)
);
CREATE INDEX IF NOT EXISTS contacts_customer ON contacts (customer_id, ts);
CREATE TABLE IF NOT EXISTS declines (
    decision_id TEXT NOT NULL,
    offer_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    category TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (decision_id, offer_id)
);
CREATE INDEX IF NOT EXISTS declines_customer ON declines (customer_id, ts);
"""

#: Erased customers, by `forgotten_key` (a hash, never the id): `read_customer` reports them, so
#: every worker drops its in-memory copy of the customer (issue 19 item 5).
_FORGOTTEN_SCHEMA = "CREATE TABLE IF NOT EXISTS forgotten (key TEXT PRIMARY KEY, ts REAL NOT NULL);"

#: Consent changes recorded at runtime (`POST /consents`, issue 22 item 2); one row per change,
#: the same change twice is one row; `recorded` is when the store received it (epoch seconds).
_CONSENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS consents (
    customer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    ts REAL NOT NULL,
    granted INTEGER NOT NULL,
    recorded REAL NOT NULL,
    PRIMARY KEY (customer_id, channel, ts, granted)
);
"""
_CUSTOMER_CONSENTS = "SELECT channel, ts, granted FROM consents WHERE customer_id = ?"

#: The event log of events posted while nbo runs (`POST /events`, `nbo ingest`; issue 22 item 1).
_EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS live_events (
    customer_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    ts REAL NOT NULL,
    type TEXT NOT NULL,
    channel TEXT,
    category TEXT,
    product_id TEXT,
    amount REAL,
    recorded REAL NOT NULL,
    PRIMARY KEY (customer_id, event_id)
);
"""
_EVENT_COLUMNS = "event_id, customer_id, ts, type, channel, category, product_id, amount"

#: The outbox of the programmes (serving/programmes.py): one row per trigger occurrence fired
#: (`trigger_key` unique: fired once), pending sends for a campaign tool to read (`GET /outbox`).
_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    outbox_id INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger_key TEXT NOT NULL UNIQUE,
    programme TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    fired REAL NOT NULL,
    status TEXT NOT NULL,
    updated REAL NOT NULL,
    scheduled REAL,
    channel TEXT,
    offer_id TEXT,
    decision_id TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS outbox_status ON outbox (status, outbox_id);
CREATE INDEX IF NOT EXISTS outbox_customer ON outbox (customer_id);
CREATE INDEX IF NOT EXISTS outbox_updated ON outbox (updated);
"""
#: Leases of periodic jobs (`ContactStore.lease`): who does the job until when (epoch s, wall time).
_LEASES_SCHEMA = "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until REAL NOT NULL);"
_OUTBOX_COLUMNS = ("outbox_id, trigger_key, programme, customer_id, fired, status, updated, scheduled, channel, "
                   "offer_id, decision_id, reason")
_CUSTOMER_EVENTS = f"SELECT {_EVENT_COLUMNS} FROM live_events WHERE customer_id = ?"


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One `BEGIN IMMEDIATE` transaction (the write lock taken before anything is read): committed
    when the block ends, rolled back and re-raised when it (or the commit) fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SQLiteContactStore(ContactStore):
    """Contact store in one SQLite file (WAL). Safe across threads and processes on one machine.

    `checkpoint_interval_s`: copy the WAL back into the database from a background thread every so
    many seconds instead of on the committing call (SQLite's default: the commit that takes the WAL
    past 1,000 pages checkpoints it, and syncs the file, before returning). Why: in the service the
    committing call is a request, and its event loop waits for that copy and sync. Measured with
    two processes on one store (read + reservation per decision, docs/service.md §7): wall time
    per decision 0.28-0.31 -> 0.21 ms, p99 1.6 -> 0.9 ms, CPU 0.24-0.25 -> 0.22 ms (the thread's
    included). Durability is unchanged: a commit is in the WAL either way (synchronous=NORMAL);
    checkpoints only move pages into the database file. Commits still checkpoint themselves if
    the WAL passes `_BACKSTOP_PAGES` (the thread stalled or died).
    """

    def __init__(
        self, path: Path | str, horizon_days: int = 90, busy_timeout_s: float = 30.0,
        checkpoint_interval_s: float | None = None, cache_mib: int = 64,
    ) -> None:
        self.path = str(path)
        #: SQLite's page cache per connection (heap memory each connection fills up to this, with
        #: the pages it writes: reads go through the memory map). 64 MB for batch reservation;
        #: the service passes less (cli/serve.py: a worker's heap otherwise grew with the event log).
        self.cache_mib = cache_mib
        self.horizon_days = horizon_days
        self.busy_timeout_s = busy_timeout_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file, once open
        self._conn().executescript(_SCHEMA)
        self._add_no_offer_columns()
        self._conn().executescript(_FORGOTTEN_SCHEMA)
        self._conn().executescript(_CONSENTS_SCHEMA)
        self._conn().executescript(_EVENTS_SCHEMA)
        self._conn().executescript(_OUTBOX_SCHEMA)
        self._conn().executescript(_LEASES_SCHEMA)
        self._identity = self._file_identity()
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if checkpoint_interval_s is not None:
            if checkpoint_interval_s <= 0:
                raise ValueError(f"checkpoint_interval_s must be > 0, got {checkpoint_interval_s}")
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="nbo-sqlite-checkpoint", daemon=True)
            self._checkpointer.start()

    def _file_identity(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_dev, st.st_ino

    def check_file(self) -> None:
        """Raise `StoreFileChanged` if the database file is gone or is another file than the one
        opened (deleted, or replaced by a rename): the open connections would go on writing to
        the unlinked file, and a new connection would create an empty database, both silently
        forgetting every contact. One `os.stat` (a few microseconds) per store call."""
        expected = self._identity
        if expected is None:  # still opening
            return
        try:
            got = self._file_identity()
        except FileNotFoundError:
            raise StoreFileChanged(
                f"the contact store file {self.path} was deleted while open: refusing to go on (contacts "
                "would be lost) or to create an empty one; restore it, or restart nbo to start a new store"
            ) from None
        if got != expected:
            raise StoreFileChanged(
                f"the contact store file {self.path} was replaced by another file while open: refusing to go on; "
                "restart nbo to open the new file"
            )

    def _add_no_offer_columns(self) -> None:
        """A store written before the no-offer columns (issue 21) gets them, empty for its old rows."""
        conn = self._conn()
        have = {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}
        for name, kind in (("no_offer", "TEXT"), ("no_offer_propensity", "REAL")):
            if name not in have:
                try:
                    conn.execute(f"ALTER TABLE decisions ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as exc:  # another process added it first
                    if "duplicate column" not in str(exc):
                        raise

    def _conn(self) -> sqlite3.Connection:
        self.check_file()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA cache_size=-{int(self.cache_mib) * 1024}")
            conn.execute("PRAGMA mmap_size=268435456")
            if self.checkpoint_interval_s is not None:
                conn.execute(f"PRAGMA wal_autocheckpoint={_BACKSTOP_PAGES}")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _checkpoint_loop(self) -> None:
        """PASSIVE checkpoints (never wait for or block readers and writers) until `close`, and a
        RESTART once the WAL holds `_RESTART_PAGES`.

        Why the RESTART: SQLite starts the WAL file over only when a writer begins while every
        frame has been copied back. Under steady writes from two processes (600 decisions/s) a
        passive pass never ends between two commits, so the WAL grew by ~17 MB/s until the
        backstop, where every commit checkpointed on the request path (docs/service.md §7). The
        RESTART runs right after a passive pass, so it copies and syncs only the frames written
        meanwhile, holding the write lock for that long (commits wait; reads do not)."""
        assert self.checkpoint_interval_s is not None
        conn: sqlite3.Connection | None = None
        while not self._stop.wait(self.checkpoint_interval_s):
            try:
                self.check_file()  # never checkpoint into (or recreate) a file that is not ours
                if conn is None:
                    conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                           check_same_thread=False)
                    conn.execute("PRAGMA synchronous=NORMAL")
                    conn.execute(f"PRAGMA busy_timeout={_RESTART_WAIT_MS}")
                _, wal_pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if wal_pages >= _RESTART_PAGES:
                    conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            except (sqlite3.Error, OSError) as exc:  # a store that fails here fails the requests too; keep trying
                log.debug("background checkpoint failed: %s", type(exc).__name__)
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is not None:
            conn.close()

    def expect_bulk_writes(self) -> None:
        """Checkpoint the WAL every ~40 MB instead of every ~4 MB on this thread's connection.

        A batch chunk commits a few thousand rows at once, so with SQLite's default (1,000 pages)
        nearly every commit also copied the WAL back into the database and synced it: reserving 40
        chunks of 2,000 customers waited 108-147 us per customer for 34-43 us of CPU; with 10,000
        pages, 42-55 us. The service keeps the default: its small commits make short checkpoints.
        """
        self._conn().execute(f"PRAGMA wal_autocheckpoint={_BULK_CHECKPOINT_PAGES}")

    def _history(self, conn: sqlite3.Connection, customer_id: str, now: float, days: float) -> ContactHistory:
        since = now - days * DAY
        rows = conn.execute(
            "SELECT decision_id, offer_id, category, channel, ts FROM contacts WHERE customer_id = ? AND ts > ?",
            (customer_id, since),
        ).fetchall()
        last_offer, last_cat = self._declines(conn, customer_id, since)
        return ContactHistory(customer_id, now, tuple(ContactRecord(*r) for r in rows), last_offer, last_cat)

    @staticmethod
    def _declines(conn: sqlite3.Connection, customer_id: str, since: float) -> tuple[dict[str, float], dict[str, float]]:
        """The customer's last decline per offer and per category after `since`."""
        return _last_declines(conn.execute(
            "SELECT offer_id, category, ts FROM declines WHERE customer_id = ? AND ts > ?", (customer_id, since)))

    def _histories(self, conn: sqlite3.Connection, customer_ids: list[str], now: float, days: float) -> dict[str, ContactHistory]:
        """`_history` of many customers in a few queries; customers with nothing recent are left out."""
        since = now - days * DAY
        contacts: dict[str, list[ContactRecord]] = {}
        declines: dict[str, list[tuple]] = {}
        unique = list(dict.fromkeys(customer_ids))
        for lo in range(0, len(unique), _IN_BATCH):
            part = unique[lo : lo + _IN_BATCH]
            marks = ",".join("?" * len(part))
            for cid, *rest in conn.execute(
                f"SELECT customer_id, decision_id, offer_id, category, channel, ts FROM contacts WHERE customer_id IN ({marks}) AND ts > ?",
                (*part, since),
            ):
                contacts.setdefault(cid, []).append(ContactRecord(*rest))
            for cid, offer_id, category, ts in conn.execute(
                f"SELECT customer_id, offer_id, category, ts FROM declines WHERE customer_id IN ({marks}) AND ts > ?", (*part, since)
            ):
                declines.setdefault(cid, []).append((offer_id, category, ts))
        return {
            cid: ContactHistory(cid, now, tuple(contacts.get(cid, ())), *_last_declines(declines.get(cid, ())))
            for cid in set(contacts) | set(declines)
        }

    def histories(self, customer_ids: list[str], now: datetime) -> dict[str, ContactHistory]:
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            return self._histories(conn, list(customer_ids), to_epoch(now), self.horizon_days)
        finally:
            conn.execute("COMMIT")

    def check_and_reserve_many(
        self, requests: list[ReserveRequest], now: datetime, policy: ContactPolicy
    ) -> list[ReserveResult | None]:
        """One `BEGIN IMMEDIATE` transaction for all the requests: the caps are read once, under the
        write lock, and every request is checked against them plus the requests before it."""
        for r in requests:
            check_propensities(r.offers, r.propensities)
        self.check_policy(policy)
        if not requests:
            return []
        t = to_epoch(now)
        days = self.window_days(policy)
        conn = self._conn()
        with _immediate(conn):
            known = self._histories(conn, [r.customer_id for r in requests], t, days)
            ids = list(dict.fromkeys(r.decision_id for r in requests))
            taken: set[str] = set()
            for lo in range(0, len(ids), _IN_BATCH):
                part = ids[lo : lo + _IN_BATCH]
                taken.update(d for (d,) in conn.execute(
                    f"SELECT decision_id FROM decisions WHERE decision_id IN ({','.join('?' * len(part))})", part))
            decisions: list[tuple] = []
            shows: list[tuple] = []
            written: set[str] = set()

            def flush() -> None:
                conn.executemany("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", decisions)
                conn.executemany(
                    "INSERT INTO contacts (decision_id, offer_id, customer_id, category, channel, ts, rank, propensity)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    shows,
                )
                decisions.clear()
                shows.clear()

            out: list[ReserveResult | None] = []
            versions: dict[int, str] = {}  # id of a request's model_versions -> its JSON (a batch shares one mapping)
            # A customer with nothing recent gets the empty history's answer, which depends on the
            # channel and the offers only: computed once per (channel, offers) in the call (most of
            # a campaign's customers have no history).
            blank: dict[tuple[str, tuple[OfferRef, ...]], tuple[list[OfferRef], list[tuple[str, str]]]] = {}
            for r in requests:
                if r.decision_id in taken:
                    out.append(None)
                    continue
                cid = r.customer_id
                if cid in written:  # a second decision for this customer in the call: read what the first wrote
                    flush()
                    ok, refused = split_offers(self._history(conn, cid, t, days), r.channel, list(r.offers), policy)
                elif (history := known.get(cid)) is not None:
                    ok, refused = split_offers(history, r.channel, list(r.offers), policy)
                else:
                    answer = blank.get((r.channel, r.offers))
                    if answer is None:
                        answer = blank[(r.channel, r.offers)] = split_offers(ContactHistory(cid, t), r.channel,
                                                                             list(r.offers), policy)
                    ok, refused = answer
                mv = versions.get(id(r.model_versions))
                if mv is None:
                    mv = versions[id(r.model_versions)] = json.dumps(dict(r.model_versions or {}))
                no = r.no_offer
                decisions.append((r.decision_id, cid, r.channel, t, len(ok), mv,
                                  None if no is None else str(no[0]), None if no is None else float(no[1])))
                shows.extend(
                    (r.decision_id, o.offer_id, cid, o.category, r.channel, t, i + 1, float(r.propensities[o.offer_id]))
                    for i, o in enumerate(ok)
                )
                taken.add(r.decision_id)
                written.add(cid)
                out.append(ReserveResult(r.decision_id, tuple(ok), tuple(refused)))
            flush()
        return out

    def check_and_reserve(
        self,
        customer_id: str,
        channel: str,
        offers: list[OfferRef],
        now: datetime,
        policy: ContactPolicy,
        decision_id: str,
        propensities: Mapping[str, float],
        model_versions: Mapping[str, str] | None = None,
        no_offer: tuple[str, float] | None = None,
    ) -> ReserveResult:
        check_propensities(offers, propensities)
        self.check_policy(policy)
        t = to_epoch(now)
        conn = self._conn()
        with _immediate(conn):
            history = self._history(conn, customer_id, t, self.window_days(policy))
            ok, refused = split_offers(history, channel, offers, policy)
            try:
                conn.execute(
                    "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (decision_id, customer_id, channel, t, len(ok), json.dumps(dict(model_versions or {})),
                     None if no_offer is None else str(no_offer[0]), None if no_offer is None else float(no_offer[1])),
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"decision {decision_id!r} already recorded") from None
            conn.executemany(
                "INSERT INTO contacts (decision_id, offer_id, customer_id, category, channel, ts, rank, propensity)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (decision_id, o.offer_id, customer_id, o.category, channel, t, i + 1, float(propensities[o.offer_id]))
                    for i, o in enumerate(ok)
                ],
            )
        return ReserveResult(decision_id, tuple(ok), tuple(refused))

    def import_history(self, contacts: object, categories: Mapping[str, str], now: datetime) -> int:
        """`INSERT OR IGNORE` of the shows (rank 0) keyed by (decision_id, offer_id), and of their
        declines, in one `BEGIN IMMEDIATE` transaction."""
        shows = imported_shows(contacts, categories, to_epoch(now) - self.horizon_days * DAY)
        if not shows:
            return 0
        conn = self._conn()
        # Several workers import at start at once: wait for the one holding the lock (its import
        # makes ours a no-op) instead of failing after the service's short busy timeout.
        conn.execute(f"PRAGMA busy_timeout={int(max(self.busy_timeout_s, _IMPORT_WAIT_S) * 1000)}")
        try:
            return self._import(conn, shows)
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")

    @staticmethod
    def _import(conn: sqlite3.Connection, shows: list[ImportedShow]) -> int:
        with _immediate(conn):
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO contacts (decision_id, offer_id, customer_id, category, channel, ts, rank,"
                " propensity, outcome, outcome_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(s.decision_id, s.offer_id, s.customer_id, s.category, s.channel, s.ts, IMPORTED_RANK, s.propensity,
                  s.outcome, s.outcome_ts) for s in shows],
            )
            n = conn.total_changes - before
            conn.executemany(
                "INSERT OR IGNORE INTO declines VALUES (?, ?, ?, ?, ?)",
                [(s.decision_id, s.offer_id, s.customer_id, s.category, s.declined_ts)
                 for s in shows if s.declined_ts is not None],
            )
        return n

    def history(self, customer_id: str, now: datetime) -> ContactHistory:
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            return self._history(conn, customer_id, to_epoch(now), self.horizon_days)
        finally:
            conn.execute("COMMIT")

    def record_outcome(self, decision_id: str, offer_id: str, outcome: str, ts: datetime) -> bool:
        check_outcome(outcome)
        t = to_epoch(ts)
        conn = self._conn()
        with _immediate(conn):
            row = conn.execute(
                "SELECT customer_id, category, outcome FROM contacts WHERE decision_id = ? AND offer_id = ?",
                (decision_id, offer_id),
            ).fetchone()
            if row is None:
                return False
            customer_id, category, current = row
            if supersedes(outcome, current):
                conn.execute(
                    "UPDATE contacts SET outcome = ?, outcome_ts = ? WHERE decision_id = ? AND offer_id = ?",
                    (outcome, t, decision_id, offer_id),
                )
            if outcome == "declined":  # also after an acceptance; the first decline of this show wins
                conn.execute(
                    "INSERT OR IGNORE INTO declines VALUES (?, ?, ?, ?, ?)",
                    (decision_id, offer_id, customer_id, category, t),
                )
            return True

    def forget(self, customer_id: str) -> int:
        """Erase the customer's rows (zeroed in place: `secure_delete`), record the customer as
        forgotten (by hash), then checkpoint the WAL and truncate it, so that neither the database
        file nor the WAL holds the id afterwards. A checkpoint that readers keep from completing
        is logged; the WAL frames are then overwritten by later checkpoints, not at once."""
        conn = self._conn()
        conn.execute("PRAGMA secure_delete=ON")
        with _immediate(conn):
            n = conn.execute("DELETE FROM contacts WHERE customer_id = ?", (customer_id,)).rowcount
            conn.execute("DELETE FROM declines WHERE customer_id = ?", (customer_id,))
            conn.execute("DELETE FROM decisions WHERE customer_id = ?", (customer_id,))
            conn.execute("DELETE FROM consents WHERE customer_id = ?", (customer_id,))
            conn.execute("DELETE FROM live_events WHERE customer_id = ?", (customer_id,))
            conn.execute("DELETE FROM outbox WHERE customer_id = ?", (customer_id,))
            conn.execute("INSERT OR REPLACE INTO forgotten VALUES (?, ?)", (forgotten_key(customer_id), time.time()))
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("forget: the WAL could not be truncated now (readers active); a later checkpoint rewrites it")
        return n

    def forgotten(self, customer_id: str) -> bool:
        row = self._conn().execute("SELECT 1 FROM forgotten WHERE key = ?", (forgotten_key(customer_id),)).fetchone()
        return row is not None

    def record_consent(self, customer_id: str, channel: str, granted: bool, ts: datetime) -> bool:
        conn = self._conn()
        with _immediate(conn):
            n = conn.execute("INSERT OR IGNORE INTO consents VALUES (?, ?, ?, ?, ?)",
                             (customer_id, channel, to_epoch(ts), int(bool(granted)), time.time())).rowcount
        return n == 1

    def append_events(self, events: list[LiveEvent]) -> int:
        """One `BEGIN IMMEDIATE` transaction: every event id is looked up, then the new ones inserted;
        a conflict rolls the whole call back."""
        events = unique_events(events)
        if not events:
            return 0
        now = time.time()
        conn = self._conn()
        with _immediate(conn):
            new = []
            for e in events:
                row = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM live_events WHERE customer_id = ? AND event_id = ?",
                                   (e.customer_id, e.event_id)).fetchone()
                if row is None:
                    new.append(e)
                elif LiveEvent(*row).content() != e.content():
                    raise EventConflict(e)
            conn.executemany(
                "INSERT INTO live_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(e.customer_id, e.event_id, e.ts, e.type, e.channel, e.category, e.product_id, e.amount, now) for e in new],
            )
        return len(new)

    def compact_events(self, until: float) -> int:
        """One `DELETE` (a full scan of the log: run at a start, not per request); the freed pages
        are reused by later events (the file does not shrink; `VACUUM` would rewrite it)."""
        conn = self._conn()
        with _immediate(conn):
            n = conn.execute("DELETE FROM live_events WHERE ts <= ?", (float(until),)).rowcount
        return n

    def live_events(self, customer_ids: list[str]) -> dict[str, tuple[LiveEvent, ...]]:
        conn = self._conn()
        out: dict[str, list[LiveEvent]] = {}
        unique = list(dict.fromkeys(customer_ids))
        for lo in range(0, len(unique), _IN_BATCH):
            part = unique[lo : lo + _IN_BATCH]
            for row in conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM live_events WHERE customer_id IN ({','.join('?' * len(part))})", part
            ):
                out.setdefault(row[1], []).append(LiveEvent(*row))
        return {c: tuple(v) for c, v in out.items()}

    def consent_changes(self, customer_ids: list[str]) -> dict[str, tuple[ConsentChange, ...]]:
        conn = self._conn()
        out: dict[str, list[ConsentChange]] = {}
        unique = list(dict.fromkeys(customer_ids))
        for lo in range(0, len(unique), _IN_BATCH):
            part = unique[lo : lo + _IN_BATCH]
            for cid, ch, ts, granted in conn.execute(
                f"SELECT customer_id, channel, ts, granted FROM consents WHERE customer_id IN ({','.join('?' * len(part))})",
                part,
            ):
                out.setdefault(cid, []).append(ConsentChange(ch, ts, bool(granted)))
        return {c: tuple(v) for c, v in out.items()}

    # ---------------------------------------------------------------- the outbox
    def _write(self, sql: str, args: tuple) -> int:
        conn = self._conn()
        with _immediate(conn):
            cur = conn.execute(sql, args)
        return cur.lastrowid if cur.rowcount == 1 and sql.startswith("INSERT") else cur.rowcount

    def outbox_claim(self, trigger_key: str, programme: str, customer_id: str, fired: datetime) -> int | None:
        t = to_epoch(fired)
        got = self._write("INSERT OR IGNORE INTO outbox (trigger_key, programme, customer_id, fired, status, updated) "
                          "VALUES (?, ?, ?, ?, 'deciding', ?)", (trigger_key, programme, customer_id, t, time.time()))
        return int(got) if got else None

    def outbox_settle(self, outbox_id: int, status: str, now: datetime, *, scheduled: datetime | None = None,
                      channel: str | None = None, offer_id: str | None = None, decision_id: str | None = None,
                      reason: str | None = None) -> None:
        self._write("UPDATE outbox SET status = ?, updated = ?, scheduled = ?, channel = ?, offer_id = ?, "
                    "decision_id = ?, reason = ? WHERE outbox_id = ?",
                    (status, to_epoch(now), None if scheduled is None else to_epoch(scheduled), channel, offer_id,
                     decision_id, reason, int(outbox_id)))

    def outbox_page(self, status: str | None, since: datetime | None, after: int, limit: int) -> list[OutboxEntry]:
        where, args = ["outbox_id > ?"], [int(after)]
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if since is not None:
            where.append("fired >= ?")
            args.append(to_epoch(since))
        rows = self._conn().execute(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE {' AND '.join(where)} ORDER BY outbox_id LIMIT ?",
            (*args, int(limit))).fetchall()
        return [OutboxEntry(*r) for r in rows]

    def outbox_ack(self, outbox_ids: list[int], status: str, now: datetime) -> dict[int, str]:
        ids = [int(i) for i in dict.fromkeys(outbox_ids)]
        out: dict[int, str] = {}
        conn = self._conn()
        with _immediate(conn):
            for lo in range(0, len(ids), _IN_BATCH):
                part = ids[lo : lo + _IN_BATCH]
                marks = ",".join("?" * len(part))
                conn.execute(f"UPDATE outbox SET status = ?, updated = ? WHERE status = 'pending' AND outbox_id IN ({marks})",
                             (status, to_epoch(now), *part))
                out.update(conn.execute(f"SELECT outbox_id, status FROM outbox WHERE outbox_id IN ({marks})", part).fetchall())
        return out

    def outbox_cancel(self, customer_id: str, before: datetime, now: datetime, reason: str) -> list[int]:
        conn = self._conn()
        with _immediate(conn):
            ids = [i for (i,) in conn.execute("SELECT outbox_id FROM outbox WHERE customer_id = ? AND status = 'pending' "
                                              "AND scheduled < ? ORDER BY outbox_id", (customer_id, to_epoch(before)))]
            if ids:
                conn.execute(f"UPDATE outbox SET status = 'cancelled', updated = ?, reason = ? "
                             f"WHERE outbox_id IN ({','.join('?' * len(ids))})", (to_epoch(now), reason, *ids))
        return ids

    def outbox_prune(self, now: datetime, retention_days: float) -> int:
        marks = ",".join("?" * len(OUTBOX_SETTLED))
        return int(self._write(f"DELETE FROM outbox WHERE updated < ? AND status IN ({marks})",
                               (to_epoch(now) - retention_days * DAY, *OUTBOX_SETTLED)))

    def lease(self, name: str, owner: str, seconds: float) -> bool:
        now = time.time()
        conn = self._conn()
        with _immediate(conn):
            held = conn.execute("SELECT owner, until FROM leases WHERE name = ?", (name,)).fetchone()
            mine = held is None or held[0] == owner or held[1] <= now
            if mine:
                conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (name, owner, now + seconds))
        return mine

    def release(self, name: str, owner: str) -> None:
        self._write("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def outbox_rows(self, customer_id: str) -> list[OutboxEntry]:
        return [OutboxEntry(*r) for r in self._conn().execute(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE customer_id = ? ORDER BY outbox_id", (customer_id,))]

    def export(self, customer_id: str) -> dict[str, list[dict[str, object]]]:
        conn = self._conn()
        decisions = [
            {
                "decision_id": d,
                "customer_id": c,
                "channel": ch,
                "ts": from_epoch(ts),
                "n_offers": n,
                "model_versions": json.loads(mv),
                "no_offer": no,
                "no_offer_propensity": np_,
            }
            for d, c, ch, ts, n, mv, no, np_ in conn.execute(
                "SELECT decision_id, customer_id, channel, ts, n_offers, model_versions, no_offer, no_offer_propensity"
                " FROM decisions WHERE customer_id = ? ORDER BY ts, decision_id", (customer_id,)
            )
        ]
        consents = [ConsentChange(ch, ts, bool(g)) for ch, ts, g in conn.execute(_CUSTOMER_CONSENTS, (customer_id,))]
        events = [LiveEvent(*r) for r in conn.execute(_CUSTOMER_EVENTS, (customer_id,))]
        return {"decisions": decisions, "contacts": self.contact_rows(customer_id), "consents": consent_records(consents),
                "events": event_records(events), "outbox": outbox_records(self.outbox_rows(customer_id))}

    def contact_rows(self, customer_id: str) -> list[dict[str, object]]:
        return [_row(r) for r in self._conn().execute(_CUSTOMER_ROWS, (customer_id,)) if r[6] != IMPORTED_RANK]

    def read_customer(self, customer_id: str, now: datetime) -> CustomerState:
        """The contact rows and the history in one read transaction (one snapshot), the history
        taken from the rows read for the features instead of a second query of `contacts`."""
        t = to_epoch(now)
        since = t - self.horizon_days * DAY
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            raw = conn.execute(_CUSTOMER_ROWS, (customer_id,)).fetchall()
            declines = self._declines(conn, customer_id, since)
            forgotten = conn.execute("SELECT 1 FROM forgotten WHERE key = ?", (forgotten_key(customer_id),)).fetchone()
            consents = tuple(ConsentChange(ch, ts, bool(g)) for ch, ts, g in conn.execute(_CUSTOMER_CONSENTS, (customer_id,)))
            events = tuple(LiveEvent(*r) for r in conn.execute(_CUSTOMER_EVENTS, (customer_id,)))
        finally:
            conn.execute("COMMIT")
        return _state(customer_id, t, since, raw, declines, forgotten is not None, consents, events)

    def read_customers(self, customer_ids: list[str], now: datetime) -> list[CustomerState]:
        """`read_customer` of each customer, all in one read transaction and one query per table
        (five in all, instead of five per customer): the rows come back in the order the
        one-customer queries give them (their index order), so every state is the same."""
        t = to_epoch(now)
        since = t - self.horizon_days * DAY
        ids = list(dict.fromkeys(customer_ids))
        raw: dict[str, list[tuple]] = {}
        declines: dict[str, list[tuple]] = {}
        consents: dict[str, list[ConsentChange]] = {}
        events: dict[str, list[LiveEvent]] = {}
        erased: set[str] = set()
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            for lo in range(0, len(ids), _IN_BATCH):
                part = ids[lo : lo + _IN_BATCH]
                marks = ",".join("?" * len(part))
                for r in conn.execute(f"SELECT * FROM contacts WHERE customer_id IN ({marks}) "
                                      "ORDER BY customer_id, ts, decision_id, rank", part):
                    raw.setdefault(r[2], []).append(r)
                for cid, *rest in conn.execute(f"SELECT customer_id, offer_id, category, ts FROM declines "
                                               f"WHERE customer_id IN ({marks}) AND ts > ? ORDER BY customer_id, ts",
                                               (*part, since)):
                    declines.setdefault(cid, []).append(rest)
                keys = {forgotten_key(c): c for c in part}
                erased.update(keys[k] for (k,) in conn.execute(f"SELECT key FROM forgotten WHERE key IN ({marks})", list(keys)))
                for cid, ch, ts, g in conn.execute(f"SELECT customer_id, channel, ts, granted FROM consents WHERE customer_id "
                                                   f"IN ({marks}) ORDER BY customer_id, channel, ts, granted", part):
                    consents.setdefault(cid, []).append(ConsentChange(ch, ts, bool(g)))
                for r in conn.execute(f"SELECT {_EVENT_COLUMNS} FROM live_events WHERE customer_id IN ({marks}) "
                                      "ORDER BY customer_id, event_id", part):
                    events.setdefault(r[1], []).append(LiveEvent(*r))
        finally:
            conn.execute("COMMIT")
        return [_state(cid, t, since, raw.get(cid, ()), _last_declines(declines.get(cid, ())), cid in erased,
                       tuple(consents.get(cid, ())), tuple(events.get(cid, ()))) for cid in customer_ids]

    def contact_rows_many(self, customer_ids: list[str]) -> dict[str, list[dict[str, object]]]:
        conn = self._conn()
        out: dict[str, list[dict[str, object]]] = {}
        unique = list(dict.fromkeys(customer_ids))
        for lo in range(0, len(unique), _IN_BATCH):
            part = unique[lo : lo + _IN_BATCH]
            for d, o, c, cat, ch, ts, rank, p, outcome, ots in conn.execute(
                f"SELECT * FROM contacts WHERE customer_id IN ({','.join('?' * len(part))}) AND rank != ? "
                "ORDER BY customer_id, ts, decision_id, rank",
                (*part, IMPORTED_RANK),
            ):
                out.setdefault(c, []).append({
                    "decision_id": d, "offer_id": o, "customer_id": c, "category": cat, "channel": ch,
                    "ts": from_epoch(ts), "rank": rank, "propensity": p, "outcome": outcome,
                    "outcome_ts": None if ots is None else from_epoch(ots),
                })
        return out

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None and self._checkpointer is not threading.current_thread():
            self._checkpointer.join(timeout=5)
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


def _last_declines(rows: Iterable[tuple]) -> tuple[dict[str, float], dict[str, float]]:
    """The last decline per offer and per category of (offer_id, category, ts) rows."""
    last_offer: dict[str, float] = {}
    last_cat: dict[str, float] = {}
    for offer_id, category, ts in rows:
        last_offer[offer_id] = max(ts, last_offer.get(offer_id, ts))
        last_cat[category] = max(ts, last_cat.get(category, ts))
    return last_offer, last_cat


def _state(customer_id: str, t: float, since: float, raw: Sequence[tuple],
           declines: tuple[dict[str, float], dict[str, float]], forgotten: bool,
           consents: tuple[ConsentChange, ...], events: tuple[LiveEvent, ...]) -> CustomerState:
    """A customer's state from its `contacts` rows (all columns, table order): nbo's own rows for
    the features, the history (rows after `since`, imported shows included) for the caps."""
    # The columns of `_history`'s query: decision_id, offer_id, category, channel, ts.
    recent = tuple(ContactRecord(r[0], r[1], r[3], r[4], r[5]) for r in raw if r[5] > since)
    return CustomerState([_row(r) for r in raw if r[6] != IMPORTED_RANK],
                         ContactHistory(customer_id, t, recent, *declines), forgotten, consents, events)


def _row(r: tuple) -> dict[str, object]:
    """A `contacts` row (all columns, table order) as `contact_rows` returns it."""
    d, o, c, cat, ch, ts, rank, p, out, ots = r
    return {
        "decision_id": d,
        "offer_id": o,
        "customer_id": c,
        "category": cat,
        "channel": ch,
        "ts": from_epoch(ts),
        "rank": rank,
        "propensity": p,
        "outcome": out,
        "outcome_ts": None if ots is None else from_epoch(ots),
    }

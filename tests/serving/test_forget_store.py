"""Stores record erased customers so every worker forgets them (issue 19 item 5), in both stores:
a real SQLite file and the private redis-server. The record holds a hash, never the id."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from serving.contact_store import OfferRef, SQLiteContactStore
from serving.contact_store.base import forgotten_key
from serving.policy import ContactPolicy
from tests.serving.conftest import StoreFactory

T0 = datetime(2026, 3, 2, 12, 0)
A = OfferRef("o-a", "travel")


def test_forget_is_reported_by_every_reader_of_the_store(make_store: StoreFactory) -> None:
    store = make_store()
    store.check_and_reserve("c-gone-1", "web", [A], T0, ContactPolicy(), "d-gone-1", {"o-a": 0.5})
    store.check_and_reserve("c-kept-1", "web", [A], T0, ContactPolicy(), "d-kept-1", {"o-a": 0.5})
    assert not store.read_customer("c-gone-1", T0).forgotten and not store.forgotten("c-gone-1")
    assert store.forget("c-gone-1") == 1
    state = store.read_customer("c-gone-1", T0)
    assert state.forgotten and store.forgotten("c-gone-1") and state.rows == [] and state.history.contacts == ()
    assert not store.read_customer("c-kept-1", T0).forgotten and store.read_customer("c-kept-1", T0).rows
    assert not store.forgotten("c-never-seen")


def test_sqlite_forget_leaves_no_byte_of_the_id_in_file_or_wal(tmp_path: Path) -> None:
    path = tmp_path / "contacts.db"
    store = SQLiteContactStore(path)
    reader = SQLiteContactStore(path)  # another connection, as another worker would hold
    cid = "c-wal-secret-4711"
    for i in range(5):
        store.check_and_reserve(cid, "web", [A], T0, ContactPolicy(), f"d-wal-{i}", {"o-a": 0.5})
    reader.read_customer(cid, T0)
    files = [path, Path(f"{path}-wal")]
    assert cid.encode() in b"".join(p.read_bytes() for p in files if p.exists())
    store.forget(cid)
    held = b"".join(p.read_bytes() for p in files if p.exists())
    assert cid.encode() not in held
    assert forgotten_key(cid).encode() in held and reader.forgotten(cid)
    store.close()
    reader.close()

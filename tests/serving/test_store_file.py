"""A SQLite contact store whose file is deleted or replaced while open fails closed (issue 19 item 2).

Before: `rm contacts.db*` while serving let decisions go on into the unlinked file (gone at the
next restart) and a new connection (a batch run, a new thread) created an empty database, so caps
restarted from zero. Now every call checks the file is the one opened and raises a store error.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path

import pytest

from serving.contact_store import OfferRef, SQLiteContactStore
from serving.contact_store.errors import STORE_ERRORS, StoreFileChanged, store_cause
from serving.policy import ContactPolicy

T0 = datetime(2026, 3, 2, 12, 0)
A = OfferRef("o-a", "travel")


def _reserve(store: SQLiteContactStore, decision_id: str):  # noqa: ANN202
    return store.check_and_reserve("c1", "sms", [A], T0, ContactPolicy(), decision_id, {"o-a": 0.5})


def _remove_all(path: Path) -> None:
    for p in path.parent.glob(path.name + "*"):  # what `rm contacts.db*` removes: the file, -wal, -shm
        p.unlink()


def _in_thread(fn):  # noqa: ANN001, ANN202
    """Run `fn` on a new thread (a new SQLite connection); its exception or result."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            out.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out[0]


def test_a_deleted_store_file_raises_a_store_error_and_is_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "contacts.db"
    store = SQLiteContactStore(path)
    try:
        assert _reserve(store, "d1").ok
        assert store.history("c1", T0).channel_count(["sms"], 14) == 1
        _remove_all(path)
        for call in (lambda: _reserve(store, "d2"), lambda: store.history("c1", T0),
                     lambda: store.read_customer("c1", T0), lambda: store.contact_rows("c1"),
                     lambda: store.record_outcome("d1", "o-a", "accepted", T0), lambda: store.export("c1")):
            with pytest.raises(StoreFileChanged, match="was deleted while open") as info:
                call()
            assert isinstance(info.value, STORE_ERRORS) and store_cause(info.value) == "error"
        got = _in_thread(lambda: _reserve(store, "d3"))  # a new connection would have created the file
        assert isinstance(got, StoreFileChanged)
        assert not list(tmp_path.glob("contacts.db*")), "the store recreated its file"
    finally:
        store.close()


def test_a_replaced_store_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "contacts.db"
    store = SQLiteContactStore(path)
    other = SQLiteContactStore(tmp_path / "other.db")
    other.close()
    try:
        assert _reserve(store, "d1").ok
        os.replace(tmp_path / "other.db", path)  # another (empty) database renamed over it
        with pytest.raises(StoreFileChanged, match="replaced by another file"):
            _reserve(store, "d2")
    finally:
        store.close()


def test_a_store_reopened_on_a_new_file_works(tmp_path: Path) -> None:
    """After the operator restarts nbo on a new file, it is the new file's store (no false alarm)."""
    path = tmp_path / "contacts.db"
    store = SQLiteContactStore(path)
    assert _reserve(store, "d1").ok
    store.close()
    _remove_all(path)
    again = SQLiteContactStore(path)
    try:
        assert _reserve(again, "d1").ok
        # a new thread's connection opens the same new file: it sees d1 (sms cap 1 per 14 days)
        assert _in_thread(lambda: _reserve(again, "d2")).refused == (("o-a", "cap_channel"),)
    finally:
        again.close()

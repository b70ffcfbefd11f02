"""Validated tables kept between the processes of a service start: a data directory read once.

`nbo serve` checks the offers, consents and contacts tables; each of its workers then read and
validated them again, and the customers and events tables too (on the demo world ~0.8 s of CPU
per worker: parsing, validating, sorting 481,000 events by customer). `load_table_cached` keeps
the result of `nbo.data.load_table` (and of an optional `prepare` step) as a pickle under a cache
directory (`nbo serve`: `STATE_DIR/tables`); the next process that asks for the same table of the
same file loads the pickle (~0.02 s).

A pickle is used only for the file it was made from: its name and content carry a key of the
file's absolute path, size, modification time (ns) and inode, the table, the `variant` (what
`prepare` did) and a hash of the code that reads and validates tables (`nbo/contract.py`,
`nbo/data.py`, `nbo/validation.py`): a changed file or a changed reader is read again, and a
table that fails validation is never cached. The files are written by nbo into the service's own
state directory (the same trust as the champions and compiled forests next to them).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from nbo.data import find_table_file, load_table

log = logging.getLogger(__name__)

#: The modules whose code decides what `load_table` returns.
_READER_MODULES = ("contract.py", "data.py", "validation.py")


@functools.cache
def reader_fingerprint() -> str:
    """A hash of the table-reading code (a cached table made by other code is not used)."""
    digest = hashlib.sha256()
    for name in _READER_MODULES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


def _key(path: Path, table: str, variant: str) -> str:
    st = path.stat()
    raw = f"{path.resolve()}\n{st.st_size}\n{st.st_mtime_ns}\n{st.st_ino}\n{table}\n{variant}\n{reader_fingerprint()}"
    return hashlib.sha256(raw.encode()).hexdigest()


def load_table_cached(directory: Path | str, table: str, cache_dir: Path | None, *, variant: str = "",
                      prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                      defer: list[Callable[[], None]] | None = None) -> pd.DataFrame:
    """`prepare(load_table(directory, table))` (`prepare` optional), from `cache_dir` when an
    earlier call cached it for the same file and code; else computed, then cached. `variant` names
    what `prepare` does (one cache entry per variant). `cache_dir` None: no cache. `defer`: append
    the cache write to this list instead of writing now (a command that may still refuse to start
    writes nothing until its checks have passed)."""
    if cache_dir is None:
        frame = load_table(directory, table)
        return prepare(frame) if prepare is not None else frame
    path = find_table_file(Path(directory), table)
    key = _key(path, table, variant)
    stem = f"{table}-{variant}" if variant else table
    cached = Path(cache_dir) / f"{stem}-{key[:32]}.pkl"
    try:
        with open(cached, "rb") as handle:
            stored = pickle.load(handle)  # noqa: S301 - written below, into the service's own state dir
        if isinstance(stored, dict) and stored.get("key") == key and isinstance(stored.get("frame"), pd.DataFrame):
            return stored["frame"]
    except FileNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - a damaged cache file: read the table instead
        log.warning("cached %s table unreadable (%s): reading %s", table, type(exc).__name__, path.name)
    frame = load_table(directory, table)
    if prepare is not None:
        frame = prepare(frame)
    if defer is None:
        _store(Path(cache_dir), cached, stem, key, frame)
    else:
        defer.append(lambda: _store(Path(cache_dir), cached, stem, key, frame))
    return frame


def _store(cache_dir: Path, cached: Path, stem: str, key: str, frame: pd.DataFrame) -> None:
    """Write the cache file whole (a temporary name, then renamed); drop older ones of the table."""
    partial = None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=f".{cached.name}.", dir=cache_dir)
        with os.fdopen(fd, "wb") as handle:
            pickle.dump({"key": key, "frame": frame}, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, cached)
        partial = None
        same_table = re.compile(rf"{re.escape(stem)}-[0-9a-f]{{32}}\.pkl")
        for old in cache_dir.glob(f"{stem}-*.pkl"):
            if old != cached and same_table.fullmatch(old.name):
                old.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not cache the %s table: %s", stem, exc.strerror or exc)
    finally:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)

"""The ledger of files nbo wrote that hold personal data, so that `nbo forget` can reach them.

Every command that writes customer-level rows (`nbo features`, `nbo score` with its work directory
and feature cache, `nbo predict`) appends one JSON line per output to the ledger before writing
it: `{"path": absolute path, "kind": what it is, "ts": when}`. `nbo export` lists and `nbo forget`
erases the customer's rows in every file the ledger names that still exists, and reports what it
could not reach (unreadable, or not a table). A copy made outside nbo is the user's to erase.

The ledger is a plain file, by default `nbo-outputs.jsonl` in the working directory (beside
`mlflow.db`); every command takes `--ledger` to point elsewhere. Appends are single `write` calls
of one line each (atomic for lines under the pipe buffer size on POSIX), so concurrent commands
do not interleave lines.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nbo.errors import NboError

DEFAULT_LEDGER = Path("nbo-outputs.jsonl")
#: What an entry may be: a table file (Parquet or CSV), or a directory of Parquet parts.
KINDS = ("features", "features_cache", "batch_output", "batch_work_dir", "predictions")


@dataclass(frozen=True)
class LedgerEntry:
    path: Path
    kind: str


def record_output(ledger: Path, path: Path, kind: str) -> None:
    """Append `path` (made absolute, links not followed) to the ledger, before it is written."""
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    line = json.dumps({"path": str(Path(os.path.abspath(path))), "kind": kind,
                       "ts": datetime.now(UTC).isoformat(timespec="seconds")}) + "\n"
    try:
        fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        raise NboError(f"--ledger {ledger}: cannot append ({exc.strerror})") from None
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_ledger(ledger: Path) -> list[LedgerEntry]:
    """Entries of the ledger, each path once (the latest kind), in first-recorded order. A missing
    ledger is empty; a line that is not an entry is an error (a hand-edited ledger must not
    silently hide a file from `nbo forget`)."""
    if not ledger.exists():
        return []
    entries: dict[Path, LedgerEntry] = {}
    for n, line in enumerate(ledger.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            entry = LedgerEntry(Path(raw["path"]), str(raw["kind"]))
        except (ValueError, KeyError, TypeError):
            raise NboError(f"--ledger {ledger}: line {n} is not a ledger entry") from None
        entries[entry.path] = entry
    return list(entries.values())

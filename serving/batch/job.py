"""What a batch run decides (`BatchJob`) and the ids that make a re-run find its own decisions."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from features import materialised_meta
from nbo.errors import NboError
from nbo.vocab import CONTACT_CHANNELS

MAX_K = 20


class BatchJob(BaseModel):
    """What a run decides; two runs with equal jobs are the same run (resume / ledger)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    campaign: str = Field(min_length=1, max_length=128)
    channel: str
    as_of: datetime  # the decision time `now` (naive UTC)
    k: int = Field(1, ge=1, le=MAX_K)
    dry_run: bool = False
    engine: Literal["pandas", "spark"] = "pandas"
    chunk_rows: int = Field(2_000, ge=1)
    segment: str | None = None
    customers_digest: str | None = None  # sha256 of the sorted --customers ids
    features: str  # fingerprint of the features file (path, size, mtime, as_of)


def decision_id_for(campaign: str, customer_id: str, channel: str) -> str:
    """Deterministic decision id of a campaign's contact: a re-run finds it in the store."""
    text = f"{campaign}\x1f{customer_id}\x1f{channel}".encode("utf-8", "surrogatepass")
    return "b" + hashlib.blake2b(text, digest_size=16).hexdigest()


def customers_digest(ids: Iterable[str] | None) -> str | None:
    if ids is None:
        return None
    h = hashlib.sha256()
    for cid in sorted(ids):
        h.update(cid.encode("utf-8", "surrogatepass") + b"\n")
    return h.hexdigest()


def features_fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{materialised_meta(path)['as_of']}"


def check_channel(channel: str) -> str:
    if channel not in CONTACT_CHANNELS:
        raise NboError(f"--channel {channel!r} is not one of {', '.join(CONTACT_CHANNELS)}")
    return channel

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
    #: What every customer of the campaign faces per offer, {offer_id: {name: value}}
    #: (`--offer-attributes`); None: no decision-time attributes.
    offer_attributes: dict[str, dict[str, float]] | None = None


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


def read_offer_attributes(path: Path, offer_ids: Iterable[str]) -> dict[str, dict[str, float]]:
    """`--offer-attributes FILE` (CSV or Parquet): one row per offer, `offer_id` and `attr_<name>`
    columns, every cell a finite number >= 0. Any fault: `NboError`, one line naming the column."""
    import math

    import pandas as pd

    from features.offer_attributes import check_offer_attributes
    from nbo.contract import ATTRIBUTE_PREFIX

    if not path.is_file():
        raise NboError(f"--offer-attributes {path} is not a file")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file: one line
        raise NboError(f"--offer-attributes {path.name}: not a readable CSV or Parquet file ({type(exc).__name__})") from None
    names = [c for c in frame.columns if str(c).startswith(ATTRIBUTE_PREFIX)]
    if "offer_id" not in frame.columns or not names:
        raise NboError(f"--offer-attributes {path.name}: needs an offer_id column and attr_<name> columns")
    if frame["offer_id"].duplicated().any():
        raise NboError(f"--offer-attributes {path.name}: offer {frame['offer_id'][frame['offer_id'].duplicated()].iloc[0]!r} twice")
    out: dict[str, dict[str, float]] = {}
    for _, row in frame.iterrows():
        given: dict[str, float] = {}
        for col in names:
            raw = row[col]
            if isinstance(raw, str) and raw.strip() == "":
                raw = "nan"  # an empty cell: missing
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise NboError(f"--offer-attributes {path.name}: {col} of offer {row['offer_id']!r} is not a number") from None
            if math.isnan(value):
                raise NboError(f"--offer-attributes {path.name}: {col} is missing for offer {row['offer_id']!r} "
                               "(give every attribute for every listed offer)")
            given[col[len(ATTRIBUTE_PREFIX):]] = value
        out[str(row["offer_id"])] = given
    try:
        check_offer_attributes(out, list(offer_ids), field="--offer-attributes")
    except NboError as exc:
        raise NboError(f"{exc} ({path.name})") from None
    return out


def check_channel(channel: str) -> str:
    if channel not in CONTACT_CHANNELS:
        raise NboError(f"--channel {channel!r} is not one of {', '.join(CONTACT_CHANNELS)}")
    return channel

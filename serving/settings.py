"""Where the decision engine's inputs live, loaded once at the edge (CLI or service start), and
how a store specification becomes a contact store."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from models.tracking import CHURN_MODEL, PROPENSITY_MODEL, UPLIFT_MODEL
from nbo.errors import NboError
from serving.contact_store.base import ContactStore
from serving.contact_store.sqlite_store import SQLiteContactStore


class EngineSettings(BaseModel):
    """Where the engine's inputs live; loaded once at the edge (CLI or service start)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path
    features_path: Path = Field(description="A materialised features file, or a directory: the latest file in it")
    tracking_uri: str | None = None
    policy_path: Path | None = Field(None, description="policy.toml; None = the default policy")
    store: str = Field("nbo-contacts.db", description="SQLite file path, or redis://host:port/db")
    store_horizon_days: int = Field(90, ge=1)
    propensity_model: str = PROPENSITY_MODEL
    churn_model: str = CHURN_MODEL
    uplift_model: str = Field(UPLIFT_MODEL, description="loaded (and required) only when the policy's "
                              "arbitration.objective is uplift")
    alias: str = "champion"
    explain: Literal["path", "shap"] = Field("path", description="reasons from path attributions (fast) or TreeSHAP")
    store_timeout_s: float | None = Field(
        None, gt=0, description="longest wait on the store per call (SQLite busy timeout, Redis socket timeout); None = the store's default"
    )
    store_retry_s: float = Field(1.0, ge=0, description="after a store failure, answer degraded without trying for this long")
    store_checkpoint_s: float | None = Field(
        None, gt=0, description="SQLite: checkpoint the WAL from a background thread this often (s); None = on the committing call (SQLite's default)"
    )
    store_cache_mib: int = Field(
        64, ge=1, description="SQLite: page cache per connection (MiB; heap each connection fills with the pages it "
        "writes); the service uses less (cli/serve.py)"
    )
    compile_models: bool = Field(True, description="score with the champions compiled by lleaves (checked against the booster)")
    compiled_cache: Path | None = Field(None, description="directory for compiled champions shared by processes; None = compile in memory")
    prepared_champions: Path | None = Field(
        None, description="directory of champions prepared by earlier loads (models.prepared): a start reads the "
        "registry's SQLite file and these pickles instead of MLflow when it can; None = always MLflow")
    table_cache: Path | None = Field(
        None, description="directory where the data's tables, read and validated once, are kept for the other "
        "processes and the next start (nbo.table_cache); None = each process reads the files")
    live_max_past_days: float = Field(
        365.0, gt=0, description="POST /consents and /events: a time more than this many days before now is refused (422)"
    )
    live_max_skew_s: float = Field(
        300.0, ge=0, description="POST /consents and /events: a time more than this many seconds after now is refused (422)"
    )
    live_refresh_s: float = Field(
        60.0, gt=0, description="a customer's live feature row (events posted while nbo runs) is recomputed at least this often (s)"
    )
    seed_history: bool = Field(True, description="import the data's contact history into the store at start "
                               "(`nbo serve` does it once before its workers start, which then skip it)")


def latest_features_file(path: Path) -> Path:
    """`path` itself, or the materialised file with the latest `nbo.as_of` under a directory."""
    path = Path(path)
    if not path.is_dir():
        return path
    best: tuple[pd.Timestamp, Path] | None = None
    for candidate in sorted(path.glob("*.parquet")):
        try:
            meta = pq.read_schema(candidate).metadata or {}
        except (OSError, ValueError):
            continue
        raw = meta.get(b"nbo.as_of")
        if raw is None:
            continue
        when = pd.Timestamp(raw.decode())
        if best is None or when > best[0]:
            best = (when, candidate)
    if best is None:
        raise NboError(f"no materialised features (*.parquet written by `nbo features`) under {path}")
    return best[1]


def open_store(
    spec: str, horizon_days: int = 90, timeout_s: float | None = None, checkpoint_s: float | None = None,
    cache_mib: int = 64,
) -> ContactStore:
    """`redis://...` -> RedisContactStore, anything else -> a SQLite file at that path.

    `timeout_s` bounds every store call (the online service: a request must answer within its own
    timeout even when the store hangs): SQLite's busy timeout, Redis' connect and socket timeouts,
    and no Redis retries (redis-py retries 10 times with back-off by default). None keeps the
    stores' defaults (command-line tools, which may wait). `checkpoint_s`: SQLite's WAL checkpoints
    from a background thread at this interval instead of on the committing call (the service).
    `cache_mib`: SQLite's page cache per connection.
    """
    if spec.startswith(("redis://", "rediss://", "unix://")):
        import redis

        from serving.contact_store.redis_store import RedisContactStore

        if timeout_s is None:
            return RedisContactStore(url=spec, horizon_days=horizon_days)
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(
            spec, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return RedisContactStore(client, horizon_days=horizon_days)
    path = Path(spec.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    if timeout_s is None:
        return SQLiteContactStore(path, horizon_days=horizon_days, checkpoint_interval_s=checkpoint_s, cache_mib=cache_mib)
    return SQLiteContactStore(path, horizon_days=horizon_days, busy_timeout_s=timeout_s, checkpoint_interval_s=checkpoint_s,
                              cache_mib=cache_mib)

"""The service's configuration, read once per worker at the edge: `ServiceSettings` (JSON in
`NBO_SERVICE_SETTINGS`, written by `nbo serve`) and the API keys (`NBO_API_KEYS`,
`NBO_API_KEYS_FILE`). Nothing is read at import time. See docs/service.md §3.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nbo.errors import ConfigError

SETTINGS_ENV = "NBO_SERVICE_SETTINGS"
KEYS_ENV = "NBO_API_KEYS"
KEYS_FILE_ENV = "NBO_API_KEYS_FILE"
#: Shortest API key accepted: a key is a secret, not a password to remember (docs/service.md §3).
MIN_KEY_CHARS = 16


class ServiceSettings(BaseModel):
    """Everything the service needs besides the API keys; JSON in `NBO_SERVICE_SETTINGS`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: dict[str, Any]
    reload_interval_s: float = Field(60.0, gt=0)
    max_body_bytes: int = Field(16 * 1024, ge=256)
    #: `POST /events` (batches of up to `api_models.MAX_EVENTS_PER_BODY` events): its own limit.
    max_events_body_bytes: int = Field(1024 * 1024, ge=256)
    state_dir: Path = Path(".nbo-service")
    #: Simulated clock: `now = clock_start + (wall time - clock_anchor)`; None = the real UTC clock.
    clock_start: datetime | None = None
    clock_anchor: float | None = None
    warmup_customers: int = Field(20, ge=0)
    #: BentoML's per-request timeout (`--timeout`); a body must arrive within a share of it (408).
    request_timeout_s: float = Field(2.0, gt=0)
    #: Most /recommend requests of a worker decided in one pass of the pipeline (`serving.guard.Batcher`;
    #: 1: one at a time). Blocks form only from requests that arrive while the worker decides.
    max_batch: int = Field(32, ge=1, le=256)

    @classmethod
    def from_env(cls) -> ServiceSettings:
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise RuntimeError(f"{SETTINGS_ENV} is not set: start the service with `nbo serve`")
        return cls.model_validate_json(raw)

    def now(self) -> datetime:
        if self.clock_start is None:
            return datetime.now(UTC).replace(tzinfo=None)
        start = self.clock_start if self.clock_start.tzinfo is None else self.clock_start.astimezone(UTC).replace(tzinfo=None)
        return start + timedelta(seconds=time.time() - (self.clock_anchor or time.time()))


def load_api_keys(environ: dict[str, str] | None = None) -> tuple[bytes, ...]:
    """API keys from `NBO_API_KEYS` (comma-separated) and/or the file `NBO_API_KEYS_FILE` (one per line).

    In the file, blank lines and lines whose first non-blank character is `#` are ignored (an
    indented comment is a comment, not a key). A key shorter than `MIN_KEY_CHARS` raises
    `ConfigError` naming where it is (never the key itself).
    """
    env = os.environ if environ is None else environ
    found: list[tuple[str, str]] = []  # (where, key)
    for n, item in enumerate(env.get(KEYS_ENV, "").split(","), start=1):
        if item.strip():
            found.append((f"{KEYS_ENV} item {n}", item.strip()))
    path = env.get(KEYS_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{KEYS_FILE_ENV} {path} cannot be read: {type(exc).__name__}") from None
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                found.append((f"{KEYS_FILE_ENV} {path} line {n}", line.strip()))
    for where, key in found:
        if len(key) < MIN_KEY_CHARS:
            raise ConfigError(
                f"{where}: API key shorter than {MIN_KEY_CHARS} characters ({len(key)}); use a random key, "
                "e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'"
            )
    return tuple(key.encode() for _, key in found)

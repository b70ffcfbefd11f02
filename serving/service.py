"""The real-time service (BentoML 1.4): a thin HTTP layer over `serving.engine.DecisionEngine`.

Started by `nbo serve` (cli/serve.py), which passes the settings in the environment:
`NBO_SERVICE_SETTINGS` (JSON of `ServiceSettings`) and the API keys in `NBO_API_KEYS` or
`NBO_API_KEYS_FILE`. Nothing is read at import time; each worker reads them once, in
`Recommender.__init__` and `Guard.__init__`. See docs/service.md.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from nbo.errors import ConfigError
from nbo.vocab import ContactChannel
from serving.decision import ShownOffer, Suppressed

log = logging.getLogger("nbo.service")

SETTINGS_ENV = "NBO_SERVICE_SETTINGS"
KEYS_ENV = "NBO_API_KEYS"
KEYS_FILE_ENV = "NBO_API_KEYS_FILE"
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
JSON_PATHS = frozenset({"/recommend", "/feedback", "/forget", "/admin/reload"})
#: The service instance of this worker, for the Guard's fast path (set in `Recommender.__init__`).
_WORKER: dict[str, Any] = {}
_JSON_HEADERS = [(b"content-type", b"application/json")]
#: Shortest API key accepted: a key is a secret, not a password to remember (docs/service.md §3).
MIN_KEY_CHARS = 16
#: Share of the request timeout (`--timeout`) a client gets to send its body; then 408, so a
#: stalled upload is the client's error (408), not the service's (BentoML's 504 at the timeout).
BODY_TIMEOUT_SHARE = 0.75
#: How often a worker checks that its supervisor (BentoML's arbiter) still lives, and how long it
#: waits for its own graceful shutdown before it exits regardless (docs/service.md §2).
SUPERVISOR_CHECK_S = 0.5
ORPHAN_GRACE_S = 5.0
#: What /readyz trusts without asking the store again: the outcome of a store call this recent.
STORE_FRESH_S = 1.0
#: The customer id /readyz reads from the store when it has to ask (never a real id: nothing found).
PROBE_ID = "__nbo_readiness_probe__"


# ------------------------------------------------------------------------------ request models
class _Strict(BaseModel):
    # strict: "3" is not a k; forbid: a misspelt field is an error, not a silent default;
    # hide_input_in_errors: error messages (and logs) never echo the customer's data.
    model_config = ConfigDict(strict=True, extra="forbid", hide_input_in_errors=True)


class RequestContext(_Strict):
    page_category: StrictStr | None = Field(None, max_length=64)
    session_categories: list[Annotated[StrictStr, Field(max_length=64)]] = Field(default_factory=list, max_length=50)
    device: Literal["desktop", "mobile", "tablet", "unknown"] | None = None
    hour_of_day: StrictInt | None = Field(None, ge=0, le=23)
    day_of_week: StrictInt | None = Field(None, ge=0, le=6)


class RecommendRequest(_Strict):
    customer_id: StrictStr = Field(min_length=1, max_length=128)
    channel: ContactChannel
    k: StrictInt = Field(3, ge=1, le=20)
    context: RequestContext | None = None


class FeedbackRequest(_Strict):
    decision_id: StrictStr = Field(min_length=1, max_length=128)
    offer_id: StrictStr = Field(min_length=1, max_length=128)
    outcome: Literal["accepted", "declined", "ignored", "clicked"]


class ForgetRequest(_Strict):
    customer_id: StrictStr = Field(min_length=1, max_length=128)


class ReloadRequest(_Strict):
    force: bool = False


# ------------------------------------------------------------------------------ response models
# The engine's own models, so an answer is built from the decision's objects without copying or
# validating ~35 of them again (measured, docs/service.md §7).
OfferOut = ShownOffer
SuppressedOut = Suppressed


class RecommendResponse(BaseModel):
    decision_id: str
    customer_id: str
    channel: str
    offers: list[OfferOut]
    suppressed: list[SuppressedOut]
    model_version: str
    model_versions: dict[str, str]
    fallback: bool
    degraded: bool = False


class FeedbackResponse(BaseModel):
    decision_id: str
    offer_id: str
    outcome: str
    recorded: bool
    #: Set on the 404 answer, so that it is also the documented `NotFound` error body.
    error: str | None = None


class ForgetResponse(BaseModel):
    customer_id: str
    erased_shows: int


class ReloadResponse(BaseModel):
    changed: bool
    ok: bool
    message: str
    versions: dict[str, str]


# ------------------------------------------------------------------------------ settings
class ServiceSettings(BaseModel):
    """Everything the service needs besides the API keys; JSON in `NBO_SERVICE_SETTINGS`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: dict[str, Any]
    reload_interval_s: float = Field(60.0, gt=0)
    max_body_bytes: int = Field(16 * 1024, ge=256)
    state_dir: Path = Path(".nbo-service")
    #: Simulated clock: `now = clock_start + (wall time - clock_anchor)`; None = the real UTC clock.
    clock_start: datetime | None = None
    clock_anchor: float | None = None
    warmup_customers: int = Field(20, ge=0)
    #: BentoML's per-request timeout (`--timeout`); a body must arrive within a share of it (408).
    request_timeout_s: float = Field(2.0, gt=0)

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


# ------------------------------------------------------------------------------ guard middleware
_GUARD_ANSWERS = {
    "401": "missing or invalid API key (Authorization: Bearer <key>)",
    "413": "body larger than the configured limit",
    "503": "contact store unavailable: nothing recorded, retry (Retry-After)",
}


def corrected_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document as the service really answers.

    BentoML's document says `InvalidArgument.detail` is a string (it is pydantic's list of errors),
    does not mark request bodies required (a POST without a body is a 400), and cannot know the
    answers of the `Guard` (401, 413) or the store's 503.
    """
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    invalid = schemas.get("InvalidArgument", {}).get("properties", {})
    if "detail" in invalid:
        invalid["detail"] = {
            "title": "Error Detail",
            "description": "what was wrong, per field: `loc` names the field",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}],
        }
    schemas["GuardError"] = {"title": "GuardError", "type": "object", "required": ["error"],
                             "properties": {"error": {"title": "Message", "type": "string"}}}
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/GuardError"}}}}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation or path in PUBLIC_PATHS:
                continue
            responses = operation["responses"]
            responses.setdefault("401", {"description": _GUARD_ANSWERS["401"], **ref})
            if method == "post":
                responses.setdefault("413", {"description": _GUARD_ANSWERS["413"], **ref})
                if "requestBody" in operation:
                    operation["requestBody"]["required"] = True
            if path in ("/feedback", "/forget"):
                responses.setdefault("503", {"description": _GUARD_ANSWERS["503"], **ref})
    return document


class Guard:
    """ASGI middleware in front of every route: API key, body size, JSON well-formedness.

    Health, readiness and metrics are public. Everything else needs `Authorization: Bearer <key>`
    (compared in constant time against every configured key). Bodies over `max_body_bytes` get
    413; a body on a JSON endpoint that is not a JSON object gets 400 naming `body`. The buffered
    body is replayed to the application.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.keys = load_api_keys()
        try:
            settings = ServiceSettings.from_env()
        except RuntimeError:
            settings = None
        self.max_body = settings.max_body_bytes if settings else 16 * 1024
        self.body_timeout_s = BODY_TIMEOUT_SHARE * (settings.request_timeout_s if settings else 2.0)
        if not self.keys:
            log.error("no API keys configured (%s / %s): every protected endpoint answers 401", KEYS_ENV, KEYS_FILE_ENV)

    async def _reply(self, send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _authorised(self, scope: dict[str, Any]) -> bool:
        supplied = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                supplied = value
                break
        scheme, _, token = supplied.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return False
        ok = False
        for key in self.keys:  # no early exit: the time taken does not depend on which key matched
            ok |= hmac.compare_digest(token.strip(), key)
        return ok

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in PUBLIC_PATHS:
            if path == "/readyz" and "recommender" in _WORKER:
                await self._readyz(send)
                return
            await self.app(scope, receive, send)
            return
        if not self._authorised(scope):
            await self._reply(send, 401, "missing or invalid API key (Authorization: Bearer <key>)",
                              [(b"www-authenticate", b"Bearer")])
            return
        if scope.get("method") != "POST":
            if path == "/docs.json":
                await self._openapi(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reply(send, 400, "content-length: not a number")
                    return
                if declared > self.max_body:
                    await self._client_error(send, path, 413, f"body: larger than {self.max_body} bytes")
                    return
        chunks: list[bytes] = []
        size = 0
        try:
            # A client that announces a body and stalls gets 408 before BentoML's request timeout
            # would answer 504 (a stalled upload is the client's fault, not the service's).
            async with asyncio.timeout(self.body_timeout_s):
                while size <= self.max_body:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._client_error(send, path, 408, f"body: not received within {self.body_timeout_s:g} s",
                                     [(b"connection", b"close")])
            return
        if size > self.max_body:
            await self._client_error(send, path, 413, f"body: larger than {self.max_body} bytes")
            return
        body = b"".join(chunks)
        if path in JSON_PATHS:
            try:
                parsed = json.loads(body) if body.strip() else {}
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: "[[[[..."
                await self._client_error(send, path, 400, f"body: not valid JSON ({type(exc).__name__})")
                return
            if not isinstance(parsed, dict):
                await self._client_error(send, path, 400, "body: must be a JSON object")
                return
            if path == "/recommend" and "recommender" in _WORKER:
                await self._recommend(body, send)
                return
            # Validated here too, so a bad body is one warning line, not BentoML's ERROR traceback.
            model = _BODY_MODELS[path]
            try:
                model.model_validate_json(body or b"{}")
            except ValidationError as exc:
                await self._invalid(send, path, exc)
                return
            if not body.strip():
                body = b"{}"
            # The body is JSON whatever the client declared (curl -d says form-urlencoded).
            headers = [(n, v) for n, v in scope.get("headers", ()) if n not in (b"content-type", b"content-length")]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            scope = {**scope, "headers": headers}
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _client_error(self, send: Any, path: str, status: int, message: str,
                            headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """Answer a client's mistake and log it as one warning line (no traceback, no input)."""
        log.warning("client error: POST %s -> %d %s", path, status, message)
        await self._reply(send, status, message, headers)

    async def _invalid(self, send: Any, path: str, exc: ValidationError) -> None:
        """400 naming the fields (`detail[].loc`), input never echoed; one warning line in the log."""
        errors = exc.errors(include_context=False, include_input=False)
        log.warning("client error: POST %s -> 400 %d invalid field(s): %s", path, len(errors), _field_summary(errors))
        detail = {"error": f"{exc.error_count()} validation error for {exc.title}", "detail": errors}
        await self._send_json(send, 400, json.dumps(detail).encode())

    async def _readyz(self, send: Any) -> None:
        """200 when this worker can decide with offers; 503 with the cause when it cannot.

        The service keeps answering `/recommend` (degraded, no offers) while the store is down:
        readiness is what a load balancer reads to route away, `/healthz` stays liveness.
        """
        cause = await _WORKER["recommender"].unready_cause()
        if cause is None:
            await self._send_json(send, 200, b'{"ready": true}')
        else:
            await self._send_json(send, 503, json.dumps({"ready": False, "cause": cause}).encode())

    async def _openapi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """BentoML's OpenAPI document, with the 400 body as it is really sent.

        BentoML documents `InvalidArgument.detail` as a string but answers a validation failure
        with pydantic's list of errors (each naming the field in `loc`); a client generated from
        the document, or schemathesis, would reject every real 400. The document is corrected
        here rather than the answer, which is BentoML's own on its routes.
        """
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        if start.get("status") == 200:
            body = json.dumps(corrected_openapi(json.loads(body))).encode()
        headers = [(n, v) for n, v in start.get("headers", []) if n != b"content-length"]
        await send({"type": "http.response.start", "status": start.get("status", 500),
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _recommend(self, body: bytes, send: Any) -> None:
        """POST /recommend without BentoML's request machinery (measured: docs/service.md §7).

        Same request model, same validation answer as BentoML's (400 with `error` and `detail`
        naming the field, input never echoed), same response model and handler
        (`Recommender.decide`); BentoML's outer middlewares (metrics, timeout) still apply and
        the route stays in the OpenAPI document.
        """
        try:
            request = RecommendRequest.model_validate_json(body or b"{}")
        except ValidationError as exc:
            await self._invalid(send, "/recommend", exc)
            return
        try:
            answer = _WORKER["recommender"].decide(request.customer_id, request.channel, request.k, request.context)
            payload = answer.__pydantic_serializer__.to_json(answer)
        except Exception:  # noqa: BLE001 - as BentoML: a 500 without details, the traceback in the log
            log.exception("POST /recommend failed")
            await self._send_json(send, 500, b'{"error": "An unexpected error has occurred, please check the server log."}')
            return
        await self._send_json(send, 200, payload)

    @staticmethod
    async def _send_json(send: Any, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


_BODY_MODELS: dict[str, type[BaseModel]] = {
    "/recommend": RecommendRequest, "/feedback": FeedbackRequest, "/forget": ForgetRequest, "/admin/reload": ReloadRequest,
}
#: Field names a log line may carry; anything else in an error's location is the client's text.
_FIELD_NAMES = frozenset(n for m in (*_BODY_MODELS.values(), RequestContext) for n in m.model_fields)


def _field_summary(errors: list[Any]) -> str:
    """`decision_id (string_type), <unknown field> (extra_forbidden)`: field names and error types only."""
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) if isinstance(p, int) or p in _FIELD_NAMES else "<unknown field>" for p in e.get("loc", ()))
        parts.append(f"{loc or 'body'} ({e.get('type', '?')})")
    return ", ".join(parts) + (", ..." if len(errors) > 5 else "")


# ------------------------------------------------------------------------------ store health
class StoreHealth:
    """What this worker last learned about the contact store, from its own calls or from a probe.

    `/readyz` trusts the outcome of a store call made in the last `fresh_s` seconds (the answers
    under traffic say it already); otherwise it asks the store (`probe`, a read bounded by
    `--store-timeout`) in a thread, one probe at a time, so an idle worker also tells the truth.
    """

    def __init__(self, probe: Callable[[], object], errors: tuple[type[BaseException], ...], fresh_s: float = STORE_FRESH_S) -> None:
        self.probe = probe
        self.errors = errors
        self.fresh_s = fresh_s
        self.ok_at = time.monotonic()
        self.failed_at = 0.0
        self.cause = ""
        self._lock = asyncio.Lock()

    def ok(self) -> None:
        self.ok_at = time.monotonic()

    def failed(self, cause: str) -> None:
        self.failed_at = time.monotonic()
        if cause != "backoff" or not self.cause:  # `backoff` = not tried: keep the real cause
            self.cause = cause

    def _known(self) -> tuple[bool, str | None]:
        now = time.monotonic()
        if self.failed_at > self.ok_at:
            return now - self.failed_at < self.fresh_s, f"contact store unavailable ({self.cause}): decisions are answered degraded, without offers"
        return now - self.ok_at < self.fresh_s, None

    async def unready_cause(self) -> str | None:
        fresh, cause = self._known()
        if fresh:
            return cause
        async with self._lock:
            fresh, cause = self._known()  # another probe may have just answered
            if fresh:
                return cause
            try:
                await asyncio.to_thread(self.probe)
            except self.errors as exc:
                self.failed(f"probe: {type(exc).__name__}")
            else:
                self.ok()
        return self._known()[1]


def _watch_supervisor(parent: int, check_s: float = SUPERVISOR_CHECK_S, grace_s: float = ORPHAN_GRACE_S) -> None:
    """Exit this worker when its supervisor is gone (`kill -9` of BentoML's arbiter).

    The supervisor starts each worker in a session of its own, so its death does not reach the
    workers: orphans would keep answering on the inherited socket while a new `nbo serve` on the
    port fails. The worker asks itself to stop (SIGTERM: uvicorn's graceful shutdown finishes the
    requests in flight, the store is closed), and exits after `grace_s` if that did not happen.
    """
    while os.getppid() == parent:
        time.sleep(check_s)
    log.error("supervisor (pid %d) is gone: this worker (pid %d) stops", parent, os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    os._exit(3)


# ------------------------------------------------------------------------------ metrics
@functools.cache
def _metrics() -> dict[str, Any]:
    """Prometheus counters, created in the worker (after BentoML set the multiprocess directory)."""
    from prometheus_client import Counter

    return {
        "decisions": Counter("nbo_decisions", "Decisions answered", ["channel"]),
        "offers": Counter("nbo_offers_served", "Offers returned to callers", ["channel"]),
        "suppressions": Counter("nbo_suppressions", "Candidates suppressed, by reason code", ["reason"]),
        "fallbacks": Counter("nbo_fallbacks", "Decisions made with the popularity fallback", ["cause"]),
        "reloads": Counter("nbo_model_reloads", "Champion models loaded after start"),
        "reload_failures": Counter("nbo_model_reload_failures", "Failed attempts to load new champions"),
        "feedback": Counter("nbo_feedback", "Feedback received", ["outcome", "known"]),
        "degraded": Counter("nbo_degraded", "Answers without offers because the contact store failed", ["cause"]),
        "store_refusals": Counter("nbo_store_unavailable", "Feedback or forget refused (503): store failed", ["endpoint"]),
    }


#: What /feedback and /forget answer when the store cannot record: the client should retry.
_STORE_DOWN_HEADERS = {"Retry-After": "1"}


def _store_down(what: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(
        {"error": f"contact store unavailable: {what} NOT recorded; retry later"}, status_code=503,
        headers=_STORE_DOWN_HEADERS,
    )


# ------------------------------------------------------------------------------ the service
@bentoml.service(name="nbo", workers=2, traffic={"timeout": 2})
class Recommender:
    """POST /recommend, /feedback, /forget, /admin/reload; BentoML adds health, metrics, OpenAPI."""

    def __init__(self) -> None:
        from serving.contact_store.errors import STORE_ERRORS
        from serving.engine import DecisionEngine
        from serving.settings import EngineSettings

        # First: a worker whose supervisor dies while it loads must not live on either.
        threading.Thread(target=_watch_supervisor, args=(os.getppid(),), name="nbo-supervisor-watch", daemon=True).start()
        self.settings = ServiceSettings.from_env()
        self.metrics = _metrics()
        self.engine = DecisionEngine.from_settings(EngineSettings.model_validate(self.settings.engine))
        self.store_health = StoreHealth(lambda: self.engine.store.read_customer(PROBE_ID, self.settings.now()), STORE_ERRORS)
        if self.engine.models is None:
            self.metrics["reload_failures"].inc()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._marker = self.settings.state_dir / "reload-request"
        self._marker_seen = self._marker.stat().st_mtime if self._marker.exists() else 0.0
        self._stop = threading.Event()
        self._warm_up()
        _WORKER["recommender"] = self  # the Guard answers /recommend through `decide`
        self._ready = True
        self._thread = threading.Thread(target=self._reload_loop, name="nbo-reload", daemon=True)
        self._thread.start()

    def _warm_up(self) -> None:
        """Run a few decisions (nothing recorded), then freeze the heap so GC passes stay short."""
        from serving.contact_store.errors import StoreUnavailable

        now = self.settings.now()
        ids = self.engine.features.index[: self.settings.warmup_customers].tolist()
        try:
            for cid in ids:
                self.engine.decide(cid, "web", {"page_category": "travel", "device": "mobile"}, now, k=3, reserve=False)
            self.engine.decide("warm-up-unknown", "web", None, now, k=3, reserve=False)
        except StoreUnavailable as exc:  # start anyway: answers are degraded until the store is back
            log.warning("warm-up: %s", exc)
            self.engine._store_retry_at = 0.0
        gc.collect()
        gc.freeze()

    def _reload(self, force: bool = False) -> Any:
        result = self.engine.reload(force=force)
        if not result.ok:
            self.metrics["reload_failures"].inc()
            log.warning("model reload failed, previous models keep serving: %s", result.message)
        elif result.changed:
            self.metrics["reloads"].inc()
            gc.freeze()
        return result

    def _reload_loop(self) -> None:
        next_check = time.monotonic() + self.settings.reload_interval_s
        while not self._stop.wait(1.0):
            requested = False
            try:
                mtime = self._marker.stat().st_mtime if self._marker.exists() else 0.0
            except OSError:
                mtime = self._marker_seen
            if mtime > self._marker_seen:
                self._marker_seen, requested = mtime, True
            if requested or time.monotonic() >= next_check:
                next_check = time.monotonic() + self.settings.reload_interval_s
                try:
                    self._reload()
                except Exception:  # noqa: BLE001 - the loop must survive anything
                    log.exception("reload loop error")

    def __is_ready__(self) -> bool:
        return getattr(self, "_ready", False)

    async def unready_cause(self) -> str | None:
        """None when ready; else why not (the contact store is down: answers are degraded)."""
        if not getattr(self, "_ready", False):
            return "starting: models and data not loaded yet"
        return await self.store_health.unready_cause()

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()
        self.engine.close()

    # -------------------------------------------------------------------------- endpoints
    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    async def recommend(
        self, customer_id: str, channel: str, k: int = 3, context: RequestContext | None = None
    ) -> RecommendResponse:
        """Up to `k` offers (or none) for this customer on this channel, now, with reasons."""
        return self.decide(customer_id, channel, k, context)

    def decide(self, customer_id: str, channel: str, k: int, context: RequestContext | None) -> RecommendResponse:
        """The /recommend handler (called by the Guard's fast path and by the BentoML route)."""
        from features import Context
        from serving.contact_store.errors import StoreUnavailable

        ctx = Context(channel=channel, **(context.model_dump(exclude_none=True) if context else {}))  # type: ignore[arg-type]
        m = self.metrics
        try:
            decision = self.engine.decide(customer_id, channel, ctx, self.settings.now(), k=k, reserve=True)
        except StoreUnavailable as exc:
            # Fail closed: an offer the store could not record is never made.
            self.store_health.failed(exc.cause)
            m["decisions"].labels(channel).inc()
            m["degraded"].labels(exc.cause).inc()
            return self._degraded(customer_id, channel)
        self.store_health.ok()
        m["decisions"].labels(channel).inc()
        if decision.offers:
            m["offers"].labels(channel).inc(len(decision.offers))
        counts: dict[str, int] = {}
        for s in decision.suppressed:
            counts[s.reason] = counts.get(s.reason, 0) + 1
        for reason, n in counts.items():
            m["suppressions"].labels(reason).inc(n)
        versions = decision.model_versions
        if decision.fallback:
            m["fallbacks"].labels("no_models" if self.engine.models is None else "cold_start").inc()
        # The decision's objects are validated already: construct, do not validate again.
        return RecommendResponse.model_construct(
            decision_id=decision.decision_id,
            customer_id=customer_id,
            channel=channel,
            offers=decision.offers,
            suppressed=decision.suppressed,
            model_version=versions.get("propensity", versions.get("fallback", "")),
            model_versions=versions,
            fallback=decision.fallback,
            degraded=False,
        )

    def _degraded(self, customer_id: str, channel: str) -> RecommendResponse:
        import uuid

        models = self.engine.models
        versions = models.versions if models is not None else {"fallback": "popularity"}
        return RecommendResponse(
            decision_id=uuid.uuid4().hex,
            customer_id=customer_id,
            channel=channel,
            offers=[],
            suppressed=[],
            model_version=versions.get("propensity", versions.get("fallback", "")),
            model_versions=versions,
            fallback=models is None,
            degraded=True,
        )

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest)
    async def feedback(self, decision_id: str, offer_id: str, outcome: str, ctx: bentoml.Context) -> FeedbackResponse:
        """Record what the customer did with a shown offer; repeating it changes nothing; unknown -> 404.

        200 only once the outcome is committed; 503 (nothing recorded, retry) if the store failed.
        """
        from serving.contact_store.errors import StoreUnavailable

        try:
            known = self.engine.record_outcome(decision_id, offer_id, outcome, self.settings.now())
        except StoreUnavailable as exc:
            self.store_health.failed(exc.cause)
            self.metrics["store_refusals"].labels("feedback").inc()
            ctx.response.status_code = 503
            ctx.response.metadata.update(_STORE_DOWN_HEADERS)
            return _store_down("feedback")
        self.store_health.ok()
        self.metrics["feedback"].labels(outcome, str(known).lower()).inc()
        if not known:
            ctx.response.status_code = 404
        return FeedbackResponse(decision_id=decision_id, offer_id=offer_id, outcome=outcome, recorded=known,
                                error=None if known else "unknown decision_id, or offer_id not shown in that decision")

    @bentoml.api(route="/forget", input_spec=ForgetRequest)
    async def forget(self, customer_id: str) -> ForgetResponse:
        """Erase the customer's contact history and decision log (GDPR)."""
        from serving.contact_store.errors import StoreUnavailable
        from serving.privacy import hash_id

        try:
            n = self.engine.forget(customer_id)
        except StoreUnavailable as exc:
            self.store_health.failed(exc.cause)
            self.metrics["store_refusals"].labels("forget").inc()
            return _store_down("forget")
        self.store_health.ok()
        log.info("forgot customer %s (%d shows)", hash_id(customer_id), n)
        return ForgetResponse(customer_id=customer_id, erased_shows=n)

    @bentoml.api(route="/admin/reload", input_spec=ReloadRequest)
    async def admin_reload(self, force: bool = False) -> ReloadResponse:
        """Load the current champions now (this worker) and ask the other workers to do the same."""
        result = await asyncio.to_thread(self._reload, force)
        try:
            self._marker.touch()
            self._marker_seen = self._marker.stat().st_mtime
        except OSError:
            log.warning("could not write %s; other workers reload on their interval", self._marker)
        return ReloadResponse(changed=result.changed, ok=result.ok, message=result.message, versions=result.versions)


Recommender.add_asgi_middleware(Guard)

"""The Guard: ASGI middleware in front of every route of the service (API key, body size and
timeout, JSON well-formedness, the fast path of `/recommend`, `/readyz`), and the corrected
OpenAPI document. See docs/service.md §3-4 and §7.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
from typing import Any

from bentoml.exceptions import InvalidArgument
from pydantic import ValidationError

from serving import api_page, session
from serving.api_models import BODY_MODELS, JSON_PATHS, RecommendRequest, field_summary
from serving.service_config import KEYS_ENV, KEYS_FILE_ENV, ServiceSettings, load_api_keys

log = logging.getLogger("nbo.service")

PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
#: Endpoints of live input (issue 22): they answer 404 (unknown customer) and 422 (time out of range).
LIVE_PATHS = frozenset({"/consents", "/events"})
#: The service instance of this worker, for the Guard's fast path (set by `Recommender.__init__`).
WORKER: dict[str, Any] = {}
_JSON_HEADERS = [(b"content-type", b"application/json")]
#: Share of the request timeout (`--timeout`) a client gets to send its body; then 408, so a
#: stalled upload is the client's error (408), not the service's (BentoML's 504 at the timeout).
BODY_TIMEOUT_SHARE = 0.75


_GUARD_ANSWERS = {
    "401": "missing or invalid API key (Authorization: Bearer <key>)",
    "413": "body larger than the configured limit",
    "503": "contact store unavailable: nothing recorded, retry (Retry-After)",
}


def corrected_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document as the service really answers.

    BentoML's document says `InvalidArgument.detail` is a string (it is pydantic's list of errors),
    does not mark request bodies required (a POST without a body is a 400), and cannot know the
    answers of the `Guard` (401, 413) or the store's 503. Also nbo's title, version, description
    and Bearer scheme instead of BentoML's boilerplate (`api_page.openapi_document`).
    """
    api_page.openapi_document(document, PUBLIC_PATHS)
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
            if path in ("/feedback", "/forget", "/consents", "/events", "/customer"):
                responses.setdefault("503", {"description": _GUARD_ANSWERS["503"], **ref})
            if path in LIVE_PATHS or path == "/customer":
                responses.setdefault("404", {"description": "unknown or erased customer: nothing recorded", **ref})
            if path in LIVE_PATHS:
                responses.setdefault("422", {"description": "a time out of range (`error` names the field): nothing recorded", **ref})
            if path == "/events":
                responses.setdefault("409", {"description": "an event id recorded (or repeated) with other content: "
                                                            "nothing of the batch recorded", **ref})
    return document


#: Turns of the event loop a micro-batch waits for more requests when the worker's last turn
#: decided more than one (under load; never at low load, where a request is decided on the next
#: turn). Measured at 300 req/s (docs/service.md §7, session 13): server CPU per request 0 -> 3
#: turns -18 %, 3 -> 8 -18 %, 8 -> 16 -8 % with p50 and p99 higher: 8.
DEFER_TURNS = 8


class Batcher:
    """The worker's micro-batches of `/recommend` (docs/service.md §7, "Micro-batches").

    A request waits for the next turn of the event loop; every request that reached the Guard by
    then (those that arrived while the worker was deciding) is decided with it in one pass of the
    pipeline, at most `max_size` at a time, one block per (channel, k); the turn's blocks are read
    in one store call and reserved in one (`Recommender.decide_blocks`). A customer asked for twice
    waits for the next turn, so the second decision sees the first one's reservation, as one after
    the other. At low load a block holds one request (decided by `Recommender.decide`). Under load
    (the last turn decided more than one request) a turn waits up to `defer_turns` more turns of
    the loop for the requests still in BentoML's middlewares. Requests with offer attributes are
    decided alone (`Recommender.decide`).
    """

    def __init__(self, max_size: int, defer_turns: int = DEFER_TURNS) -> None:
        self.max_size = max_size
        self.defer_turns = defer_turns
        self._pending: list[tuple[RecommendRequest, asyncio.Future[Any]]] = []
        self._scheduled = False
        self._last = 0  # requests of the last turn: more than one means the worker is under load
        self._deferred = 0

    def submit(self, request: RecommendRequest) -> asyncio.Future[Any]:
        """A future of the request's `RecommendResponse` (or of what `decide` would have raised)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((request, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run)
        return future

    def _run(self) -> None:
        if self._last > 1 and self._deferred < self.defer_turns and len(self._pending) < self.max_size:
            # Under load, requests that reached the worker with these are still in the middlewares
            # (two or three turns of the loop behind): wait for them, or they make a turn of their own.
            self._deferred += 1
            asyncio.get_running_loop().call_soon(self._run)
            return
        self._deferred = 0
        self._scheduled = False
        pending, self._pending = self._pending, []
        self._last = len(pending)
        blocks: dict[tuple[str, int], list[tuple[RecommendRequest, asyncio.Future[Any]]]] = {}
        seen: set[str] = set()
        later = []
        for request, future in pending:
            if future.done():  # cancelled (the request's timeout): nothing decided for it
                continue
            block = blocks.setdefault((request.channel, request.k), [])
            if request.customer_id in seen or len(block) >= self.max_size:
                later.append((request, future))
                continue
            seen.add(request.customer_id)
            block.append((request, future))
        turn = [block for block in blocks.values() if block]
        if turn:
            try:
                decided = WORKER["recommender"].decide_blocks([[r for r, _ in block] for block in turn])
            except Exception as exc:  # noqa: BLE001 - every request of the turn gets it (a 500)
                decided = [[exc] * len(block) for block in turn]
        for block, answers in zip(turn, decided if turn else [], strict=True):
            _block_sizes().observe(len(block))
            for (_, future), answer in zip(block, answers, strict=True):
                if future.done():
                    continue
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
        if later:
            self._pending[:0] = later
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._run)


@functools.cache
def _block_sizes() -> Any:
    """`nbo_decision_block_size`: requests per micro-batch (created in the worker, on first use)."""
    from prometheus_client import Histogram

    return Histogram("nbo_decision_block_size", "Requests of /recommend decided in one pass of the pipeline",
                     buckets=(1, 2, 4, 8, 16, 32, 64))


def _not_a_json_object(body: bytes) -> str | None:
    """Why `body` is not a JSON object (the Guard's 400 message), or None when it is one (an empty
    body counts as `{}`)."""
    try:
        parsed = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: "[[[[..."
        return f"body: not valid JSON ({type(exc).__name__})"
    return None if isinstance(parsed, dict) else "body: must be a JSON object"


class Guard:
    """ASGI middleware in front of every route: API key, body size, JSON well-formedness.

    Health, readiness and metrics are public, and so are the API page, its assets and the OpenAPI
    document (`serving.api_page`: what the API is, not a call of it). The console (`/console/...`) needs a session cookie
    (`serving.session`; its login form is public). Everything else needs `Authorization: Bearer <key>`
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
        #: `POST /events` carries batches: its own, larger limit.
        self.max_events_body = settings.max_events_body_bytes if settings else 1024 * 1024
        self.body_timeout_s = BODY_TIMEOUT_SHARE * (settings.request_timeout_s if settings else 2.0)
        #: Micro-batches of /recommend (`Batcher`), or None (`--max-batch 1`: one decision at a time).
        max_batch = settings.max_batch if settings else 1
        self.batcher = Batcher(max_batch) if max_batch > 1 else None
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
        if path in api_page.DOC_PATHS or path.startswith(api_page.ASSETS_PREFIX):
            # The API page, its assets and the OpenAPI document: no key (the calls need one).
            if scope.get("method") not in ("GET", "HEAD"):
                await self._reply(send, 405, "method not allowed", [(b"allow", b"GET, HEAD")])
            elif path == "/docs.json":
                await self._openapi(scope, receive, send)
            elif path in api_page.PAGE_PATHS:
                await self._page(send, path)
            else:
                await self.app(scope, receive, send)
            return
        if path in PUBLIC_PATHS:
            if path == "/readyz" and "recommender" in WORKER:
                await self._readyz(send)
                return
            await self.app(scope, receive, send)
            return
        if session.is_console_path(path):
            # The console (docs/console.md): a browser's session cookie, not a Bearer key; its
            # login form is public. POST bodies still get the size and time limits below.
            if not session.console_allowed(path, scope.get("headers", ()), self.keys):
                await send({"type": "http.response.start", "status": 303, "headers": session.LOGIN_REDIRECT})
                await send({"type": "http.response.body", "body": b""})
                return
        elif not self._authorised(scope):
            await self._reply(send, 401, "missing or invalid API key (Authorization: Bearer <key>)",
                              [(b"www-authenticate", b"Bearer")])
            return
        if path == "/outbox" and "recommender" in WORKER:
            await self._outbox(scope, send)
            return
        if scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        limit = self.max_events_body if path == "/events" else self.max_body
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reply(send, 400, "content-length: not a number")
                    return
                if declared > limit:
                    await self._client_error(send, path, 413, f"body: larger than {limit} bytes")
                    return
        chunks: list[bytes] = []
        size = 0
        try:
            # A client that announces a body and stalls gets 408 before BentoML's request timeout
            # would answer 504 (a stalled upload is the client's fault, not the service's).
            async with asyncio.timeout(self.body_timeout_s):
                while size <= limit:
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
        if size > limit:
            await self._client_error(send, path, 413, f"body: larger than {limit} bytes")
            return
        body = b"".join(chunks)
        if path == "/recommend" and "recommender" in WORKER:
            # One parse of the body: pydantic's. Only a body it refuses is parsed again by `json`,
            # so the answer names the same problem as before (not JSON, not an object, a field).
            await self._recommend(body, send)
            return
        if path in JSON_PATHS:
            refusal = _not_a_json_object(body)
            if refusal is not None:
                await self._client_error(send, path, 400, refusal)
                return
            # Validated here too, so a bad body is one warning line, not BentoML's ERROR traceback.
            model = BODY_MODELS[path]
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
        log.warning("client error: POST %s -> 400 %d invalid field(s): %s", path, len(errors), field_summary(errors))
        detail = {"error": f"{exc.error_count()} validation error for {exc.title}", "detail": errors}
        await self._send_json(send, 400, json.dumps(detail).encode())

    async def _outbox(self, scope: dict[str, Any], send: Any) -> None:
        """`GET /outbox` (a page of the programmes' outbox, `Recommender.outbox_page`): the query
        string's parameters, each once; 405 for another method."""
        from urllib.parse import parse_qsl

        if scope.get("method") not in ("GET", "HEAD"):
            await self._reply(send, 405, "method not allowed", [(b"allow", b"GET")])
            return
        try:
            pairs = parse_qsl(scope.get("query_string", b"").decode("utf-8"), keep_blank_values=True,
                              strict_parsing=False, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            await self._client_error(send, "/outbox", 400, "query: not a valid query string")
            return
        names = [k for k, _ in pairs]
        twice = sorted({k for k in names if names.count(k) > 1})
        if twice:
            await self._client_error(send, "/outbox", 400, f"{twice[0][:32]}: given more than once")
            return
        status, body = await asyncio.to_thread(WORKER["recommender"].outbox_page, dict(pairs))
        if status == 400:
            log.warning("client error: GET /outbox -> 400 %s", field_summary(body.get("detail", [])))
        await self._send_json(send, status, json.dumps(body, default=str).encode())

    async def _readyz(self, send: Any) -> None:
        """200 when this worker can decide with offers; 503 with the cause when it cannot.

        The service keeps answering `/recommend` (degraded, no offers) while the store is down:
        readiness is what a load balancer reads to route away, `/healthz` stays liveness.
        """
        cause = await WORKER["recommender"].unready_cause()
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

    @staticmethod
    async def _page(send: Any, path: str) -> None:
        """The API page (`serving.api_page`), with a policy that lets it load only from this server."""
        body, content_type = api_page.page(path)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", content_type), (b"content-length", str(len(body)).encode()),
            (b"content-security-policy", api_page.PAGE_CSP.encode()), (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-cache")]})
        await send({"type": "http.response.body", "body": body})

    async def _recommend(self, body: bytes, send: Any) -> None:
        """POST /recommend without BentoML's request machinery (measured: docs/service.md §7).

        Same request model, same validation answer as BentoML's (400 with `error` and `detail`
        naming the field, input never echoed), same response model and handler
        (`Recommender.decide`, or `Recommender.decide_blocks` for the worker's micro-batches: the
        `Batcher`); BentoML's outer middlewares (metrics, timeout) still apply and the route
        stays in the OpenAPI document.
        """
        try:
            request = RecommendRequest.model_validate_json(body or b"{}")
        except ValidationError as exc:
            refusal = _not_a_json_object(body)
            if refusal is not None:
                await self._client_error(send, "/recommend", 400, refusal)
            else:
                await self._invalid(send, "/recommend", exc)
            return
        try:
            if request.offer_attributes or self.batcher is None:
                answer = WORKER["recommender"].decide(request.customer_id, request.channel, request.k,
                                                      request.context, request.offer_attributes)
            else:
                answer = await self.batcher.submit(request)
            payload = answer.__pydantic_serializer__.to_json(answer)
        except InvalidArgument as exc:  # e.g. attributes of an offer not in the catalogue: names the field
            await self._client_error(send, "/recommend", 400, str(exc))
            return
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

"""The console's web application: Starlette routes rendering Jinja2 templates (docs/console.md).

Mounted at `/console` of `nbo serve` (`console.service`). Every page but the login form needs a
session (`serving.session`), checked here and, in the service, by the Guard before: a page is
never served without one, whoever mounts the application. Answers carry a Content-Security-Policy
that allows nothing from elsewhere and no script at all (the console has none: forms, links and a
refresh header while a what-if runs).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from console.backend import ConsoleBackend
from nbo.vocab import CATEGORIES, CONTACT_CHANNELS
from serving import session

log = logging.getLogger("nbo.console")

HERE = Path(__file__).resolve().parent
#: What a console page may load: its own stylesheet and images it embeds; no script, no frame.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
#: Routes of this application reachable without a session (the Guard's list holds the same paths
#: under the mount point: `serving.session.PUBLIC_CONSOLE_PATHS`).
PUBLIC_ROUTES = frozenset({"/login", "/static/console.css"})
#: Longest request body the console reads (the service's Guard has its own, smaller limit).
MAX_BODY = 64 * 1024
MAX_ID = 128
MAX_KEY = 1024
DEVICES = ("", "desktop", "mobile", "tablet", "unknown")


def _route_path(scope: dict[str, Any]) -> str:
    root, path = scope.get("root_path", ""), scope.get("path", "")
    return path[len(root):] or "/" if root and path.startswith(root) else path


class _Sessions:
    """ASGI middleware: the security headers on every answer; a session for every non-public route."""

    def __init__(self, app: Any, keys: Callable[[], tuple[bytes, ...]]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                names = {n for n, _ in SECURITY_HEADERS}
                message = {**message, "headers": [*(h for h in message.get("headers", []) if h[0] not in names),
                                                  *SECURITY_HEADERS]}
            await send(message)

        route = _route_path(scope)
        if route not in PUBLIC_ROUTES:
            token = session.cookie_from_headers(scope.get("headers", ()))
            if not session.valid(self.keys(), token):
                base = scope.get("root_path", "") or session.CONSOLE_PATH
                await RedirectResponse(f"{base}/login", status_code=303)(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)


class Console:
    """The routes; `backend` is built on first use (in the service: from the worker's engine)."""

    def __init__(self, backend: ConsoleBackend | Callable[[], ConsoleBackend]) -> None:
        self._backend = backend if isinstance(backend, ConsoleBackend) else None
        self._make = None if isinstance(backend, ConsoleBackend) else backend
        self._lock = threading.Lock()
        self._registry = None
        self._jobs = None
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters["num"] = _num

    @property
    def backend(self) -> ConsoleBackend:
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    self._backend = self._make()  # type: ignore[misc]
        return self._backend

    def keys(self) -> tuple[bytes, ...]:
        return self.backend.keys

    @property
    def registry(self):  # noqa: ANN201
        from console.programmes import Registry

        if self._registry is None:
            self._registry = Registry(self.backend.tracking_uri)
        return self._registry

    @property
    def jobs(self):  # noqa: ANN201
        from console.whatif import WhatIfJobs

        if self._jobs is None:
            self._jobs = WhatIfJobs(self.backend.work_dir / "whatif")
        return self._jobs

    # ------------------------------------------------------------------ rendering
    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "") or session.CONSOLE_PATH
        html = self.env.get_template(template).render(base=base, channels=CONTACT_CHANNELS, **context)
        return HTMLResponse(html, status_code=status)

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.page(request, "error.html", status=status, message=message)

    # ------------------------------------------------------------------ login
    async def login_form(self, request: Request) -> Response:
        return self.page(request, "login.html", public=True)

    async def login(self, request: Request) -> Response:
        if not _same_origin(request):
            return self.error(request, 403, "cross-site form refused")
        form = await _form(request)
        if form is None:
            return self.error(request, 413, f"form: larger than {MAX_BODY} bytes")
        supplied = form.get("key", "").strip()
        if not supplied or len(supplied) > MAX_KEY or not session.key_matches(self.keys(), supplied.encode()):
            log.warning("console: failed login (wrong key)")
            return self.page(request, "login.html", status=401, failed=True, public=True)
        matched = next(k for k in self.keys() if session.key_matches((k,), supplied.encode()))
        base = request.scope.get("root_path", "") or session.CONSOLE_PATH
        response = RedirectResponse(f"{base}/", status_code=303)
        response.headers.append("set-cookie", session.set_cookie_header(session.issue(matched), _secure(request)))
        return response

    async def logout(self, request: Request) -> Response:
        base = request.scope.get("root_path", "") or session.CONSOLE_PATH
        response = RedirectResponse(f"{base}/login", status_code=303)
        response.headers.append("set-cookie", session.clear_cookie_header(_secure(request)))
        return response

    async def stylesheet(self, request: Request) -> Response:
        return Response((HERE / "static" / "console.css").read_bytes(), media_type="text/css")

    # ------------------------------------------------------------------ customer
    async def home(self, request: Request) -> Response:
        q = request.query_params.get("q", "")
        bad = _check_id(q) if q else None
        if bad:
            return self.error(request, 400, bad.replace("id:", "q:", 1))
        found = await run_in_threadpool(self.backend.find, q) if "q" in request.query_params else None
        return self.page(request, "home.html", q=q, found=found)

    async def customer(self, request: Request) -> Response:
        from console.charts import timeline_chart
        from console.customer import customer_view

        cid = request.query_params.get("id", "")
        bad = _check_id(cid)
        if bad:
            return self.error(request, 400, bad)
        # Off the event loop: this worker also answers /recommend (features and a chart take ~0.1-1 s).
        view = await run_in_threadpool(customer_view, self.backend, cid)
        if not view.found:
            return self.page(request, "customer.html", status=404, view=view, chart=None)
        chart = await run_in_threadpool(timeline_chart, view.events, view.contacts, view.stages)
        return self.page(request, "customer.html", view=view, chart=chart)

    # ------------------------------------------------------------------ decision
    async def decision(self, request: Request) -> Response:
        from console.decision import live_decision

        params = request.query_params
        cid, channel = params.get("id", ""), params.get("channel", "web")
        page_category, device = params.get("page_category", ""), params.get("device", "")
        form = {"id": cid, "channel": channel, "page_category": page_category, "device": device,
                "k": params.get("k", "3")}
        problems = []
        if "id" in params and _check_id(cid):
            problems.append(_check_id(cid))
            form["id"] = ""  # not echoed back
        if channel not in CONTACT_CHANNELS:
            problems.append(f"channel: must be one of {', '.join(CONTACT_CHANNELS)}")
        if page_category not in ("", *CATEGORIES):
            problems.append(f"page_category: must be one of {', '.join(CATEGORIES)} (or empty)")
        if device not in DEVICES:
            problems.append(f"device: must be one of {', '.join(d for d in DEVICES if d)} (or empty)")
        k = form["k"]
        if not (k.isdigit() and 1 <= int(k) <= 20):
            problems.append("k: a whole number from 1 to 20")
        context = dict(form=form, categories=CATEGORIES, devices=DEVICES)
        if problems:
            return self.page(request, "decision.html", status=400, problems=problems, result=None, **context)
        if "id" not in params:
            return self.page(request, "decision.html", problems=[], result=None, **context)
        result = await run_in_threadpool(live_decision, self.backend, cid, channel, int(k), page_category or None,
                                         device or None)
        return self.page(request, "decision.html", status=200 if result.found else 404, problems=[], result=result,
                         **context)

    # ------------------------------------------------------------------ programmes
    async def models(self, request: Request) -> Response:
        return self.page(request, "models.html", programmes=await run_in_threadpool(self.registry.programmes))

    async def chart(self, request: Request) -> Response:
        run, path = request.query_params.get("run", ""), request.query_params.get("path", "")
        data = await run_in_threadpool(self.registry.chart, run, path)
        if data is None:
            return self.error(request, 404, "no such chart")
        return Response(data, media_type="image/png")

    # ------------------------------------------------------------------ what-if
    async def whatif_form(self, request: Request) -> Response:
        from console.whatif import MAX_CUSTOMERS, MAX_DAYS

        return self.page(request, "whatif.html", draft=self.backend.policy_text(), error=None,
                         values={"method": "simulate", "scorer": "oracle", "customers": 200, "days": 30, "seed": 0},
                         max_customers=MAX_CUSTOMERS, max_days=MAX_DAYS)

    async def whatif_start(self, request: Request) -> Response:
        from pydantic import ValidationError

        from console.whatif import MAX_CUSTOMERS, MAX_DAYS, WhatIfRequest
        from nbo.errors import ConfigError

        if not _same_origin(request):
            return self.error(request, 403, "cross-site form refused")
        form = await _form(request)
        if form is None:
            return self.error(request, 413, f"form: larger than {MAX_BODY} bytes")
        values = {k: form.get(k, "") for k in ("method", "scorer", "customers", "days", "seed")}
        draft = form.get("draft", "")

        def again(status: int, error: str) -> Response:
            return self.page(request, "whatif.html", status=status, draft=draft, error=error, values=values,
                             max_customers=MAX_CUSTOMERS, max_days=MAX_DAYS)

        try:
            parsed = WhatIfRequest.model_validate({"draft": draft, **{k: v for k, v in values.items() if v != ""}},
                                                  strict=False)
        except ValidationError as exc:
            first = exc.errors(include_input=False)[0]
            field = ".".join(str(p) for p in first["loc"]) or "form"
            return again(400, f"{field}: {first['msg']}")
        try:
            job_id = await run_in_threadpool(self.jobs.start, parsed, self.backend.policy_text(),
                                             self.backend.data_dir, self.backend.tracking_uri)
        except ConfigError as exc:
            return again(400, str(exc))
        except RuntimeError as exc:
            return again(409, str(exc))
        base = request.scope.get("root_path", "") or session.CONSOLE_PATH
        return RedirectResponse(f"{base}/whatif/job?{urlencode({'id': job_id})}", status_code=303)

    async def whatif_job(self, request: Request) -> Response:
        job_id = request.query_params.get("id", "")
        try:
            status = self.jobs.status(job_id)
        except KeyError:
            return self.error(request, 404, "no such what-if job")
        response = self.page(request, "whatif_job.html", job=status)
        if status.state == "running":
            response.headers["refresh"] = "2"
        return response

    def routes(self) -> list[Route]:
        return [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/static/console.css", self.stylesheet, methods=["GET"]),
            Route("/", self.home, methods=["GET"]),
            Route("/customer", self.customer, methods=["GET"]),
            Route("/decision", self.decision, methods=["GET"]),
            Route("/models", self.models, methods=["GET"]),
            Route("/models/chart", self.chart, methods=["GET"]),
            Route("/whatif", self.whatif_form, methods=["GET"]),
            Route("/whatif", self.whatif_start, methods=["POST"]),
            Route("/whatif/job", self.whatif_job, methods=["GET"]),
        ]


def create_app(backend: ConsoleBackend | Callable[[], ConsoleBackend]) -> Starlette:
    """The console as an ASGI application (mount it at `/console`)."""
    console = Console(backend)
    app = Starlette(routes=console.routes())
    app.add_middleware(_Sessions, keys=console.keys)
    return app


def _check_id(cid: str) -> str | None:
    if not cid:
        return "id: required"
    if len(cid) > MAX_ID:
        return f"id: longer than {MAX_ID} characters"
    if any(ord(c) < 32 for c in cid):
        return "id: control characters are not allowed"
    return None


def _num(value: Any, digits: int = 3) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v:  # NaN
        return "-"
    return f"{v:,.{digits}f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:,.0f}"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _same_origin(request: Request) -> bool:
    """False when the browser says the form came from another site.

    Browsers say it in `Sec-Fetch-Site`, else in `Origin` (else `Referer`); a client that sends
    none of them (curl, a script holding a key) is not a browser tricked by another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return True
    return source != "null" and urlsplit(source).netloc == request.headers.get("host", "")


async def _form(request: Request) -> dict[str, str] | None:
    """The urlencoded form's fields (first value each), None when the body is too large."""
    from urllib.parse import parse_qs

    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    try:
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=20)
    except ValueError:  # more fields than any console form has
        return {}
    return {k: v[0] for k, v in fields.items()}

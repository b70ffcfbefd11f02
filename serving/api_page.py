"""The API page a web developer can open: nbo's OpenAPI document and an interactive page over it.

`GET /` (and `/docs`) is a Swagger UI page whose assets are the copy BentoML ships, served by this
server (`/static_content/...`), and whose document is `GET /docs.json`; all four need no key, so a
browser opens the page without one. "Authorize" takes an API key, which the calls made from the
page then send as `Authorization: Bearer <key>`; every call still needs one (the Guard). The page
is BentoML's index without its Google Tag Manager script, GitHub banner and badge images: with its
Content-Security-Policy nothing it loads comes from anywhere but this server (tested in Chromium).

`openapi_document` turns BentoML's document into nbo's: the real version and description, the
Bearer scheme (required everywhere but the public paths), and the answers BentoML cannot know (the
Guard's 401 / 413, the store's 503, `detail` as really sent). See docs/service.md §4.
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

STATIC = Path(__file__).parent / "static"
#: The page and its script (the rest of its assets are BentoML's `static_content`).
PAGE_PATHS = frozenset({"/", "/docs", "/api.js"})
#: Paths anyone may read: the page, its assets and the document; no call of the API.
DOC_PATHS = frozenset({*PAGE_PATHS, "/docs.json"})
ASSETS_PREFIX = "/static_content/"
#: Only this server: scripts, styles, images (Swagger UI draws some as data: URIs) and calls.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SCHEME = "bearerAuth"
DESCRIPTION = """\
**nbo** decides, for one customer, now, on one channel, which offers to make (or none), within the
contact policy (caps, consent, cooldowns, quiet hours), and explains why.

- `POST /recommend`: up to `k` offers with scores, expected values and reasons (codes and plain words),
  and every candidate left out with the rule that removed it. An offer returned is reserved: it counts
  towards the caps.
- `POST /feedback`: what the customer did with a shown offer. `POST /forget`: erase a customer (GDPR).
- `POST /admin/reload`: load the current champion models now.

Every call needs an API key: `Authorization: Bearer <key>` (use **Authorize** on this page).
Health (`/healthz`, `/livez`), readiness (`/readyz`) and metrics (`/metrics`) need none.
"""
TAGS = [
    {"name": "Service APIs", "description": "Decisions, feedback and erasure (an API key is required)."},
    {"name": "Infrastructure", "description": "Health, readiness and metrics (no key)."},
]


def nbo_version() -> str:
    try:
        return version("nbo")
    except PackageNotFoundError:  # pragma: no cover - nbo runs installed (make install)
        return "unknown"


def openapi_document(document: dict[str, Any], public_paths: frozenset[str]) -> dict[str, Any]:
    """BentoML's document as nbo's: title, version and description, the Bearer scheme required on
    every operation but those of `public_paths`, nbo's tags."""
    document["info"] = {"title": "nbo", "version": nbo_version(), "description": DESCRIPTION}
    document["tags"] = TAGS
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[SCHEME] = {"type": "http", "scheme": "bearer",
                       "description": "An API key of this service (NBO_API_KEYS or NBO_API_KEYS_FILE)."}
    document["security"] = [{SCHEME: []}]
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            if isinstance(operation, dict) and path in public_paths:
                operation["security"] = []
    return document


@functools.cache
def page(path: str) -> tuple[bytes, bytes]:
    """(body, content type) of one of `PAGE_PATHS`."""
    if path == "/api.js":
        return (STATIC / "api.js").read_bytes(), b"text/javascript; charset=utf-8"
    return (STATIC / "api.html").read_bytes(), b"text/html; charset=utf-8"

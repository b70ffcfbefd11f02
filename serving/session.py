"""Console sessions: a signed, expiring cookie issued in exchange for an API key (docs/console.md).

The console at `/console` is used from a browser, which cannot send `Authorization: Bearer` on a
link or a form. Its login form takes one of the service's API keys and answers with a cookie
(`HttpOnly`, `SameSite=Strict`, `Path=/console`); every other console page needs that cookie.

The cookie is stateless, so it works on every worker of the service without a shared store:

    v1.<expires: epoch seconds>.<nonce: 32 hex>.<HMAC-SHA256(signing key, "v1.<expires>.<nonce>"): 64 hex>

The signing key is derived from the API key that logged in (HMAC of the key with a fixed label:
the key itself never signs anything else), so a session ends when its key is removed from the
service's keys, and a cookie never carries the key. Every comparison is constant-time and runs over
every configured key (no early exit: the time taken does not say which key matched). Logout clears
the cookie in the browser; a copied cookie stays valid until it expires (`SESSION_TTL_S`).

The Guard (`serving.service`) and the console application both check sessions with this module:
one definition of what a valid session is.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable

#: The cookie's name; its path is the console's (`CONSOLE_PATH`), so the API never receives it.
COOKIE = "nbo_console"
CONSOLE_PATH = "/console"
#: Console paths reachable without a session: the login form and its stylesheet.
PUBLIC_CONSOLE_PATHS = frozenset({"/console/login", "/console/static/console.css"})
#: How long a session lasts (seconds): a working day.
SESSION_TTL_S = 8 * 3600
_LABEL = b"nbo-console-session-v1"
_TOKEN = re.compile(r"v1\.([0-9]{1,12})\.([0-9a-f]{32})\.([0-9a-f]{64})")
#: Longest cookie header read (bytes): anything longer is not ours.
MAX_COOKIE_HEADER = 8192


def key_matches(keys: Iterable[bytes], supplied: bytes) -> bool:
    """True if `supplied` is one of `keys`, compared in constant time against every key."""
    ok = False
    for key in keys:  # no early exit
        ok |= hmac.compare_digest(supplied, key)
    return ok


def _signing_key(key: bytes) -> bytes:
    return hmac.new(key, _LABEL, hashlib.sha256).digest()


def _mac(key: bytes, payload: bytes) -> str:
    return hmac.new(_signing_key(key), payload, hashlib.sha256).hexdigest()


def issue(key: bytes, now: float | None = None, ttl_s: int = SESSION_TTL_S) -> str:
    """A new session token for a client that proved it holds `key` (the caller checked it)."""
    expires = int((time.time() if now is None else now) + ttl_s)
    payload = f"v1.{expires}.{secrets.token_hex(16)}"
    return f"{payload}.{_mac(key, payload.encode())}"


def valid(keys: Iterable[bytes], token: str | None, now: float | None = None, ttl_s: int = SESSION_TTL_S) -> bool:
    """True if `token` was issued for one of `keys` and has not expired."""
    if not token or len(token) > 200:
        return False
    match = _TOKEN.fullmatch(token)
    if match is None:
        return False
    expires = int(match[1])
    t = time.time() if now is None else now
    if not t < expires <= t + ttl_s + 60:  # expired, or further ahead than any token we issue
        return False
    payload = f"v1.{match[1]}.{match[2]}".encode()
    supplied = match[3].encode()
    ok = False
    for key in keys:  # no early exit
        ok |= hmac.compare_digest(supplied, _mac(key, payload).encode())
    return ok


def cookie_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The session cookie's value in raw ASGI headers, or None (several cookie headers are joined)."""
    parts = [v for n, v in headers if n == b"cookie"]
    raw = b"; ".join(parts)
    if not raw or len(raw) > MAX_COOKIE_HEADER:
        return None
    for item in raw.split(b";"):
        name, sep, value = item.strip().partition(b"=")
        if sep and name == COOKIE.encode():
            try:
                return value.decode("ascii").strip('"')
            except UnicodeDecodeError:
                return None
    return None


def is_console_path(path: str) -> bool:
    """True for `/console` and everything under it (not `/consoleX`)."""
    return path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


def set_cookie_header(token: str, secure: bool, ttl_s: int = SESSION_TTL_S) -> str:
    """The `Set-Cookie` value of a new session."""
    flags = f"; Max-Age={ttl_s}; Path={CONSOLE_PATH}; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={token}{flags}{'; Secure' if secure else ''}"


def clear_cookie_header(secure: bool) -> str:
    """The `Set-Cookie` value that ends a session in the browser."""
    return f"{COOKIE}=; Max-Age=0; Path={CONSOLE_PATH}; HttpOnly; SameSite=Strict{'; Secure' if secure else ''}"


def console_allowed(path: str, headers: Iterable[tuple[bytes, bytes]], keys: Iterable[bytes]) -> bool:
    """The Guard's rule for a console path: the login form and its stylesheet are public; every other
    console path needs a valid session cookie (an `Authorization` header is not a session)."""
    return path in PUBLIC_CONSOLE_PATHS or valid(tuple(keys), cookie_from_headers(headers))


#: Where the Guard sends a browser without a session.
LOGIN_REDIRECT = [(b"location", f"{CONSOLE_PATH}/login".encode()), (b"content-length", b"0"),
                  (b"cache-control", b"no-store")]

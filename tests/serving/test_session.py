"""Console sessions (`serving.session`): signed, expiring, bound to a configured key, constant-time."""

from __future__ import annotations

import pytest

from serving import session

KEY = b"k" * 24
OTHER = b"o" * 24


def test_a_session_is_valid_for_its_key_until_it_expires() -> None:
    token = session.issue(KEY, now=1_000_000.0)
    assert session.valid((OTHER, KEY), token, now=1_000_000.0)
    assert session.valid((KEY,), token, now=1_000_000.0 + session.SESSION_TTL_S - 1)
    assert not session.valid((KEY,), token, now=1_000_000.0 + session.SESSION_TTL_S)  # expired
    assert not session.valid((OTHER,), token, now=1_000_000.0)  # its key was removed
    assert not session.valid((), token, now=1_000_000.0)
    assert KEY.decode() not in token  # the cookie never carries the key


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),  # signature
    lambda t: t.replace("v1.", "v2.", 1),
    lambda t: "v1.9999999999." + t.split(".", 2)[2],  # expiry moved (signature no longer matches)
    lambda t: t + "x",
    lambda t: "",
    lambda t: "<script>",
    lambda t: "v1." * 500,
])
def test_a_tampered_token_is_refused(mutate) -> None:  # noqa: ANN001
    token = session.issue(KEY, now=1_000_000.0)
    assert not session.valid((KEY,), mutate(token), now=1_000_000.0)


def test_a_token_far_in_the_future_is_refused() -> None:
    token = session.issue(KEY, now=1_000_000.0, ttl_s=10 * session.SESSION_TTL_S)
    assert not session.valid((KEY,), token, now=1_000_000.0)


def test_key_matches_compares_every_key() -> None:
    assert session.key_matches((OTHER, KEY), KEY)
    assert not session.key_matches((OTHER, KEY), KEY[:-1])
    assert not session.key_matches((), KEY)


def test_cookie_parsing() -> None:
    token = session.issue(KEY)
    headers = [(b"cookie", b"a=1; " + session.COOKIE.encode() + b"=" + token.encode() + b"; b=2")]
    assert session.cookie_from_headers(headers) == token
    assert session.cookie_from_headers([(b"cookie", b"a=1")]) is None
    assert session.cookie_from_headers([(b"cookie", b"x" * (session.MAX_COOKIE_HEADER + 1))]) is None
    assert session.cookie_from_headers([(b"cookie", session.COOKIE.encode() + b"=\xff")]) is None


def test_cookie_attributes() -> None:
    header = session.set_cookie_header("t", secure=False)
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/console" in header
    assert "Secure" in session.set_cookie_header("t", secure=True)
    assert "Max-Age=0" in session.clear_cookie_header(secure=False)


def test_console_paths() -> None:
    assert session.is_console_path("/console") and session.is_console_path("/console/x")
    assert not session.is_console_path("/consoles") and not session.is_console_path("/recommend")

"""The console in a real headless Chromium, through a real `nbo serve` on 127.0.0.1.

The server is the one `tests/serving/test_http.py` starts (one per session, on the shared simulated
world). Debian's chromium (`/usr/bin/chromium`, installed by `make install`) driven by Playwright;
every request the browser makes is intercepted, and any that would leave 127.0.0.1 fails the test.
Skipped, with the reason, where chromium or Playwright is missing. Also here: the Guard's rules for
console paths over plain HTTP (a session cookie is not an API key, an API key is not a session).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from serving import session
from tests.serving.test_http import KEY, Server, server  # noqa: F401 - the shared server fixture

CHROMIUM = "/usr/bin/chromium"

try:
    from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extras install it
    sync_playwright = None  # type: ignore[assignment]

needs_browser = pytest.mark.skipif(
    sync_playwright is None or shutil.which(CHROMIUM) is None,
    reason=f"needs Playwright (pip install -e '.[dev]') and Debian's chromium at {CHROMIUM} (make install)",
)


# ------------------------------------------------------------------------------ plain HTTP
def test_guard_sends_a_browser_without_a_session_to_the_login(server: Server) -> None:  # noqa: F811
    for path in ("/console/", "/console", "/console/customer?id=x", "/console/models", "/console/whatif"):
        r = httpx.get(server.url + path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/console/login", path
    # an API key is not a session
    r = httpx.get(server.url + "/console/", headers={"Authorization": f"Bearer {KEY}"}, follow_redirects=False)
    assert r.status_code == 303
    r = httpx.post(server.url + "/console/whatif", data={"draft": "x"}, follow_redirects=False)
    assert r.status_code == 303
    login = httpx.get(server.url + "/console/login")
    assert login.status_code == 200 and "default-src 'none'" in login.headers["content-security-policy"]
    assert httpx.get(server.url + "/console/static/console.css").status_code == 200


def test_a_session_is_not_an_api_key(server: Server) -> None:  # noqa: F811
    with httpx.Client(base_url=server.url, follow_redirects=False) as c:
        assert c.post("/console/login", data={"key": "wrong-key-0000000000"}).status_code == 401
        r = c.post("/console/login", data={"key": KEY})
        assert r.status_code == 303 and session.COOKIE in c.cookies
        assert c.get("/console/").status_code == 200
        body = {"customer_id": server.customers[0], "channel": "web"}
        assert c.post("/recommend", json=body).status_code == 401  # the cookie opens the console only
        # the Guard's body limit holds on console forms too
        assert c.post("/console/login", content=b"key=" + b"x" * 40_000,
                      headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 413


# ------------------------------------------------------------------------------ the browser
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None or shutil.which(CHROMIUM) is None:
        pytest.skip(f"needs Playwright and Debian's chromium at {CHROMIUM} (make install)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


class Watched:
    """A browser context whose every request is checked: anything not for 127.0.0.1 is aborted and noted."""

    def __init__(self, browser: Browser) -> None:
        self.context: BrowserContext = browser.new_context()
        self.seen: list[str] = []
        self.left: list[str] = []
        self.errors: list[str] = []  # the browser's console errors (a CSP violation is one)
        self.context.route("**/*", self._route)
        self.context.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def _route(self, route) -> None:  # noqa: ANN001
        url = route.request.url
        self.seen.append(url)
        parts = urlsplit(url)
        if parts.scheme == "data" or parts.hostname == "127.0.0.1":
            route.continue_()
        else:
            self.left.append(url)
            route.abort()

    def close(self) -> None:
        self.context.close()
        assert not self.left, f"requests left 127.0.0.1: {self.left}"
        assert not [e for e in self.errors if "Content Security Policy" in e], self.errors


def _login(page: Page, url: str, key: str) -> None:
    page.goto(url + "/console/")
    assert page.url.endswith("/console/login")
    page.fill("#key", key)
    with page.expect_navigation():
        page.click("button[type=submit]")


@needs_browser
def test_login_with_a_wrong_key_fails_and_the_right_one_works(browser: Browser, server: Server) -> None:  # noqa: F811
    watched = Watched(browser)
    page = watched.context.new_page()
    _login(page, server.url, "not-the-key-0000000000")
    assert page.locator("#login-error").is_visible()
    assert not [c for c in watched.context.cookies() if c["name"] == session.COOKIE]
    page.fill("#key", KEY)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.wait_for_url("**/console/")
    cookie = next(c for c in watched.context.cookies() if c["name"] == session.COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert KEY not in page.url and KEY not in cookie["value"]
    page.click("form.logout button")
    page.wait_for_url("**/console/login")
    page.goto(server.url + "/console/models")
    assert page.url.endswith("/console/login")
    watched.close()


@pytest.fixture(scope="module")
def console(browser: Browser, server: Server) -> Iterator[Watched]:  # noqa: F811
    watched = Watched(browser)
    page = watched.context.new_page()
    _login(page, server.url, KEY)
    page.wait_for_url("**/console/")
    page.close()
    yield watched
    watched.close()


@needs_browser
def test_a_customer_is_found_and_a_decision_is_shown(console: Watched, server: Server) -> None:  # noqa: F811
    page = console.context.new_page()
    page.goto(server.url + "/console/")
    cid = server.customers[3]
    page.fill("#q", cid[:-1])
    page.click("form.search button")
    page.locator("#found a", has_text=cid).first.click()
    page.wait_for_selector("#customer-id")
    assert page.inner_text("#customer-id") == cid
    assert page.locator("#budget tr").count() == 7  # a header and the six contact channels
    assert page.locator("#stages tr").count() > 1
    chart = page.locator("#timeline-chart")
    assert chart.evaluate("img => img.complete && img.naturalWidth > 0")
    page.click("text=decide for this customer now")
    page.wait_for_selector("#decision-summary")
    assert cid in page.inner_text("#decision-summary")
    assert page.locator("#offers tr").count() >= 2 and page.locator("#suppressed tr").count() >= 2
    # another channel through the form
    page.select_option("select[name=channel]", "email")
    page.click("form.decide button")
    page.wait_for_selector("#decision-summary")
    assert "email" in page.inner_text("#decision-summary")
    page.close()


@needs_browser
def test_programmes_and_models(console: Watched, server: Server) -> None:  # noqa: F811
    page = console.context.new_page()
    page.goto(server.url + "/console/")
    page.click("nav >> text=programmes & models")
    page.wait_for_selector("#lift-placeholder")
    text = page.inner_text("main")
    assert "nbo-propensity" in text and "@champion" in text
    # the champions' report charts (open by default) load from the registry through the console
    assert page.locator("details[open] img.chart").count() >= 1
    page.wait_for_function("() => Array.from(document.querySelectorAll('details[open] img.chart'))"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
    page.close()


@needs_browser
def test_a_whatif_runs_and_shows_its_chart(console: Watched, server: Server) -> None:  # noqa: F811
    page = console.context.new_page()
    page.goto(server.url + "/console/whatif")
    draft = page.input_value("#draft")
    assert "[caps]" in draft
    page.fill("#draft", draft + "\n[caps\n")  # a bad draft: the loader's line, nothing runs
    page.click("#run")
    page.wait_for_selector("#draft-error")
    assert "TOML syntax error" in page.inner_text("#draft-error")
    looser = draft.replace("email = { max = 2, days = 7 }", "email = { max = 5, days = 7 }")
    page.fill("#draft", looser)
    page.fill("input[name=customers]", "50")
    page.fill("input[name=days]", "7")
    page.click("#run")
    page.wait_for_url("**/console/whatif/job?id=*")
    page.wait_for_selector("#whatif-chart, #job-failed", timeout=180_000)
    assert page.locator("#job-failed").count() == 0, page.inner_text("main")
    assert page.locator("#whatif-chart").evaluate("img => img.complete && img.naturalWidth > 0")
    table = page.inner_text("#whatif-table")
    assert "policy in force" in table and "draft" in table and "contacts" in table
    page.close()

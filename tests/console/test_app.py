"""The console application without a browser (Starlette's TestClient), on the shared simulated world.

Sessions, the security headers, unknown and hostile input, the live decision equal to the engine's
own (one pipeline, nothing reserved), and drafts the typed loader refuses (nothing runs).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from markupsafe import escape
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from console import ConsoleBackend, create_app
from serving import session
from serving.engine import DecisionEngine
from tests.serving.test_engine import NOW, World, world  # noqa: F401 - the shared world fixture

KEY = "console-test-key-1234567890"
HOSTILE = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def backend(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleBackend]:  # noqa: F811
    work = tmp_path_factory.mktemp("console")
    engine = DecisionEngine.from_settings(world.settings(work / "contacts.db"))
    assert engine.models is not None, engine.models_error
    yield ConsoleBackend.from_engine(engine, (KEY.encode(),), lambda: NOW, work / "state")
    engine.close()


@pytest.fixture(scope="module")
def anonymous(backend: ConsoleBackend) -> TestClient:
    app = Starlette(routes=[Mount("/console", create_app(backend))])
    return TestClient(app, base_url="http://127.0.0.1:3000", follow_redirects=False)


@pytest.fixture(scope="module")
def client(backend: ConsoleBackend) -> TestClient:
    app = Starlette(routes=[Mount("/console", create_app(backend))])
    c = TestClient(app, base_url="http://127.0.0.1:3000", follow_redirects=False)
    r = c.post("/console/login", data={"key": KEY})
    assert r.status_code == 303, r.text
    return c


PAGES = ["/console/", "/console/customer?id=x", "/console/decision", "/console/models", "/console/whatif",
         "/console/whatif/job?id=0123456789abcdef", "/console/models/chart?run=x&path=y.png"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_session(anonymous: TestClient, path: str) -> None:
    r = anonymous.get(path)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert "content-security-policy" in r.headers


def test_post_without_a_session_runs_nothing(anonymous: TestClient, backend: ConsoleBackend) -> None:
    r = anonymous.post("/console/whatif", data={"draft": "[caps]\n"})
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert not (backend.work_dir / "whatif").exists() or not any((backend.work_dir / "whatif").iterdir())


def test_login(backend: ConsoleBackend) -> None:
    c = TestClient(Starlette(routes=[Mount("/console", create_app(backend))]), base_url="http://127.0.0.1:3000",
                   follow_redirects=False)
    page = c.get("/console/login")
    assert page.status_code == 200 and 'name="key"' in page.text
    for wrong in ("", "nope", KEY[:-1], KEY + "x", "k" * 5000):
        r = c.post("/console/login", data={"key": wrong})
        assert r.status_code == 401 and "set-cookie" not in r.headers, wrong
    assert c.get("/console/").status_code == 303
    r = c.post("/console/login", data={"key": KEY})
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{session.COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/console" in cookie and KEY not in cookie
    assert c.get("/console/").status_code == 200
    # a tampered cookie is no session
    tampered = c.cookies[session.COOKIE][:-2] + "00"
    c.cookies.clear()
    c.cookies.set(session.COOKIE, tampered)
    assert c.get("/console/").status_code == 303
    # logging out clears the cookie
    c.post("/console/login", data={"key": KEY})
    out = c.post("/console/logout")
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    assert c.get("/console/").status_code == 303


def test_a_cross_site_form_is_refused(backend: ConsoleBackend) -> None:
    c = TestClient(Starlette(routes=[Mount("/console", create_app(backend))]), base_url="http://127.0.0.1:3000",
                   follow_redirects=False)
    for headers in ({"origin": "http://evil.example"}, {"origin": "null"}, {"referer": "http://evil.example/x"},
                    {"sec-fetch-site": "cross-site", "origin": "http://127.0.0.1:3000"}):
        r = c.post("/console/login", data={"key": KEY}, headers=headers)
        assert r.status_code == 403 and "set-cookie" not in r.headers, headers
    for headers in ({"sec-fetch-site": "same-origin", "origin": "null"}, {"origin": "http://127.0.0.1:3000"}, {}):
        assert c.post("/console/login", data={"key": KEY}, headers=headers).status_code == 303, headers


def test_security_headers(client: TestClient, anonymous: TestClient) -> None:
    for r in (client.get("/console/"), anonymous.get("/console/login")):
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
        assert "<script" not in r.text and "http://" not in r.text and "https://" not in r.text


def test_find_and_show_a_customer(client: TestClient, backend: ConsoleBackend) -> None:
    cid = backend.engine.features.index[5]
    r = client.get("/console/", params={"q": cid[:3]})
    assert r.status_code == 200 and cid[:3] in r.text
    r = client.get("/console/customer", params={"id": cid})
    assert r.status_code == 200, r.text
    for part in ('id="budget"', 'id="stages"', 'id="consents"', 'id="contacts"', 'id="events"', 'id="timeline-chart"'):
        assert part in r.text, part
    assert "data:image/svg+xml;base64," in r.text
    # the budget table has one row per contact channel
    budget = r.text.split('id="budget"')[1].split("</table>")[0]
    assert budget.count("<tr") == 1 + 6


def test_unknown_customer_is_404(client: TestClient) -> None:
    r = client.get("/console/customer", params={"id": "no-such-customer"})
    assert r.status_code == 404 and 'id="unknown"' in r.text
    r = client.get("/console/", params={"q": "zzz-no-such"})
    assert r.status_code == 200 and 'id="not-found"' in r.text


@pytest.mark.parametrize("path", ["/console/customer", "/console/decision", "/console/"])
def test_hostile_ids_are_escaped_or_refused(client: TestClient, path: str) -> None:
    name = "q" if path == "/console/" else "id"
    r = client.get(path, params={name: HOSTILE, "channel": "web"})
    assert r.status_code in (200, 404), r.text
    assert HOSTILE not in r.text and "<script" not in r.text
    assert "&lt;script&gt;" in r.text
    for bad in ("x" * 129, "x" * 20_000, "a\x00b", "a\nb"):
        r = client.get(path, params={name: bad, "channel": "web"})
        assert r.status_code == 400, (path, bad[:10])
        assert bad not in r.text


@pytest.mark.parametrize(("params", "field"), [
    ({"channel": "fax"}, "channel"),
    ({"channel": HOSTILE}, "channel"),
    ({"k": "0"}, "k"),
    ({"k": "21"}, "k"),
    ({"k": "two"}, "k"),
    ({"page_category": "toys"}, "page_category"),
    ({"device": "toaster"}, "device"),
])
def test_bad_decision_fields_are_400_naming_the_field(client: TestClient, backend: ConsoleBackend,
                                                      params: dict, field: str) -> None:
    query = {"id": backend.engine.features.index[0], "channel": "web", **params}
    r = client.get("/console/decision", params=query)
    assert r.status_code == 400 and f"{field}:" in r.text
    assert "<script" not in r.text


def test_the_decision_is_the_engines_and_reserves_nothing(client: TestClient, backend: ConsoleBackend) -> None:
    engine = backend.engine
    for cid in engine.features.index[:30]:
        before = engine.desk.read_customer(cid, NOW).history
        r = client.get("/console/decision", params={"id": cid, "channel": "email", "k": "3"})
        assert r.status_code == 200, r.text
        after = engine.desk.read_customer(cid, NOW).history
        assert after.contacts == before.contacts  # a preview: nothing recorded
        expected = engine.decide(cid, "email", None, NOW, k=3, reserve=False)
        shown = re.findall(r"<td><strong>([^<]+)</strong>", r.text.split('id="offers"')[1].split("</table>")[0])
        assert shown == [o.offer_id for o in expected.offers]
        removed = r.text.split('id="suppressed"')[1].split("</table>")[0]
        for s in expected.suppressed:
            assert f"<code>{s.reason}</code>" in removed
            assert f'<td class="reason-text">{escape(s.reason_text)}</td>' in removed  # in plain words
        offers = r.text.split('id="offers"')[1].split("</table>")[0]
        for o in expected.offers:
            for text in o.reason_texts:
                assert f'<span class="reason-text">{escape(text)}</span>' in offers
        if expected.offers and expected.suppressed:
            break
    else:
        pytest.fail("no customer with both offers and suppressions among the first 30")


def test_unknown_customer_decision_is_the_fallback(client: TestClient) -> None:
    r = client.get("/console/decision", params={"id": "no-such-customer", "channel": "web"})
    assert r.status_code == 404 and "fallback" in r.text


@pytest.mark.parametrize(("draft", "says"), [
    ("[caps\nemail = 1", "TOML syntax error"),
    ("[caps]\nemail = { max = -1, days = 7 }\n", "caps.email.max"),
    ("[arbitration.exploration]\nrate = 2.0\n", "arbitration.exploration.rate"),
    ("[nonsense]\nx = 1\n", "nonsense"),
    ("", "draft"),
    (HOSTILE, "TOML syntax error"),
])
def test_a_bad_draft_shows_the_error_and_runs_nothing(client: TestClient, backend: ConsoleBackend,
                                                      draft: str, says: str) -> None:
    jobs = backend.work_dir / "whatif"
    before = sorted(p.name for p in jobs.iterdir()) if jobs.exists() else []
    r = client.post("/console/whatif", data={"draft": draft, "scorer": "oracle", "customers": "50", "days": "7"})
    assert r.status_code == 400 and 'id="draft-error"' in r.text and says in r.text, r.text[-2000:]
    assert "<script" not in r.text
    after = sorted(p.name for p in jobs.iterdir()) if jobs.exists() else []
    assert after == before


@pytest.mark.parametrize(("field", "value"), [("customers", "100000"), ("days", "0"), ("scorer", "magic"),
                                              ("seed", "-1"), ("customers", "many")])
def test_bad_whatif_sizes_are_400_naming_the_field(client: TestClient, backend: ConsoleBackend,
                                                   field: str, value: str) -> None:
    form = {"draft": backend.policy_text(), "scorer": "oracle", "customers": "50", "days": "7", field: value}
    r = client.post("/console/whatif", data=form)
    assert r.status_code == 400 and f"{field}:" in r.text


def test_unknown_job_and_chart_are_404(client: TestClient) -> None:
    assert client.get("/console/whatif/job", params={"id": "../../etc"}).status_code == 404
    assert client.get("/console/whatif/job", params={"id": "0" * 16}).status_code == 404
    assert client.get("/console/models/chart", params={"run": "0" * 32, "path": "report/x.png"}).status_code == 404
    assert client.get("/console/models/chart", params={"run": "../x", "path": "../../etc/passwd"}).status_code == 404


def test_models_page_lists_the_champions(client: TestClient) -> None:
    r = client.get("/console/models")
    assert r.status_code == 200, r.text
    assert "nbo-propensity" in r.text and "nbo-churn" in r.text and "@champion" in r.text
    assert 'id="lift-placeholder"' in r.text
    charts = re.findall(r'src="(/console/models/chart\?[^"]+)"', r.text)
    if charts:  # the world's models log report charts
        png = client.get(charts[0].replace("&amp;", "&"))
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_whatif_form_starts_with_the_policy_in_force(client: TestClient, backend: ConsoleBackend) -> None:
    from serving.policy import parse_policy

    r = client.get("/console/whatif")
    assert r.status_code == 200
    draft = r.text.split('id="draft"')[1].split(">", 1)[1].split("</textarea>")[0]
    import html

    assert parse_policy(html.unescape(draft)) == backend.engine.policy


def test_package_files_exist() -> None:
    root = Path(__file__).resolve().parents[2] / "console"
    assert (root / "static" / "console.css").exists() and (root / "templates" / "base.html").exists()


def test_a_whatif_runs_once_at_a_time_and_shows_its_comparison(client: TestClient, backend: ConsoleBackend) -> None:
    import time

    draft = backend.policy_text().replace("email = { max = 2, days = 7 }", "email = { max = 5, days = 7 }")
    form = {"draft": draft, "scorer": "oracle", "customers": "50", "days": "7", "seed": "3"}
    r = client.post("/console/whatif", data=form)
    assert r.status_code == 303 and "/console/whatif/job?id=" in r.headers["location"], r.text[-500:]
    job = r.headers["location"]
    busy = client.post("/console/whatif", data=form)
    assert busy.status_code == 409 and "already running" in busy.text
    deadline = time.monotonic() + 180
    while True:
        page = client.get(job)
        assert page.status_code == 200
        if 'id="job-running"' not in page.text:
            break
        assert page.headers["refresh"] == "2"
        assert time.monotonic() < deadline, "the what-if did not finish in 180 s"
        time.sleep(0.5)
    assert 'id="whatif-chart"' in page.text and "data:image/svg+xml;base64," in page.text, page.text[-1500:]
    table = page.text.split('id="whatif-table"')[1].split("</table>")[0]
    assert "policy in force" in table and "draft" in table and "long_term_value" in table


def test_an_erased_customer_shows_nothing(client: TestClient, backend: ConsoleBackend) -> None:
    cid = backend.engine.features.index[-1]
    assert client.get("/console/customer", params={"id": cid}).status_code == 200
    backend.engine.forget(cid)
    r = client.get("/console/customer", params={"id": cid})
    assert r.status_code == 404 and 'id="erased"' in r.text
    assert 'id="events"' not in r.text and 'id="budget"' not in r.text


def test_an_ope_whatif_estimates_both_policies_on_the_logged_decisions(client: TestClient, backend: ConsoleBackend) -> None:
    import time

    draft = backend.policy_text().replace("rate = 0.05", "rate = 0.3")
    assert "rate = 0.3" in draft
    r = client.post("/console/whatif", data={"draft": draft, "method": "ope"})
    assert r.status_code == 303, r.text[-800:]
    deadline = time.monotonic() + 300
    while 'id="job-running"' in (page := client.get(r.headers["location"])).text:
        assert time.monotonic() < deadline, "the OPE what-if did not finish in 300 s"
        time.sleep(0.5)
    assert 'id="whatif-chart"' in page.text, page.text[-1500:]
    table = page.text.split('id="whatif-table"')[1].split("</table>")[0]
    assert "value_dr" in table and "effective_sample_size" in table and "the logging policy" in table
    print("OPE what-if:", re.search(r"Done in ([0-9.]+) s[^<]*", page.text)[0])

"""The API page a web developer can open (issue 23 item 3), on a real `nbo serve` on 127.0.0.1.

`GET /docs.json` is nbo's document (version, description, the Bearer scheme), not BentoML's
boilerplate; `GET /` opens without a key in a real headless Chromium with no request leaving
127.0.0.1, and a call made from the page carries the key given to "Authorize".
"""

from __future__ import annotations

import json
from importlib.metadata import version

import httpx

from tests.console.test_browser import Watched, browser, needs_browser  # noqa: F401 - the browser fixture
from tests.serving.test_http import KEY, Server, server  # noqa: F401 - the shared server fixture


def test_the_document_is_nbos_and_declares_the_bearer_scheme(server: Server) -> None:  # noqa: F811
    r = httpx.get(server.url + "/docs.json")  # no key: what the API is, not a call of it
    assert r.status_code == 200
    doc = r.json()
    assert doc["info"]["title"] == "nbo" and doc["info"]["version"] == version("nbo")
    assert "/recommend" in doc["info"]["description"] and "contact" not in doc["info"]
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"]}
    assert doc["security"] == [{"bearerAuth": []}]
    for path in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert doc["paths"][path]["get"]["security"] == []  # no key there
    assert "security" not in doc["paths"]["/recommend"]["post"]  # the document's: a key
    text = json.dumps(doc)
    for boilerplate in ("BentoML Team", "img.shields.io", "join-slack", "googletagmanager"):
        assert boilerplate not in text
    # Calls still need the key.
    body = {"customer_id": server.customers[0], "channel": "web"}
    assert server.post("/recommend", body, key=None).status_code == 401
    assert httpx.post(server.url + "/docs.json").status_code == 405


def test_the_page_opens_without_a_key_and_loads_nothing_from_elsewhere(server: Server) -> None:  # noqa: F811
    for path in ("/", "/docs"):
        r = httpx.get(server.url + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "googletagmanager" not in r.text and "https://" not in r.text
        assert "default-src 'none'" in r.headers["content-security-policy"]
    assert httpx.get(server.url + "/static_content/swagger-ui-bundle.js").status_code == 200
    assert httpx.get(server.url + "/api.js").status_code == 200


@needs_browser
def test_the_page_in_a_browser_calls_the_api_with_the_key(browser, server: Server) -> None:  # noqa: F811, ANN001
    watched = Watched(browser)
    page = watched.context.new_page()
    sent: list[dict[str, str]] = []
    page.on("request", lambda req: sent.append(req.headers) if req.url.endswith("/recommend") else None)
    try:
        page.goto(server.url + "/")
        page.wait_for_selector(".opblock-post", timeout=30_000)
        assert page.locator(".info .title").inner_text().startswith("nbo")
        assert version("nbo") in page.locator(".info .title").inner_text()
        # Authorize with the key, then call POST /recommend from the page.
        page.click("button.authorize")
        page.locator(".auth-container input").first.fill(KEY)
        page.locator(".auth-btn-wrapper button.authorize").click()
        page.locator("button.btn-done").click()
        recommend = page.locator(".opblock-post", has_text="/recommend").first
        recommend.locator(".opblock-summary").click()
        recommend.locator("button.try-out__btn").click()
        body = json.dumps({"customer_id": server.customers[3], "channel": "web", "k": 2})
        recommend.locator("textarea.body-param__text").fill(body)
        recommend.locator("button.execute").click()
        status = recommend.locator(".live-responses-table tr.response .response-col_status").first
        status.wait_for(timeout=30_000)
        assert status.inner_text().strip().startswith("200")
        assert sent and sent[-1].get("authorization") == f"Bearer {KEY}"
    finally:
        watched.close()  # fails if any request left 127.0.0.1, or the page broke its policy

"""Hostile HTTP input, property-based, from the service's own OpenAPI document (schemathesis).

A real `nbo serve` on 127.0.0.1 (the `server` fixture of test_http.py: 2 workers, SQLite store,
simulated clock; the same instance as test_http.py, started once). For every operation the document lists,
schemathesis generates requests that follow the schema (positive) and requests that break it
(negative: wrong types, missing or extra fields, out-of-range values, bad media types), bounded to
`EXAMPLES` per operation and mode. Checks on every example:

- no 5xx, ever;
- a 2xx answer conforms to the documented response schema and content type;
- a 4xx answer is JSON with an `error` message;
- the same request without a valid key (none, wrong key, wrong scheme, random text) is a 401.

Error bodies too: BentoML documents 400/404 bodies as `{"error": str, "detail": str}` but sends a
400's `detail` as pydantic's list of errors; the service corrects its document
(`serving.guard.corrected_openapi`), and the 404 of `/feedback` carries `error`.
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.serving.test_http import KEY, OTHER_KEY, Server, server  # noqa: F401 - `server` is a fixture

EXAMPLES = 25
AUTH = {"Authorization": f"Bearer {KEY}"}
PROTECTED = [("/recommend", "POST"), ("/feedback", "POST"), ("/forget", "POST"), ("/consents", "POST"),
             ("/events", "POST"), ("/customer", "POST"), ("/outbox/ack", "POST"), ("/admin/reload", "POST")]
#: Answers a schema-valid request may get besides 200: unknown ids, live input out of range, conflicts.
REFUSALS = {"/feedback": {404}, "/consents": {404, 422}, "/events": {404, 409, 422}, "/customer": {404}}
PUBLIC = [("/healthz", "GET"), ("/livez", "GET"), ("/readyz", "GET"), ("/metrics", "GET")]
BAD_AUTH = st.one_of(
    st.none(),
    st.sampled_from(["", "Bearer", "Bearer ", "Bearer wrong", f"Basic {KEY}", KEY, f"Bearer {KEY}x", f"Bearer  {KEY}x",
                     f"Bearer {KEY[:-1]}", f"Bearer {OTHER_KEY},{KEY}", "Bearer \u00e9", "Bearer " + "k" * 5000]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80),
).filter(lambda v: v is None or v == v.strip())  # httpx refuses to send a header with outer whitespace
VALID = {f"Bearer {KEY}", f"Bearer {OTHER_KEY}"}
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def api_schema(server: Server) -> schemathesis.BaseSchema:  # noqa: F811
    raw = httpx.get(server.url + "/docs.json", headers=AUTH, timeout=10).json()
    return schemathesis.openapi.from_dict(raw)


def test_the_document_lists_every_endpoint(api_schema: schemathesis.BaseSchema) -> None:
    listed = {(op.ok().path, op.ok().method.upper()) for op in api_schema.get_all_operations()}
    assert listed == set(PROTECTED) | set(PUBLIC), "a new endpoint: add it to PROTECTED or PUBLIC here"


def _unauthenticated(server: Server, case: schemathesis.Case, value: str | None) -> httpx.Response:  # noqa: F811
    """The same request, with a bad Authorization header (or none), sent raw."""
    headers: dict[str, str | bytes] = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if value is not None:
        headers["Authorization"] = value.encode("utf-8")  # raw bytes: non-ASCII keys are sent as UTF-8
    kwargs = case.as_transport_kwargs(base_url=server.url, headers=headers)
    kwargs.pop("headers", None)
    return httpx.request(kwargs["method"], kwargs["url"], headers=headers, content=kwargs.get("data"),
                         params=kwargs.get("params"), timeout=10)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize(("path", "method"), PROTECTED, ids=[p for p, _ in PROTECTED])
def test_protected_endpoint_fuzz(server: Server, api_schema: schemathesis.BaseSchema, path: str,  # noqa: F811
                                 method: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    statuses: Counter[int] = Counter()

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode), bad=BAD_AUTH)
    def check(case: schemathesis.Case, bad: str | None) -> None:
        assume(bad not in VALID)
        response = case.call(base_url=server.url, headers=AUTH, timeout=10)
        statuses[response.status_code] += 1
        if mode is GenerationMode.POSITIVE and 400 <= response.status_code < 500:
            # A request that follows the document is refused only as an unknown decision, or (live
            # input) as an unknown customer or a time out of range.
            unknown = response.status_code in REFUSALS.get(path, set())
            # /recommend's offer_attributes: offers the catalogue does not hold, or an attribute
            # given for some listed offers only, cannot be said in the document (its keys are the
            # service's offer ids); refused with a 400 that names the field, nothing else is.
            unknown = unknown or (path == "/recommend" and response.status_code == 400
                                  and "offer_attributes" in response.json().get("error", "") + str(response.json().get("detail", "")))
            assert unknown, f"a schema-valid request was refused: {response.status_code} {response.text[:300]}"
        assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
        # Every answer, errors included, is documented and follows its documented schema.
        case.validate_response(response, checks=[response_schema_conformance, content_type_conformance,
                                                 status_code_conformance])
        if response.status_code >= 300:
            assert 400 <= response.status_code < 500
            assert isinstance(response.json()["error"], str)
        denied = _unauthenticated(server, case, bad)
        assert denied.status_code == 401, f"{bad!r} -> {denied.status_code}: {denied.text[:200]}"
        assert denied.headers.get("www-authenticate", "").startswith("Bearer")

    check()
    if mode is GenerationMode.POSITIVE:
        answered = statuses[200] + sum(statuses[s] for s in REFUSALS.get(path, ()))
        assert answered > 0, f"no valid request got through: {dict(statuses)}"
    else:
        assert any(400 <= s < 500 for s in statuses), f"no invalid request was refused: {dict(statuses)}"


@pytest.mark.parametrize(("path", "method"), PUBLIC, ids=[p for p, _ in PUBLIC])
def test_public_endpoints_answer_without_a_key(server: Server, api_schema: schemathesis.BaseSchema,  # noqa: F811
                                               path: str, method: str) -> None:
    operation = api_schema[path][method]

    @settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=server.url, timeout=10)
        assert response.status_code == 200, response.text[:200]

    check()


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.lists(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%"),
                          min_size=1, max_size=12), min_size=1, max_size=4).map(lambda p: "/" + "/".join(p)),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    body=st.one_of(st.binary(max_size=200), st.just(b"{}")),
)
def test_any_path_or_method_is_never_a_5xx_and_never_open_without_a_key(server: Server, path: str,  # noqa: F811
                                                                         method: str, body: bytes) -> None:
    public = {p for p, _ in PUBLIC}
    anonymous = httpx.request(method, server.url + path, content=body, timeout=10)
    assert anonymous.status_code < 500
    if path not in public:
        assert anonymous.status_code == 401, f"{method} {path} -> {anonymous.status_code} without a key"
    keyed = httpx.request(method, server.url + path, content=body, headers=AUTH, timeout=10)
    assert keyed.status_code < 500, f"{method} {path} -> {keyed.status_code}: {keyed.text[:200]}"


def test_error_bodies_match_the_documented_schema(server: Server, api_schema: schemathesis.BaseSchema) -> None:  # noqa: F811
    case = api_schema["/recommend"]["POST"].Case(body={"customer_id": "c1", "channel": "fax"})
    response = case.call(base_url=server.url, headers=AUTH, timeout=10)
    assert response.status_code == 400
    assert isinstance(response.json()["detail"], list) and response.json()["detail"][0]["loc"] == ["channel"]
    case.validate_response(response, checks=[response_schema_conformance])
    missing = api_schema["/feedback"]["POST"].Case(body={"decision_id": "nope", "offer_id": "o", "outcome": "accepted"})
    response = missing.call(base_url=server.url, headers=AUTH, timeout=10)
    assert response.status_code == 404 and response.json()["error"]
    missing.validate_response(response, checks=[response_schema_conformance])

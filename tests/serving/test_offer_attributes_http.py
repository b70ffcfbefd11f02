"""Decision-time offer attributes over real HTTP (issue 20 item 2): `nbo serve` on a world of
priced choices; the ranking follows the prices in the request, and a bad price is a 400 naming
the field with nothing recorded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving.helpers import start_nbo_serve, stop_nbo_serve
from tests.serving.priced_world import BRANDS, PricedWorld, build_priced_world

KEY = "priced-test-key-0c41d9"


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, PricedWorld]]:
    world = build_priced_world(tmp_path_factory.mktemp("priced"))
    work = tmp_path_factory.mktemp("priced-serve")
    env = {**os.environ, "NBO_API_KEYS": KEY}
    url, proc, _log, _ = start_nbo_serve(world, work, str(work / "contacts.db"), "--policy", str(world.policy),
                                         "--no-console", "--timeout", "10", env=env, workers=1, name="priced")
    try:
        yield url, world
    finally:
        stop_nbo_serve(proc)


def _post(url: str, path: str, body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}"}
    if isinstance(body, str):
        return httpx.post(url + path, content=body, headers={**headers, "content-type": "application/json"}, timeout=30)
    return httpx.post(url + path, json=body, headers=headers, timeout=30)


def _prices(cheap: str) -> dict[str, dict[str, float]]:
    return {b: {"price": 1.0 if b == cheap else 3.0} for b in BRANDS}


def test_the_ranking_follows_the_prices_of_the_request(priced: tuple[str, PricedWorld]) -> None:
    url, world = priced
    moved = 0
    for cid in world.customers[:12]:
        first = {}
        for cheap in BRANDS:
            r = _post(url, "/recommend", {"customer_id": cid, "channel": "web", "k": 3, "offer_attributes": _prices(cheap)})
            assert r.status_code == 200, r.text
            body = r.json()
            assert not body["fallback"] and len(body["offers"]) == 3, body["suppressed"]
            first[cheap] = body["offers"][0]["offer_id"]
            p = {o["offer_id"]: o["p_accept"] for o in body["offers"]}
            assert sum(p.values()) == pytest.approx(1.0, abs=1e-9)  # a choice: one of the three
        moved += sum(first[cheap] == cheap for cheap in BRANDS)
    # Prices drove the choices of the world: the cheap brand comes first nearly always.
    assert moved >= 0.9 * 12 * len(BRANDS), moved


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"brand_a": {"price": -1.0}, "brand_b": {"price": 2.0}}, "price"),
        ('{"brand_a": {"price": NaN}, "brand_b": {"price": 2.0}}', "price"),
        ({"brand_a": {"price": "cheap"}, "brand_b": {"price": 2.0}}, "price"),
        ({"brand_a": {"price": 1.0}, "brand_b": {"display": 1.0}}, "offer_attributes"),
        ({"brand_a": {"price": 1.0}, "brand_z": {"price": 2.0}}, "offer_attributes"),
    ],
    ids=["negative", "nan", "text", "missing-for-some", "unknown-offer"],
)
def test_a_bad_price_is_a_400_naming_the_field_and_nothing_is_recorded(
    priced: tuple[str, PricedWorld], attributes: object, field: str
) -> None:
    url, world = priced
    cid = world.customers[-1]
    if isinstance(attributes, str):
        body = '{"customer_id": "%s", "channel": "web", "k": 1, "offer_attributes": %s}' % (cid, attributes)
    else:
        body = {"customer_id": cid, "channel": "web", "k": 1, "offer_attributes": attributes}
    r = _post(url, "/recommend", body)
    assert r.status_code == 400, r.text
    assert field in r.text and "offer_attributes" in r.text
    # Nothing was recorded for the customer: forgetting them erases no show.
    assert _post(url, "/forget", {"customer_id": cid}).json()["erased_shows"] == 0


def _score(world: PricedWorld, tmp: Path, prices: str, name: str):  # noqa: ANN202
    from typer.testing import CliRunner

    from cli import app
    from tests.serving.test_engine import NOW

    attrs = tmp / f"{name}.csv"
    attrs.write_text(prices)
    out = tmp / f"{name}.parquet"
    args = ["score", "--data", str(world.data), "--features", str(world.features), "--tracking-uri", world.tracking_uri,
            "--as-of", pd_iso(NOW), "--channel", "web", "--out", str(out), "--dry-run", "--no-progress",
            "--policy", str(world.policy), "--store", str(tmp / f"{name}.db"), "--offer-attributes", str(attrs),
            "--ledger", str(tmp / "ledger.jsonl")]
    return CliRunner().invoke(app, args), out


def test_nbo_score_takes_the_prices_every_customer_faces(priced: tuple[str, PricedWorld], tmp_path: Path) -> None:
    import pandas as pd

    _, world = priced
    for cheap in ("brand_b", "brand_c"):
        table = "offer_id,attr_price\n" + "".join(f"{b},{1.0 if b == cheap else 3.0}\n" for b in BRANDS)
        result, out = _score(world, tmp_path, table, cheap)
        assert result.exit_code == 0, result.output
        plan = pd.read_parquet(out)
        assert (plan.loc[plan["rank"] == 1, "offer_id"] == cheap).mean() >= 0.9


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("offer_id,attr_price\nbrand_a,-1\nbrand_b,2\nbrand_c,2\n", "--offer-attributes.brand_a.price: negative"),
        ("offer_id,attr_price\nbrand_a,NaN\nbrand_b,2\nbrand_c,2\n", "attr_price is missing for offer 'brand_a'"),
        ("offer_id,attr_price\nbrand_a,cheap\nbrand_b,2\nbrand_c,2\n", "attr_price of offer 'brand_a' is not a number"),
        ("offer_id,attr_price\nbrand_a,\nbrand_b,2\nbrand_c,2\n", "attr_price is missing for offer 'brand_a'"),
        ("offer_id,attr_price\nbrand_z,1\n", "offer 'brand_z' is not in the catalogue"),
    ],
    ids=["negative", "nan", "text", "missing-for-some", "unknown-offer"],
)
def test_nbo_score_refuses_a_bad_price_with_one_line(priced: tuple[str, PricedWorld], tmp_path: Path,
                                                     table: str, expected: str) -> None:
    _, world = priced
    result, out = _score(world, tmp_path, table, "bad")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.output
    assert not out.exists() and not (tmp_path / "bad.db").exists() and not (tmp_path / "ledger.jsonl").exists()


def pd_iso(moment) -> str:  # noqa: ANN001
    import pandas as pd

    return pd.Timestamp(moment).isoformat()

"""nbo/table_cache.py: a cached table is the table `load_table` reads, for that file and that code only."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from nbo import table_cache
from nbo.data import load_table
from nbo.errors import NboError
from nbo.table_cache import load_table_cached


def _offers(directory: Path, value: float = 10.0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "offers.csv"
    path.write_text(
        "offer_id,name,category,kind,channels,value,cost,valid_from,valid_to,eligibility\n"
        f"o1,One,travel,cross_sell,web|email,{value},1.0,2026-01-01,2026-12-31,\n"
        "o2,Two,home,upsell,app,5.0,0.5,2026-01-01,2026-12-31,tenure_days > 30\n",
        encoding="utf-8")
    return path


def _pickles(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob("*.pkl")) if cache.exists() else []


def test_the_cached_table_is_the_table(tmp_path: Path) -> None:
    data, cache = tmp_path / "data", tmp_path / "cache"
    _offers(data)
    first = load_table_cached(data, "offers", cache)
    assert len(_pickles(cache)) == 1
    second = load_table_cached(data, "offers", cache)  # from the pickle
    for frame in (first, second):
        pd.testing.assert_frame_equal(frame, load_table(data, "offers"))


def test_a_changed_file_or_reader_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, cache = tmp_path / "data", tmp_path / "cache"
    path = _offers(data)
    load_table_cached(data, "offers", cache)
    _offers(data, value=99.0)  # same name, new content (and a new modification time)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert load_table_cached(data, "offers", cache)["value"].tolist() == [99.0, 5.0]
    assert len(_pickles(cache)) == 1  # the older entry was replaced
    before = _pickles(cache)
    table_cache.reader_fingerprint.cache_clear()
    monkeypatch.setattr(table_cache, "_READER_MODULES", ("contract.py",))  # "other reading code"
    try:
        load_table_cached(data, "offers", cache)
        assert len(_pickles(cache)) == 1 and _pickles(cache) != before  # made again, by this code
    finally:
        table_cache.reader_fingerprint.cache_clear()


def test_a_variant_is_cached_apart_and_a_damaged_cache_is_ignored(tmp_path: Path) -> None:
    data, cache = tmp_path / "data", tmp_path / "cache"
    _offers(data)
    plain = load_table_cached(data, "offers", cache)
    reversed_ = load_table_cached(data, "offers", cache, variant="reversed",
                                  prepare=lambda f: f.iloc[::-1].reset_index(drop=True))
    assert reversed_["offer_id"].tolist() == ["o2", "o1"] and plain["offer_id"].tolist() == ["o1", "o2"]
    assert len(_pickles(cache)) == 2
    for pickled in cache.glob("*.pkl"):
        pickled.write_bytes(b"damaged")
    pd.testing.assert_frame_equal(load_table_cached(data, "offers", cache), load_table(data, "offers"))


def test_a_table_that_fails_validation_is_refused_and_not_cached(tmp_path: Path) -> None:
    data, cache = tmp_path / "data", tmp_path / "cache"
    _offers(data).write_text("offer_id,name\no1,One\n", encoding="utf-8")
    with pytest.raises(NboError):
        load_table_cached(data, "offers", cache)
    assert _pickles(cache) == []

"""Shared fixtures: seeded generators of small data, real components only."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Commands record the files they write in a ledger (`nbo.ledger`), by default in the working
    directory: the suite keeps its own, so no test writes beside the code or reads a developer's."""
    path = tmp_path_factory.mktemp("ledger") / "nbo-outputs.jsonl"
    before = os.environ.get("NBO_LEDGER")
    os.environ["NBO_LEDGER"] = str(path)
    yield path
    if before is None:
        os.environ.pop("NBO_LEDGER", None)
    else:
        os.environ["NBO_LEDGER"] = before

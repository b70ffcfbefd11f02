"""Champions without MLflow at a service start (models/prepared.py): the registry's SQLite file read
directly answers as MLflow does, or not at all; prepared pickles are the registered models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from models.prepared import PreparedChampions, aliased_versions, prepare_champions, sqlite_registry_file
from models.registry import load_model
from models.tracking import CHAMPION, resolve_tracking, version_by_alias
from tests.test_golden import _model

LEGACY = Path(__file__).resolve().parents[1] / "golden" / "legacy_model"
ROOT = Path(__file__).resolve().parents[2]


def _register(client: object, name: str) -> str:
    """A new version of `name` (the fixed legacy model's files, logged and registered as-is)."""
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(LEGACY), "model")
    return str(mlflow.register_model(f"runs:/{run.info.run_id}/model", name).version)


@pytest.fixture
def registry(tmp_path: Path):  # noqa: ANN201
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, resolve_tracking(uri).activate()


def test_the_sqlite_read_answers_as_mlflow_does(registry) -> None:  # noqa: ANN001
    uri, client = registry
    names = ("m-a", "m-b")

    def both() -> tuple[dict[str, str] | None, dict[str, str | None]]:
        return aliased_versions(uri, names, CHAMPION), {n: version_by_alias(client, n, CHAMPION) for n in names}

    assert both() == (None, {"m-a": None, "m-b": None})  # no such models: MLflow is asked
    a1, a2, b1 = _register(client, "m-a"), _register(client, "m-a"), _register(client, "m-b")
    assert both()[0] is None  # versions without the alias
    client.set_registered_model_alias("m-a", CHAMPION, a1)
    client.set_registered_model_alias("m-b", CHAMPION, b1)
    fast, reference = both()
    assert fast == reference == {"m-a": a1, "m-b": b1}  # with the pinned MLflow the read answers
    client.set_registered_model_alias("m-a", CHAMPION, a2)  # promotion: the alias moves
    fast, reference = both()
    assert fast == reference == {"m-a": a2, "m-b": b1}
    client.set_registered_model_alias("m-a", "challenger", a1)  # another alias changes nothing
    assert both()[0] == {"m-a": a2, "m-b": b1}
    client.delete_model_version("m-a", a2)  # the champion's version deleted: MLflow has no champion
    fast, reference = both()
    assert reference["m-a"] is None and fast is None
    client.set_registered_model_alias("m-a", CHAMPION, a1)
    client.delete_registered_model_alias("m-b", CHAMPION)
    fast, reference = both()
    assert reference == {"m-a": a1, "m-b": None} and fast is None


def test_the_sqlite_read_declines_what_it_cannot_answer(registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: ANN001
    uri, client = registry
    client.set_registered_model_alias("m-a", CHAMPION, _register(client, "m-a"))
    assert aliased_versions(uri, ("m-a",), CHAMPION) is not None
    for other in ("http://127.0.0.1:5000", "databricks", f"sqlite:///{tmp_path / 'missing.db'}", f"{uri}?timeout=5", None):
        assert aliased_versions(other, ("m-a",), CHAMPION) is None, other
    monkeypatch.setenv("MLFLOW_WORKSPACE", "team-b")  # MLflow would read another workspace
    assert aliased_versions(uri, ("m-a",), CHAMPION) is None
    monkeypatch.delenv("MLFLOW_WORKSPACE")
    import sqlite3

    with sqlite3.connect(sqlite_registry_file(uri)) as conn:  # another MLflow schema
        conn.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    assert aliased_versions(uri, ("m-a",), CHAMPION) is None


def test_a_prepared_champion_is_the_registered_model(registry, tmp_path: Path) -> None:  # noqa: ANN001
    uri, client = registry
    version = _register(client, "m-a")
    client.set_registered_model_alias("m-a", CHAMPION, version)
    store = PreparedChampions(tmp_path / "champions")
    assert store.get(uri, "m-a", version) is None
    assert prepare_champions(client, uri, ("m-a", "m-none"), CHAMPION, store.directory) == [f"m-a/{version}"]
    assert prepare_champions(client, uri, ("m-a",), CHAMPION, store.directory) == []  # already prepared
    prepared, registered = store.get(uri, "m-a", version), load_model(client, "m-a", version=version)
    assert prepared is not None
    assert (prepared.name, prepared.version, prepared.run_id, prepared.feature_set_version) == (
        registered.name, registered.version, registered.run_id, registered.feature_set_version)
    X = np.random.default_rng(0).normal(size=(200, len(_model("churn").feature_names_in_))).astype(np.float32)
    np.testing.assert_array_equal(prepared.model.predict_proba_positive(X), registered.model.predict_proba_positive(X))
    assert store.get(uri, "m-a", str(int(version) + 1)) is None  # another version
    assert store.get(f"{uri}x", "m-a", version) is None  # another registry
    store.path(uri, "m-a", version).write_bytes(b"not a pickle")
    assert store.get(uri, "m-a", version) is None  # damaged: loaded from MLflow instead


def test_loading_a_prepared_champion_does_not_import_mlflow(registry, tmp_path: Path) -> None:  # noqa: ANN001
    uri, client = registry
    version = _register(client, "m-a")
    client.set_registered_model_alias("m-a", CHAMPION, version)
    prepare_champions(client, uri, ("m-a",), CHAMPION, tmp_path / "champions")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from models.prepared import PreparedChampions, aliased_versions\n"
        f"versions = aliased_versions({uri!r}, ('m-a',), 'champion')\n"
        f"loaded = PreparedChampions(Path({str(tmp_path / 'champions')!r})).get({uri!r}, 'm-a', versions['m-a'])\n"
        "print(loaded.label, 'mlflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == [f"m-a/{version}", "False"], out.stderr

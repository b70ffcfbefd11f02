"""The champions of a service start without MLflow: the registry's aliases read from its SQLite
file, the estimators from pickles a previous load left in the service's state directory.

Why: on the demo world a service worker spent ~2.5 of its ~6 s of CPU on MLflow before its first
answer: importing it (~1 s), opening its SQL store (~1 s: SQLAlchemy's mappings and Alembic's
schema check) and loading two pyfunc models (~0.4 s). Neither the first answer nor the scores need
MLflow: the champion pair is two version numbers and two pickled estimators.

- `aliased_versions` reads `registered_model_aliases` of a local SQLite registry, read-only, with
  the same rule as MLflow's `get_model_version_by_alias` (the default workspace, a version that is
  not deleted). It answers only for the schema revision it was checked against (`SCHEMA_REVISION`,
  MLflow 3.17's; `tests/models/test_prepared.py` holds its answers equal to MLflow's) and with
  MLflow's workspaces off; otherwise, or on any error, it returns None and the caller asks MLflow.
- `PreparedChampions` keeps each loaded champion (`models.registry.LoadedModel`: name, version,
  run id, feature-set version and the estimator) as a pickle named by (tracking URI, name,
  version). A registered version's artefact never changes, so the pickle of a version is that
  version; a version not prepared yet is loaded through MLflow (`models.registry.load_model`) and
  then prepared. The files are nbo's own, written by the service into its own state directory
  (the same trust as MLflow's pickles and the compiled forests next to them).

The reload loop of a running service still asks MLflow (`serving.engine.DecisionEngine.reload`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sqlite3
import tempfile
from pathlib import Path

from models.registry import LoadedModel

log = logging.getLogger(__name__)

#: The Alembic revision of MLflow's SQL schema `aliased_versions` was checked against (MLflow 3.17).
SCHEMA_REVISION = "dc11669786a5"
#: MLflow's workspace when workspaces are off, and its mark of a deleted model version.
_DEFAULT_WORKSPACE = "default"
_DELETED_STAGE = "Deleted_Internal"
#: Environment variables that make MLflow read another workspace: then MLflow is asked.
_WORKSPACE_ENV = ("MLFLOW_ENABLE_WORKSPACES", "MLFLOW_WORKSPACE")

_ALIAS_QUERY = (
    "SELECT a.version FROM registered_model_aliases a JOIN model_versions v"
    " ON v.workspace = a.workspace AND v.name = a.name AND v.version = a.version"
    " WHERE a.workspace = ? AND a.name = ? AND a.alias = ? AND (v.current_stage IS NULL OR v.current_stage != ?)"
)


def sqlite_registry_file(tracking_uri: str | None) -> Path | None:
    """The file of a `sqlite:///PATH` registry (relative paths from the working directory, as MLflow
    reads them), or None for any other kind of URI."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///") or "?" in tracking_uri:
        return None
    path = tracking_uri.removeprefix("sqlite:///")
    return Path(path) if path and path != ":memory:" else None


def aliased_versions(tracking_uri: str | None, names: tuple[str, ...], alias: str) -> dict[str, str] | None:
    """{name: version} that `alias` points at for every name, read from a local SQLite registry; None
    when this cannot be answered here (not SQLite, another schema, workspaces on, a name without
    the alias, any error): the caller asks MLflow, whose answer and error messages are the reference."""
    path = sqlite_registry_file(tracking_uri)
    if path is None or not path.is_file() or any(os.environ.get(v) for v in _WORKSPACE_ENV):
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=0.5)
    except sqlite3.Error:
        return None
    try:
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        if revision != [(SCHEMA_REVISION,)]:
            return None
        found: dict[str, str] = {}
        for name in names:
            rows = conn.execute(_ALIAS_QUERY, (_DEFAULT_WORKSPACE, name, alias, _DELETED_STAGE)).fetchall()
            if len(rows) != 1:
                return None
            found[name] = str(rows[0][0])
        return found
    except sqlite3.Error:
        return None
    finally:
        conn.close()


class PreparedChampions:
    """Loaded champions as pickles under `directory`, one file per (tracking URI, name, version)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, tracking_uri: str, name: str, version: str) -> Path:
        key = hashlib.sha256(f"{tracking_uri}\n{name}\n{version}".encode()).hexdigest()[:32]
        return self.directory / f"champion-{key}.pkl"

    def get(self, tracking_uri: str, name: str, version: str) -> LoadedModel | None:
        """The prepared model, or None (not prepared, unreadable, or not this model)."""
        path = self.path(tracking_uri, name, version)
        try:
            with open(path, "rb") as handle:
                stored = pickle.load(handle)  # noqa: S301 - written by `put` into the service's own state dir
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - a damaged file: load through MLflow instead
            log.warning("prepared champion %s/%s unreadable (%s): loading it from MLflow", name, version,
                        type(exc).__name__)
            return None
        if not isinstance(stored, dict) or stored.get("key") != (tracking_uri, name, version):
            return None
        model = stored.get("model")
        return model if isinstance(model, LoadedModel) else None

    def put(self, tracking_uri: str, model: LoadedModel) -> None:
        """Prepare `model` for the next start (written whole or not at all; errors only logged)."""
        path = self.path(tracking_uri, model.name, model.version)
        partial = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.directory)
            with os.fdopen(fd, "wb") as handle:
                pickle.dump({"key": (tracking_uri, model.name, model.version), "model": model}, handle,
                            protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(partial, path)
        except OSError as exc:
            log.warning("could not prepare %s for the next start: %s", model.label, exc.strerror or exc)
            if partial is not None:
                Path(partial).unlink(missing_ok=True)


def prepare_champions(client: object, tracking_uri: str, names: tuple[str, ...], alias: str, directory: Path) -> list[str]:
    """Prepare the current `alias` versions of `names` (through MLflow's `client`) that are not yet:
    for a process that has MLflow open anyway (`nbo demo` after training), so that the service's
    first start is as quick as the next ones. Returns the labels prepared."""
    from models.registry import load_model
    from models.tracking import version_by_alias

    store = PreparedChampions(directory)
    done = []
    for name in names:
        version = version_by_alias(client, name, alias)  # type: ignore[arg-type]
        if version is None or store.get(tracking_uri, name, version) is not None:
            continue
        loaded = load_model(client, name, version=version, check_requirements=False)  # type: ignore[arg-type]
        store.put(tracking_uri, loaded)
        done.append(loaded.label)
    return done

"""Programmes and models: the MLflow registry as the console shows it.

Registered models with their aliases and versions, each version's report charts (the PNG figures
`nbo train` logs under `report/` of its run), and the latest off-policy evaluation (`nbo evaluate`:
the run tagged `nbo.ope`, its gate and reason, and its figures under `ope/`). Read only; one
tracking client per process. Artefacts are read through MLflow (`download_artifacts`), never by
path, and only files the run lists, ending in `.png`, are served.
"""

from __future__ import annotations

import re
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from models.registry import OPE_TAG

#: Versions listed per model (the newest).
MAX_VERSIONS = 10
#: Largest chart served (bytes).
MAX_CHART_BYTES = 5 * 1024 * 1024
RUN_ID = re.compile(r"[0-9a-f]{32}")
ARTIFACT = re.compile(r"[A-Za-z0-9_.\-]{1,120}(/[A-Za-z0-9_.\-]{1,120}){0,3}\.png")


@dataclass(frozen=True)
class VersionInfo:
    version: str
    run_id: str
    created: str
    aliases: tuple[str, ...]
    charts: tuple[str, ...]
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    aliases: dict[str, str]
    versions: tuple[VersionInfo, ...]


@dataclass(frozen=True)
class OpeInfo:
    run_id: str
    started: str
    gate: bool
    uncertain: bool
    candidate: str
    baseline: str
    reason: str
    metrics: dict[str, float]
    charts: tuple[str, ...]


@dataclass(frozen=True)
class Programmes:
    models: tuple[ModelInfo, ...]
    ope: OpeInfo | None
    error: str | None = None


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp((ms or 0) / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC") if ms else ""


class Registry:
    """The console's read side of the MLflow registry (one client per process, made on first use)."""

    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri
        self._client = None
        self._lock = threading.Lock()
        self._charts: dict[tuple[str, str], bytes] = {}

    def client(self):  # noqa: ANN201 - an MlflowClient
        with self._lock:
            if self._client is None:
                from models.tracking import resolve_tracking

                self._client = resolve_tracking(self.tracking_uri).activate()
            return self._client

    def _charts_of(self, run_id: str, folder: str) -> tuple[str, ...]:
        try:
            return tuple(sorted(a.path for a in self.client().list_artifacts(run_id, folder)
                                if a.path.endswith(".png") and ARTIFACT.fullmatch(a.path)))
        except Exception:  # noqa: BLE001 - a missing artefact store shows no charts, not an error page
            return ()

    def programmes(self) -> Programmes:
        """Every registered model (aliases, newest versions with charts and metrics) and the latest OPE."""
        try:
            client = self.client()
            found = []
            for rm in client.search_registered_models(max_results=100):
                aliases = {a: str(v) for a, v in (rm.aliases or {}).items()}
                by_version: dict[str, list[str]] = {}
                for alias, v in aliases.items():
                    by_version.setdefault(v, []).append(alias)
                versions = sorted(client.search_model_versions(f"name='{rm.name}'"), key=lambda mv: -int(mv.version))
                infos = []
                for mv in versions[:MAX_VERSIONS]:
                    metrics: dict[str, float] = {}
                    if mv.run_id:
                        try:
                            metrics = dict(sorted(client.get_run(mv.run_id).data.metrics.items()))
                        except Exception:  # noqa: BLE001
                            metrics = {}
                    infos.append(VersionInfo(str(mv.version), mv.run_id or "", _when(mv.creation_timestamp),
                                             tuple(sorted(by_version.get(str(mv.version), []))),
                                             self._charts_of(mv.run_id, "report") if mv.run_id else (), metrics))
                found.append(ModelInfo(rm.name, aliases, tuple(infos)))
            return Programmes(tuple(sorted(found, key=lambda m: m.name)), self.latest_ope())
        except Exception as exc:  # noqa: BLE001 - the page says what is wrong instead of a 500
            return Programmes((), None, f"the model registry cannot be read: {type(exc).__name__}: "
                                        f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")

    def latest_ope(self) -> OpeInfo | None:
        client = self.client()
        experiments = [e.experiment_id for e in client.search_experiments()]
        if not experiments:
            return None
        runs = client.search_runs(experiments, f"tags.`{OPE_TAG}` = 'true'", order_by=["attributes.start_time DESC"],
                                  max_results=1)
        if not runs:
            return None
        run = runs[0]
        tags = run.data.tags
        return OpeInfo(run.info.run_id, _when(run.info.start_time), tags.get(f"{OPE_TAG}.gate") == "true",
                       tags.get(f"{OPE_TAG}.uncertain") == "true", tags.get(f"{OPE_TAG}.candidate", ""),
                       tags.get(f"{OPE_TAG}.baseline", ""), tags.get(f"{OPE_TAG}.reason", ""),
                       dict(sorted(run.data.metrics.items())), self._charts_of(run.info.run_id, "ope"))

    def chart(self, run_id: str, path: str) -> bytes | None:
        """The PNG `path` of run `run_id`, if the run lists it; None otherwise."""
        if not RUN_ID.fullmatch(run_id) or not ARTIFACT.fullmatch(path) or ".." in path:
            return None
        hit = self._charts.get((run_id, path))
        if hit is not None:
            return hit
        folder = path.rpartition("/")[0]
        if path not in self._charts_of(run_id, folder or None):  # type: ignore[arg-type]
            return None
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(self.client().download_artifacts(run_id, path, tmp))
            if not local.is_file() or local.stat().st_size > MAX_CHART_BYTES:
                return None
            data = local.read_bytes()
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            return None
        with self._lock:
            if len(self._charts) > 64:
                self._charts.clear()
            self._charts[(run_id, path)] = data
        return data

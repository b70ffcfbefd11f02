"""MLflow tracking and registry: where runs go, how versions get aliases, how promotion decides.

The tracking URI comes from `--tracking-uri`, else `MLFLOW_TRACKING_URI`, else a SQLite store in
the working directory (`sqlite:///<cwd>/mlflow.db`, artifacts in `<cwd>/mlartifacts`): no server
needed, and a remote server works the same way. It is resolved once, at the CLI edge.

MLflow is imported by the functions that talk to it, not by this module: the model names and
`resolve_tracking` are read by `nbo serve`'s checks, which need no MLflow (~1 s of CPU to import).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nbo.errors import NboError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

EXPERIMENT = "nbo"
PROPENSITY_MODEL = "nbo-propensity"
CHURN_MODEL = "nbo-churn"
MODEL_NAMES = {"propensity": PROPENSITY_MODEL, "churn": CHURN_MODEL}
#: The uplift model (`nbo train --model uplift`): trained and promoted on its own, never by `all`
#: (it needs a randomised log: decisions without contact).
UPLIFT_MODEL = "nbo-uplift"
CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Tracking:
    """A resolved tracking location."""

    uri: str
    artifact_root: str | None

    def activate(self) -> MlflowClient:
        """Point MLflow at this store and make sure the `nbo` experiment exists.

        MLflow 3's `set_tracking_uri` also writes `MLFLOW_TRACKING_URI` into the process
        environment; it is restored, so a later `resolve_tracking(None, workdir=...)` in the same
        process (tests, the demo) is not silently redirected to this store.
        """
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        before = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
        try:
            if mlflow.get_experiment_by_name(EXPERIMENT) is None:
                mlflow.create_experiment(EXPERIMENT, artifact_location=self.artifact_root)
            mlflow.set_experiment(EXPERIMENT)
        except MlflowException as exc:
            raise NboError(f"MLflow tracking store {self.uri} is not usable: {str(exc).splitlines()[0]}") from None
        return MlflowClient(self.uri, self.uri)


def resolve_tracking(uri: str | None = None, workdir: Path | None = None) -> Tracking:
    """`uri`, else $MLFLOW_TRACKING_URI, else a SQLite store in `workdir` (default: cwd)."""
    chosen = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if chosen:
        root = None
        if chosen.startswith("sqlite:///"):
            db = Path(chosen.removeprefix("sqlite:///"))
            root = (db.parent / "mlartifacts").resolve().as_uri()
        return Tracking(uri=chosen, artifact_root=root)
    base = (workdir or Path.cwd()).resolve()
    return Tracking(uri=f"sqlite:///{base / 'mlflow.db'}", artifact_root=(base / "mlartifacts").as_uri())


def version_by_alias(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None

"""The registry's read side: load a registered nbo model by alias or version, read a logged verdict.

Training registers and promotes (`training.registry`); serving, evaluation and the CLI only read:
`load_model` unwraps the logged pyfunc to the estimator (`models.calibrated.CalibratedBooster`) for
fast NumPy inference, and `latest_gate` reads the verdict of the latest off-policy evaluation run
(`evaluation.evaluate.log_evaluation` writes it with the `OPE_TAG` tags).

MLflow is imported by the functions that use it: `LoadedModel` is also what a service start reads
from `models.prepared` without MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from models.tracking import CHAMPION, UPLIFT_MODEL
from nbo.errors import NboError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from models.calibrated import CalibratedBooster
    from models.uplift import UpliftBooster

#: Tag prefix of off-policy evaluation runs (`nbo evaluate`).
OPE_TAG = "nbo.ope"


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version, unwrapped for fast NumPy inference."""

    name: str
    version: str
    run_id: str
    model: CalibratedBooster
    feature_set_version: str

    @property
    def feature_names(self) -> list[str]:
        return list(self.model.feature_names_in_)

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"


def load_model(client: MlflowClient, name: str, alias: str = CHAMPION, version: str | None = None,
               check_requirements: bool = True) -> LoadedModel:
    """Load `name@alias` (or an explicit version) from the registry.

    `check_requirements=False` skips MLflow's comparison of the model's pip requirements and Python
    version with the running environment (warnings only; ~0.8 s per model, it reads the metadata of
    every installed package): the service skips it at each start and reload (docs/service.md §2).
    The feature-set version, which decides whether a model can score at all, is checked by nbo.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from models.pyfunc import NboPyfunc

    try:
        mv = client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, alias)
    except MlflowException:
        what = f"version {version}" if version else f"alias @{alias}"
        raise NboError(f"model {name} has no {what} in the registry (train first: nbo train)") from None
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}", suppress_warnings=not check_requirements)
    wrapped = pyfunc.unwrap_python_model()
    if not isinstance(wrapped, NboPyfunc):
        raise NboError(f"{name}/{mv.version} is not an nbo model")
    return LoadedModel(name, str(mv.version), str(mv.run_id), wrapped.model, wrapped.feature_set_version)


@dataclass(frozen=True)
class LoadedUplift:
    """A registered uplift model version (`models.uplift.UpliftBooster`), unwrapped."""

    name: str
    version: str
    run_id: str
    model: UpliftBooster
    feature_set_version: str

    @property
    def feature_names(self) -> list[str]:
        return list(self.model.feature_names_in_)

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"


def load_uplift(client: MlflowClient, alias: str = CHAMPION, version: str | None = None,
                name: str = UPLIFT_MODEL) -> LoadedUplift:
    """Load the uplift model `name@alias` (or an explicit version) from the registry."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from models.uplift import UpliftPyfunc

    try:
        mv = client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, alias)
    except MlflowException:
        what = f"version {version}" if version else f"alias @{alias}"
        raise NboError(f"model {name} has no {what} in the registry (train first: nbo train --model uplift)") from None
    wrapped = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}").unwrap_python_model()
    if not isinstance(wrapped, UpliftPyfunc):
        raise NboError(f"{name}/{mv.version} is not an nbo uplift model")
    return LoadedUplift(name, str(mv.version), str(mv.run_id), wrapped.model, wrapped.feature_set_version)



def latest_gate(client, candidate_version: str, baseline_version: str | None) -> tuple[bool, str] | None:
    """The gate of the latest OPE run comparing these two versions (`name/version` labels), or None."""
    query = f"tags.`{OPE_TAG}.candidate` = '{candidate_version}'"
    if baseline_version:
        query += f" and tags.`{OPE_TAG}.baseline` = '{baseline_version}'"
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, query, order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None
    tags = runs[0].data.tags
    return tags.get(f"{OPE_TAG}.gate") == "true", tags.get(f"{OPE_TAG}.reason", "")

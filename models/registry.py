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


#: What `load_model` can load: the propensity (and churn) models and the uplift model.
KINDS = ("propensity", "uplift")


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version, unwrapped for fast NumPy inference: a
    `models.calibrated.CalibratedBooster` (propensity, churn) or a `models.uplift.UpliftBooster`."""

    name: str
    version: str
    run_id: str
    model: CalibratedBooster | UpliftBooster
    feature_set_version: str

    @property
    def feature_names(self) -> list[str]:
        return list(self.model.feature_names_in_)

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"


def load_model(client: MlflowClient, name: str = "", alias: str = CHAMPION, version: str | None = None,
               check_requirements: bool = True, kind: str = "propensity") -> LoadedModel:
    """Load `name@alias` (or an explicit version) from the registry.

    `kind`: `propensity` (an `NboPyfunc`: propensity or churn models) or `uplift` (an
    `UpliftPyfunc`; `name` defaults to `nbo-uplift`). `check_requirements=False` skips MLflow's
    comparison of the model's pip requirements and Python version with the running environment
    (warnings only; ~0.8 s per model, it reads the metadata of every installed package): the
    service skips it at each start and reload (docs/service.md §2). The feature-set version, which
    decides whether a model can score at all, is checked by nbo.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "uplift":
        from models.uplift import UpliftPyfunc as wrapper
        name, what_is, train = name or UPLIFT_MODEL, "an nbo uplift model", "nbo train --model uplift"
    else:
        from models.pyfunc import NboPyfunc as wrapper
        what_is, train = "an nbo model", "nbo train"
    try:
        mv = client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, alias)
    except MlflowException:
        what = f"version {version}" if version else f"alias @{alias}"
        raise NboError(f"model {name} has no {what} in the registry (train first: {train})") from None
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}", suppress_warnings=not check_requirements)
    wrapped = pyfunc.unwrap_python_model()
    if not isinstance(wrapped, wrapper):
        raise NboError(f"{name}/{mv.version} is not {what_is}")
    return LoadedModel(name, str(mv.version), str(mv.run_id), wrapped.model, wrapped.feature_set_version)


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

"""The registry's write side: registering a fitted model and promoting a challenger (an alias move, never a retrain).

Promotion has two gates, in this order, whatever the alias state:

1. **the baseline gate** (issue 20): the challenger must beat the best baseline of its own training
   run on its validation rows - a Brier score strictly lower than every baseline's (the proper
   scoring rule: calibration and ranking at once) and an AUC not lower than the best baseline's
   AUC by more than `TOLERANCE`. The figures are the run's logged metrics (`training.train`
   tags the run with the names of its baselines, `BASELINES_TAG`). Without this gate a first model
   that lost to the offer-rate baseline on Brier was promoted because there was no champion yet.
2. **the champion comparison**: on the challenger's validation sample (logged with its run), so
   both are judged on the same rows. "At least as good" means AUC not lower and Brier score not
   higher than the champion's, each within `TOLERANCE` (retraining on the same data is not
   penalised for noise in the last digit).

`force` skips both and says in its reason what it skipped.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from nbo.errors import NboError
from training.metrics import binary_metrics
from models.registry import LoadedModel, latest_gate, load_model
from models.tracking import CHALLENGER, CHAMPION, version_by_alias

log = logging.getLogger(__name__)

TOLERANCE = 0.001
#: Run tag listing the baselines a training run evaluated (comma-separated metric prefixes).
BASELINES_TAG = "nbo.baselines"
#: Baselines of runs logged before the tag existed, looked up among the run's metrics.
_KNOWN_BASELINES = ("logistic", "offer_rate", "recency_rank")


@dataclass(frozen=True)
class BaselineGate:
    passed: bool
    reason: str
    metrics: dict[str, float]


def baseline_gate(client: MlflowClient, name: str, version: str) -> BaselineGate:
    """Does `name/version` beat the best baseline of its own run on its validation rows?"""
    run = client.get_run(client.get_model_version(name, version).run_id)
    logged = run.data.metrics
    tag = run.data.tags.get(BASELINES_TAG, "")
    names = [b for b in tag.split(",") if b] if tag else [b for b in _KNOWN_BASELINES if f"{b}_brier" in logged]
    names = [b for b in names if f"{b}_brier" in logged and f"{b}_auc" in logged]
    if not names or "brier" not in logged or "auc" not in logged:
        return BaselineGate(False, f"{name}/{version}: its run has no baseline metrics to compare with "
                                   "(retrain with nbo train, or --force)", {})
    best_brier = min(names, key=lambda b: logged[f"{b}_brier"])
    best_auc = max(names, key=lambda b: logged[f"{b}_auc"])
    metrics = {"run_auc": logged["auc"], "run_brier": logged["brier"],
               "best_baseline_auc": logged[f"{best_auc}_auc"], "best_baseline_brier": logged[f"{best_brier}_brier"]}
    brier_ok = metrics["run_brier"] < metrics["best_baseline_brier"]
    auc_ok = metrics["run_auc"] >= metrics["best_baseline_auc"] - TOLERANCE
    figures = (f"Brier {metrics['run_brier']:.5f} vs {metrics['best_baseline_brier']:.5f} ({best_brier}), "
               f"AUC {metrics['run_auc']:.4f} vs {metrics['best_baseline_auc']:.4f} ({best_auc}; "
               f"tolerance {TOLERANCE})")
    if brier_ok and auc_ok:
        return BaselineGate(True, f"beats the best baseline on its validation rows: {figures}", metrics)
    return BaselineGate(False, f"challenger is worse than the best baseline on its validation rows: {figures}",
                        metrics)


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str
    challenger: str | None
    champion_before: str | None
    metrics: dict[str, float]


def validation_sample(client: MlflowClient, run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, "report/validation.parquet", tmp)
        return pd.read_parquet(Path(path))


def compare_on_sample(challenger: LoadedModel, champion: LoadedModel, sample: pd.DataFrame) -> dict[str, float]:
    """AUC and Brier of both versions on the same rows."""
    y = sample["__label__"].to_numpy()
    out = {}
    for tag, m in (("challenger", challenger), ("champion", champion)):
        missing = [c for c in m.feature_names if c not in sample.columns]
        if missing:
            raise NboError(f"{m.label} needs feature(s) absent from the validation sample "
                           f"({', '.join(missing[:5])}): feature sets differ; use --force to promote anyway")
        group = sample["__decision__"].to_numpy(dtype=object) if "__decision__" in sample else None
        if m.model.is_choice and group is None:
            raise NboError(f"{m.label} is a choice model and the validation sample has no decisions: "
                           "objectives differ; use --force to promote anyway")
        X = sample[m.feature_names].to_numpy(np.float32)
        p = m.model.predict_proba_positive(X, group) if m.model.is_choice else m.model.predict_proba_positive(X)
        met = binary_metrics(y, p)
        out[f"{tag}_auc"], out[f"{tag}_brier"] = met.auc, met.brier
    return out


def promote(client: MlflowClient, name: str, force: bool = False, require_ope: bool = False) -> Promotion:
    """Move `champion` to the current `challenger` if it beats its baselines and is at least as
    good as the champion (or `force`: both gates skipped, and the reason says so).

    `require_ope`: also require the latest off-policy evaluation of challenger vs champion
    (`nbo evaluate`, evaluation/evaluate.py) to have passed its gate: the challenger's DR lower
    bound on expected value per decision above the champion's DR estimate, and not flagged as
    too uncertain. Without such a run the challenger is not promoted.
    """
    challenger_v = version_by_alias(client, name, CHALLENGER)
    champion_v = version_by_alias(client, name, CHAMPION)
    if challenger_v is None:
        raise NboError(f"model {name} has no @{CHALLENGER} to promote (train first: nbo train)")
    if challenger_v == champion_v:
        return Promotion(False, f"{name}/{challenger_v} is already the champion", challenger_v, champion_v, {})
    baseline = baseline_gate(client, name, challenger_v)
    metrics: dict[str, float] = {**baseline.metrics, "baseline_gate": float(baseline.passed)}
    if force:
        skipped = "" if baseline.passed else f"; promoted although the {baseline.reason}"
        reason = f"forced (--force): comparisons skipped{skipped}"
        ok = True
    elif not baseline.passed:
        reason, ok = baseline.reason, False
    elif champion_v is None:
        reason = f"no champion yet; {baseline.reason}"
        ok = True
    else:
        challenger = load_model(client, name, version=challenger_v)
        champion = load_model(client, name, version=champion_v)
        metrics.update(compare_on_sample(challenger, champion, validation_sample(client, challenger.run_id)))
        auc_ok = metrics["challenger_auc"] >= metrics["champion_auc"] - TOLERANCE
        brier_ok = metrics["challenger_brier"] <= metrics["champion_brier"] + TOLERANCE
        ok = auc_ok and brier_ok
        reason = (
            f"on the challenger's validation sample: AUC {metrics['challenger_auc']:.4f} vs "
            f"{metrics['champion_auc']:.4f}, Brier {metrics['challenger_brier']:.4f} vs "
            f"{metrics['champion_brier']:.4f} (tolerance {TOLERANCE})"
        )
        if not ok:
            reason = "challenger is worse " + reason
    if require_ope and not force and champion_v is not None:
        # Checked (and reported) even when a gate above already refused: the user asked for it.
        gate = latest_gate(client, f"{name}/{challenger_v}", f"{name}/{champion_v}")
        if gate is None:
            ok, reason = False, (f"no off-policy evaluation of {name}/{challenger_v} against "
                                 f"{name}/{champion_v} (run nbo evaluate first); " + reason)
        else:
            ok = ok and gate[0]
            reason = f"OPE gate {'passed' if gate[0] else 'failed'}: {gate[1]}; " + reason
            metrics["ope_gate"] = float(gate[0])
    if ok:
        client.set_registered_model_alias(name, CHAMPION, challenger_v)
        log.info("promoted %s/%s to champion", name, challenger_v)
    return Promotion(ok, reason, challenger_v, champion_v, metrics)


#: MLflow warns on every `log_model` of a Python object that it is pickled (CloudPickle) and that
#: unpickling runs code. The object is nbo's own `NboPyfunc`, read back only by nbo from the registry
#: nbo wrote (docs/training.md, "What is logged"): the warning is dropped for that call, and only it.
PICKLE_WARNING = "Passing a Python object as `python_model`"


class _DropPickleWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(PICKLE_WARNING)


def log_pyfunc(**kwargs: object) -> object:
    """`mlflow.pyfunc.log_model(**kwargs)` without MLflow's pickling warning (see `PICKLE_WARNING`)."""
    logger = logging.getLogger("mlflow.pyfunc")
    drop = _DropPickleWarning()
    logger.addFilter(drop)
    try:
        return mlflow.pyfunc.log_model(**kwargs)  # type: ignore[arg-type]
    finally:
        logger.removeFilter(drop)


@contextlib.contextmanager
def _registry_prints() -> Iterator[None]:
    """MLflow's registry prints "Successfully registered model ..." and "Created version ..." to
    stderr with `print`, outside logging: caught here and logged at DEBUG (nbo logs the outcome)."""
    caught = io.StringIO()
    try:
        with contextlib.redirect_stderr(caught):
            yield
    finally:
        for line in caught.getvalue().splitlines():
            if line.strip():
                log.debug("mlflow: %s", line.strip())


def register(client: MlflowClient, model_uri: str, name: str, alias: str = CHALLENGER) -> str:
    """Register a logged model as a new version of `name` and point `alias` at it.

    The alias moves only once the version is READY: a failed registration moves no alias.
    """
    with _registry_prints():
        version = mlflow.register_model(model_uri, name)
    client.set_registered_model_alias(name, alias, version.version)
    log.info("registered %s version %s as %s", name, version.version, alias)
    return str(version.version)


def promote_uplift(client: MlflowClient, name: str, force: bool = False) -> Promotion:
    """Move the uplift model's `champion` to its `challenger` if, on the held-out decisions of its
    own run, its value Qini (incremental margin less incentives, `training.uplift`) is above both
    the response ranking's (P(accept) x value) and random targeting's. An uplift model that does not
    beat the response ranking would make arbitration by incremental value worse than by response.
    `force` skips the gate and says so."""
    challenger_v = version_by_alias(client, name, CHALLENGER)
    champion_v = version_by_alias(client, name, CHAMPION)
    if challenger_v is None:
        raise NboError(f"model {name} has no @{CHALLENGER} to promote (train first: nbo train --model uplift)")
    if challenger_v == champion_v:
        return Promotion(False, f"{name}/{challenger_v} is already the champion", challenger_v, champion_v, {})
    logged = client.get_run(client.get_model_version(name, challenger_v).run_id).data.metrics
    keys = ("value_qini_uplift", "value_qini_response", "value_qini_random")
    if not all(k in logged for k in keys):
        ok, reason, metrics = False, f"{name}/{challenger_v}: its run has no Qini metrics (retrain with nbo train)", {}
    else:
        metrics = {k: float(logged[k]) for k in keys}
        ok = metrics["value_qini_uplift"] > max(metrics["value_qini_response"], metrics["value_qini_random"])
        reason = (f"value Qini on its held-out decisions {metrics['value_qini_uplift']:.4f} vs response ranking "
                  f"{metrics['value_qini_response']:.4f}, random {metrics['value_qini_random']:.4f}")
        reason = ("beats the response ranking: " if ok else "challenger does not beat the response ranking: ") + reason
    if force:
        reason, ok = f"forced (--force): gate skipped ({reason})", True
    if ok:
        client.set_registered_model_alias(name, CHAMPION, challenger_v)
        log.info("promoted %s/%s to champion", name, challenger_v)
    return Promotion(ok, reason, challenger_v, champion_v, metrics)

"""The registry's write side: registering a fitted model and promoting a challenger (an alias move, never a retrain).

`promote` compares challenger and champion on the challenger's validation sample (logged with its
run), so both are judged on the same rows. "At least as good" means AUC not lower and Brier score
not higher than the champion's, each within `TOLERANCE` (retraining on the same data is not
penalised for noise in the last digit).
"""

from __future__ import annotations

import logging
import tempfile
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
    """Move `champion` to the current `challenger` if it is at least as good (or `force`).

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
    metrics: dict[str, float] = {}
    if champion_v is None:
        reason = "no champion yet"
        ok = True
    elif force:
        reason = "forced (--force): comparison skipped"
        ok = True
    else:
        challenger = load_model(client, name, version=challenger_v)
        champion = load_model(client, name, version=champion_v)
        metrics = compare_on_sample(challenger, champion, validation_sample(client, challenger.run_id))
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
        if ok and require_ope:
            gate = latest_gate(client, f"{name}/{challenger_v}", f"{name}/{champion_v}")
            if gate is None:
                ok, reason = False, (f"no off-policy evaluation of {name}/{challenger_v} against "
                                     f"{name}/{champion_v} (run nbo evaluate first); " + reason)
            else:
                ok = gate[0]
                reason = f"OPE gate {'passed' if ok else 'failed'}: {gate[1]}; " + reason
                metrics["ope_gate"] = float(ok)
    if ok:
        client.set_registered_model_alias(name, CHAMPION, challenger_v)
        log.info("promoted %s/%s to champion", name, challenger_v)
    return Promotion(ok, reason, challenger_v, champion_v, metrics)


def register(client: MlflowClient, model_uri: str, name: str, alias: str = CHALLENGER) -> str:
    """Register a logged model as a new version of `name` and point `alias` at it.

    The alias moves only once the version is READY: a failed registration moves no alias.
    """
    version = mlflow.register_model(model_uri, name)
    client.set_registered_model_alias(name, alias, version.version)
    log.info("registered %s version %s as %s", name, version.version, alias)
    return str(version.version)

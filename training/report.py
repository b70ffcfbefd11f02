"""One evaluation report per run: metrics vs baselines, charts, importance, per-stage metrics, truth.

The report is a plain object (metrics dict, tables, figures) so the CLI prints it, MLflow stores
it, and the model-report notebook shows the same thing from a run id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from training.metrics import (
    binary_metrics,
    calibration_chart,
    calibration_error,
    cumulative_gains_chart,
    importance_chart,
)


@dataclass
class Report:
    """What one training run learned about its model, on its validation period."""

    model: str
    metrics: dict[str, float] = field(default_factory=dict)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_stage: pd.DataFrame = field(default_factory=pd.DataFrame)
    importance: pd.DataFrame = field(default_factory=pd.DataFrame)
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        shown = self.table.copy()
        text = f"{self.model}: validation metrics\n" + shown.to_string(float_format=lambda v: f"{v:.4f}")
        return "\n".join([text, *self.notes])


def build_report(
    model: str,
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    feature_names: list[str],
    gain: np.ndarray,
    contributions: np.ndarray,
    stages: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    rank_scores: dict[str, np.ndarray] | None = None,
) -> Report:
    """Evaluate `scores['lightgbm']` against the other scores (baselines) on labels `y`.

    `contributions` are LightGBM `pred_contrib` values (n × (features + 1)); `stages` the lifecycle
    stage of each row; `truth` the simulator's true probability of each row when known;
    `rank_scores` the scores ranking metrics (AUC, lift) use instead, per name (see binary_metrics).
    """
    y = np.asarray(y, dtype=float)
    rank_scores = rank_scores or {}
    rows = {name: binary_metrics(y, p, rank_scores.get(name)).as_dict() for name, p in scores.items()}
    for name, p in scores.items():
        rows[name]["calibration_error"] = calibration_error(y, p)
    if truth is not None:
        rows["truth (ceiling)"] = binary_metrics(y, truth).as_dict()
        rows["truth (ceiling)"]["calibration_error"] = calibration_error(y, truth)
    table = pd.DataFrame(rows).T[["auc", "pr_auc", "log_loss", "brier", "lift_top_decile",
                                  "capture_top_decile", "calibration_error"]]
    metrics = {f"{k}": float(v) for k, v in rows["lightgbm"].items()}
    for name, row in rows.items():
        if name == "lightgbm":
            continue
        key = name.split(" ")[0]
        for m in ("auc", "brier", "log_loss"):
            metrics[f"{key}_{m}"] = float(row[m])
    if truth is not None:
        metrics["truth_correlation"] = float(np.corrcoef(scores["lightgbm"], truth)[0, 1]) if len(y) > 1 else float("nan")
        metrics["truth_auc"] = float(roc_auc_score(y, truth)) if 0 < y.sum() < len(y) else float("nan")
        metrics["auc_gap_to_truth"] = metrics["truth_auc"] - metrics["auc"]

    shap_abs = np.abs(contributions[:, :-1]).mean(axis=0) if len(contributions) else np.zeros(len(feature_names))
    importance = pd.DataFrame(
        {"feature": feature_names, "gain": gain, "mean_abs_shap": shap_abs}
    ).sort_values("mean_abs_shap", ascending=False, ignore_index=True)

    by_stage = pd.DataFrame()
    if stages is not None and len(stages):
        parts = []
        for stage in sorted(pd.unique(stages)):
            mask = stages == stage
            rank = rank_scores.get("lightgbm")
            m = binary_metrics(y[mask], scores["lightgbm"][mask], None if rank is None else rank[mask])
            parts.append({"stage": stage, "n": m.n, "positive_rate": m.positives / max(m.n, 1),
                          "auc": m.auc, "brier": m.brier, "mean_prediction": float(scores["lightgbm"][mask].mean())})
        by_stage = pd.DataFrame(parts).set_index("stage")

    curves = dict(scores)
    if truth is not None:
        curves["truth"] = truth
    figures = {
        "cumulative_gains.png": cumulative_gains_chart(y, curves, f"{model}: cumulative gains"),
        "calibration.png": calibration_chart(y, curves, f"{model}: reliability"),
        "importance.png": importance_chart(feature_names, np.asarray(gain, float), shap_abs, f"{model}: importance"),
    }
    return Report(model=model, metrics=metrics, table=table, by_stage=by_stage, importance=importance,
                  figures=figures)


def calibration_counts(calibrated: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    """How many distinct values the shipped (calibrated) predictions and the raw scores take:
    a calibration with plateaus ties scores the booster told apart (issue 20: 112 values for
    23,570 customers), and ties cost ranking quality."""
    return {"distinct_predictions": float(len(np.unique(calibrated))),
            "distinct_raw_scores": float(len(np.unique(raw)))}


def latest_training_run(client: object, experiment: str) -> str:
    """The id of the latest *training* run of `experiment` (tagged `nbo.model`): evaluation and
    other runs of the same experiment have no model report."""
    from nbo.errors import NboError

    exp = client.get_experiment_by_name(experiment)
    runs = [] if exp is None else client.search_runs(
        [exp.experiment_id], "tags.`nbo.model` != ''", order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise NboError(f"no training run in experiment {experiment!r} (train first: nbo train)")
    return runs[0].info.run_id


def load_run_report(client: object, run_id: str, workdir: str) -> dict[str, object]:
    """A logged run's report: parameters, metrics, the metrics-vs-baselines table and chart paths.

    `client` is an `MlflowClient`; artifacts are downloaded into `workdir`.
    """
    from pathlib import Path

    run = client.get_run(run_id)
    local = Path(client.download_artifacts(run_id, "report", workdir))
    table = pd.read_csv(local / "metrics_vs_baselines.csv", index_col=0)
    stage_file = local / "by_lifecycle_stage.csv"
    return {
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "table": table,
        "importance": pd.read_csv(local / "importance.csv"),
        "by_stage": pd.read_csv(stage_file, index_col=0) if stage_file.exists() else pd.DataFrame(),
        "charts": sorted(str(p) for p in local.glob("*.png")),
    }

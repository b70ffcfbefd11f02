"""Fit, evaluate and record one model: one MLflow run per fit, a registered `challenger` at the end.

The run logs parameters, the data window, the feature-set version, metrics against baselines,
PNG charts, the validation sample (so `promote` can compare versions on the same rows), and the
model with signature and input example. The alias moves only after everything else succeeded: a
failed run never moves an alias.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from features import FEATURE_SET, NEVER_DAYS
from features.bgnbd_estimator import BetaGeoModel
from nbo.data import Dataset
from nbo.errors import NboError
from training.datasets import TrainingSet, churn_set, propensity_set, time_split
from models.calibrated import OBJECTIVES, CalibratedBooster
from models.pyfunc import NboPyfunc
from training.imputer import MedianImputer
from training.report import Report, build_report, calibration_counts
from models.tracking import CHALLENGER, MODEL_NAMES, Tracking
from training.registry import BASELINES_TAG, log_pyfunc, register

log = logging.getLogger(__name__)

PIP_REQUIREMENTS = ["lightgbm>=4,<5", "scikit-learn>=1.6,<2", "pandas>=3,<4", "numpy>=2,<3"]
VALIDATION_SAMPLE_ROWS = 100_000
#: Validation rows the report's mean |SHAP| averages, evenly spaced over the validation period.
#: TreeSHAP (`pred_contrib`) costs ~0.3 ms per row per 50 trees on one thread: 20,000 rows (the
#: first ones, before issue 24) were 87 s of a 6-minute `nbo train` on 5,000 customers, whatever
#: the size of the world; 5,000 rows rank the features the same and cost a quarter of it.
SHAP_ROWS = 5_000


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a fit; logged as the run's parameters."""

    as_of: pd.Timestamp
    window_days: int = 7
    horizon_days: int = 90
    churn_snapshots: int = 4
    churn_step_days: int = 30
    validation_share: float = 0.2
    #: A cap: early stopping on the later period picks the number of rounds below it.
    num_boost_round: int = 1000
    max_exposures: int | None = None
    seed: int = 0
    calibration: str = "centered_isotonic"  # or "isotonic": the step map used before issue 20
    #: Propensity objective: "binary", "choice", or "auto" (choice when every decision of the
    #: training rows has two or more candidates and exactly one acceptance; docs/training.md).
    objective: str = "auto"
    #: Who builds the training sets: "pandas" (this machine) or "spark" (training/spark_sets.py;
    #: the same sets), on `spark_master` or the Spark Connect `spark_remote` (nbo/spark.py).
    engine: str = "pandas"
    spark_master: str | None = None
    spark_remote: str | None = None
    #: Processes building the propensity set's pieces with pandas (forked; the same rows whatever
    #: the number, `training.datasets.propensity_set`); 1 builds them in this process.
    workers: int = 1
    #: A binary booster grows on at most about this many training rows: above it, every positive
    #: and a seeded share of the negatives, weighted (`models.calibrated.negative_sample`); early
    #: stopping and calibration still see every validation row. None: every row.
    max_fit_rows: int | None = 1_000_000

    def params(self) -> dict[str, object]:
        return {
            "as_of": str(self.as_of),
            "window_days": self.window_days,
            "horizon_days": self.horizon_days,
            "churn_snapshots": self.churn_snapshots,
            "churn_step_days": self.churn_step_days,
            "validation_share": self.validation_share,
            "num_boost_round": self.num_boost_round,
            "objective_requested": self.objective,
            "feature_set": FEATURE_SET.name,
            "feature_set_version": FEATURE_SET.version,
            "calibration": self.calibration,
            "training_set_engine": self.engine,
            "max_fit_rows": self.max_fit_rows if self.max_fit_rows is not None else "none",
        }


@dataclass(frozen=True)
class TrainResult:
    model: str
    registered_name: str
    version: str
    run_id: str
    report: Report


def _logistic(train: TrainingSet, seed: int):
    """The logistic-regression baseline (median imputation, standard scaling). BLAS on one thread:
    its matrix-vector products are memory-bound, and OpenBLAS' second thread spinning on a busy
    machine made the 305k-row fit 3.3 s of CPU instead of 1.2 s (docs/training.md)."""
    pipe = make_pipeline(
        MedianImputer(),
        StandardScaler(),
        LogisticRegression(max_iter=500, random_state=seed),
    )
    with threadpool_limits(limits=1, user_api="blas"):
        return pipe.fit(train.X, train.y)


def _offer_rate_baseline(train: TrainingSet, valid: TrainingSet) -> np.ndarray:
    """Historical acceptance rate of each offer in the training period (global rate for new offers)."""
    frame = pd.DataFrame({"offer_id": train.meta["offer_id"], "y": train.y})
    prior, weight = float(train.y.mean()), 20.0
    stats = frame.groupby("offer_id")["y"].agg(["sum", "count"])
    rate = (stats["sum"] + prior * weight) / (stats["count"] + weight)
    return valid.meta["offer_id"].map(rate).fillna(prior).to_numpy(dtype=float)


def _recency_baseline(train: TrainingSet, valid: TrainingSet) -> np.ndarray:
    """RFM heuristic: churn risk is the rank of days since the last purchase, scaled to the base rate.

    A rank is not a probability, so it is mapped to the training churn rate by quantile bins,
    which keeps its ranking (AUC) and gives it a fair Brier score.
    """
    col = train.feature_names.index("recency_days")
    r_train, r_valid = train.X[:, col], valid.X[:, col]
    edges = np.unique(np.nanquantile(r_train, np.linspace(0, 1, 21)))
    bins_train = np.digitize(r_train, edges[1:-1])
    rates = pd.Series(train.y).groupby(bins_train).mean()
    return pd.Series(np.digitize(r_valid, edges[1:-1])).map(rates).fillna(train.y.mean()).to_numpy(float)


def _purchase_summary(part: TrainingSet) -> tuple[np.ndarray, np.ndarray]:
    """BG/NBD's (x, t_x, T) of each row from its purchase-cycle columns, and which rows have a purchase."""
    col = part.feature_names.index
    x = part.X[:, col("repeat_purchase_days")].astype(float)
    T = part.X[:, col("first_purchase_days")].astype(float)
    recency = part.X[:, col("recency_days")].astype(float)
    bought = T < NEVER_DAYS
    T = np.where(bought, T, 0.0)
    t_x = np.where(bought & (x > 0), np.clip(T - recency, 0.0, T), 0.0)
    return np.column_stack([np.where(bought, x, 0.0), t_x, T]), bought


def _bgnbd_baseline(train: TrainingSet, valid: TrainingSet, horizon_days: int, seed: int) -> np.ndarray:
    """The classic BG/NBD (Fader, Hardie and Lee 2005): fitted by maximum likelihood on the training
    rows' purchase histories (at most 50,000, as of their snapshots), its probability of no
    purchase in the next `horizon_days` is the churn probability of each validation row."""
    X_train, bought_train = _purchase_summary(train)
    X_train = X_train[bought_train]
    if len(X_train) > 50_000:
        X_train = X_train[np.random.default_rng(seed).choice(len(X_train), 50_000, replace=False)]
    model = BetaGeoModel().fit(X_train)
    X_valid, bought = _purchase_summary(valid)
    out = np.full(len(valid), float(train.y.mean()))
    out[bought] = model.p_no_purchase(X_valid[bought], float(horizon_days))
    return out


def _truth_for(data_dir: Path | None, valid: TrainingSet) -> np.ndarray | None:
    """The simulator's true acceptance probability of each validation exposure, when present."""
    if data_dir is None:
        return None
    path = data_dir / "truth" / "contacts_truth.parquet"
    if not path.exists():
        return None
    truth = pd.read_parquet(path)
    key = truth.set_index(["decision_id", "offer_id"])["p_accept"]
    idx = pd.MultiIndex.from_arrays([valid.meta["decision_id"], valid.meta["offer_id"]])
    values = key.reindex(idx).to_numpy(dtype=float)
    return None if np.isnan(values).any() else values


def _spark_set(which: str, config: TrainConfig, data_dir: Path | None) -> TrainingSet:
    """The training set built by Spark (equal to the pandas one: training/spark_sets.py)."""
    if data_dir is None:
        raise NboError("the Spark engine reads the data directory itself: pass its path")
    from training.spark_sets import spark_churn_set, spark_propensity_set

    where = {"master": config.spark_master, "remote": config.spark_remote}
    if which == "propensity":
        return spark_propensity_set(data_dir, config.as_of, config.window_days, config.max_exposures, **where)
    return spark_churn_set(data_dir, config.as_of, config.horizon_days, config.churn_snapshots,
                           config.churn_step_days, **where)


def fit_and_log(
    which: str,
    data: Dataset,
    config: TrainConfig,
    tracking: Tracking,
    data_dir: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Build the training set, fit LightGBM and baselines, log everything, register a challenger."""
    if which not in MODEL_NAMES:
        raise NboError(f"unknown model {which!r}; use one of {', '.join(MODEL_NAMES)}")
    if config.engine == "spark":
        full = _spark_set(which, config, data_dir)
    elif which == "propensity":
        full = propensity_set(data, config.as_of, config.window_days, config.max_exposures, progress,
                              workers=config.workers)
    else:
        full = churn_set(data, config.as_of, config.horizon_days, config.churn_snapshots,
                         config.churn_step_days, progress)
    objective = _objective(which, full, config.objective)
    is_valid = time_split(full.meta["ts"], config.validation_share)
    if objective == "choice":  # a decision's candidates stay on one side of the split
        is_valid = _whole_decisions(full.meta["decision_id"], is_valid)
    train, valid = full.split(~is_valid), full.split(is_valid)
    for part, label in ((train, "training"), (valid, "validation")):
        if len(np.unique(part.y)) < 2:
            raise NboError(f"{which}: the {label} period has a single class ({len(part)} rows); "
                           "use more data or an earlier --as-of")
    log.info("%s: %d training rows, %d validation rows, objective %s", which, len(train), len(valid), objective)

    group = train.meta["decision_id"].to_numpy(dtype=object) if objective == "choice" else None
    group_val = valid.meta["decision_id"].to_numpy(dtype=object) if objective == "choice" else None
    model = CalibratedBooster(
        feature_names=full.feature_names,
        params={"seed": config.seed},
        num_boost_round=config.num_boost_round,
        calibration=config.calibration,
        objective=objective,
        attributes=full.attributes,
        offer_vocabulary=full.vocabulary,
        max_rows=config.max_fit_rows,
    ).fit(train.X, train.y, valid.X, valid.y, group=group, group_val=group_val)
    # The booster scores the validation rows once: the report's out-of-fold calibration, the
    # shipped probabilities and the raw ranking all start from these scores.
    raw = model.raw_score(valid.X)
    # Validation rows are in time order; their report uses out-of-fold calibration (crossfit_proba).
    p = model.crossfit_proba(None, valid.y, group=group_val, raw=raw)
    scores = {"lightgbm": p, "logistic": _logistic(train, config.seed).predict_proba(valid.X)[:, 1]}
    if which == "propensity":
        scores["offer_rate"] = _offer_rate_baseline(train, valid)
        truth = _truth_for(data_dir, valid)
    else:
        scores["recency_rank"] = _recency_baseline(train, valid)
        scores["bgnbd"] = _bgnbd_baseline(train, valid, config.horizon_days, config.seed)
        truth = None
    contributions = model.contributions(valid.X[_shap_rows(len(valid))])
    shipped = model.apply_calibration(raw, group_val)  # = predict_proba_positive(valid.X, group_val)
    report = build_report(
        which, valid.y, scores, full.feature_names, model.gain_importance(), contributions,
        stages=valid.meta["lifecycle"].to_numpy(), truth=truth,
        rank_scores={"lightgbm": shipped},
    )
    if objective == "choice":
        report.metrics["top1_choice"] = _top1(valid.meta["decision_id"].to_numpy(dtype=object), p, valid.y)
    # The shipped calibration was fitted on these rows: a step map could merge ranks in their
    # favour (the centred map cannot: it is strictly increasing); the booster's own ranking is the
    # out-of-sample view of the same model.
    if 0 < valid.y.sum() < len(valid.y):
        report.metrics["auc_uncalibrated"] = float(roc_auc_score(valid.y, raw))
    report.metrics.update(calibration_counts(shipped, raw))
    report.notes.append(
        f"calibration {model.calibration}: {int(report.metrics['distinct_predictions']):,} distinct predicted "
        f"values on {len(valid):,} validation rows (raw booster {int(report.metrics['distinct_raw_scores']):,}); "
        f"AUC calibrated {report.metrics['auc']:.4f} vs raw {report.metrics.get('auc_uncalibrated', float('nan')):.4f}; "
        f"Brier {report.metrics['brier']:.5f}, ECE {report.metrics['calibration_error']:.4f} (out-of-fold)")
    name = MODEL_NAMES[which]
    with mlflow.start_run(run_name=f"{which}-{config.as_of:%Y-%m-%d}") as run:
        mlflow.set_tags({"nbo.model": which, "nbo.feature_set_version": FEATURE_SET.version,
                         BASELINES_TAG: ",".join(name.split(" ")[0] for name in scores if name != "lightgbm")})
        mlflow.log_params({**config.params(), "model": which, "train_rows": len(train), "valid_rows": len(valid),
                           "train_start": str(train.meta["ts"].min()), "valid_start": str(valid.meta["ts"].min()),
                           "valid_end": str(valid.meta["ts"].max()), "best_iteration": model.booster_.best_iteration, "fit_rows": model.sampled_rows_,
                           "objective": objective, "offer_attributes": ",".join(full.attributes) or "none"})
        mlflow.log_metrics({k: v for k, v in report.metrics.items() if np.isfinite(v)})
        for fname, fig in report.figures.items():
            mlflow.log_figure(fig, f"report/{fname}")
        with tempfile.TemporaryDirectory() as tmp:
            tmpdir = Path(tmp)
            report.table.to_csv(tmpdir / "metrics_vs_baselines.csv")
            report.importance.to_csv(tmpdir / "importance.csv", index=False)
            if not report.by_stage.empty:
                report.by_stage.to_csv(tmpdir / "by_lifecycle_stage.csv")
            (tmpdir / "summary.txt").write_text(report.summary() + "\n")
            sample = _validation_sample(valid, config.seed, by_decision=objective == "choice")
            sample.to_parquet(tmpdir / "validation.parquet", index=False)
            mlflow.log_artifacts(str(tmpdir), "report")
        example = pd.DataFrame(valid.X[:5], columns=full.feature_names)
        signature = infer_signature(example, p[:5])
        info = log_pyfunc(
            name="model",
            python_model=NboPyfunc(model, FEATURE_SET.version),
            signature=signature,
            input_example=example,
            pip_requirements=PIP_REQUIREMENTS,
        )
        version = register(tracking.activate(), info.model_uri, name, CHALLENGER)
        mlflow.set_tag("nbo.registered_version", version)
    return TrainResult(which, name, version, run.info.run_id, report)


def _shap_rows(n: int) -> np.ndarray:
    """`SHAP_ROWS` positions evenly spaced over `n` validation rows (all of them when fewer)."""
    return np.arange(n) if n <= SHAP_ROWS else np.linspace(0, n - 1, SHAP_ROWS).astype(np.int64)


def _validation_sample(valid: TrainingSet, seed: int, by_decision: bool = False) -> pd.DataFrame:
    """Validation rows kept with the run, so promotion compares versions on the same data. A
    choice model's sample keeps whole decisions and their ids (`__decision__`)."""
    rng = np.random.default_rng(seed)
    idx = np.arange(len(valid))
    if len(idx) > VALIDATION_SAMPLE_ROWS:
        if by_decision:
            codes = pd.factorize(valid.meta["decision_id"])[0]
            per = max(1, len(idx) // (int(codes.max()) + 1))
            keep = rng.choice(int(codes.max()) + 1, max(1, VALIDATION_SAMPLE_ROWS // per), replace=False)
            idx = np.flatnonzero(np.isin(codes, keep))
        else:
            idx = np.sort(rng.choice(idx, VALIDATION_SAMPLE_ROWS, replace=False))
    frame = pd.DataFrame(valid.X[idx], columns=valid.feature_names)
    frame["__label__"] = valid.y[idx]
    if by_decision:
        frame["__decision__"] = valid.meta["decision_id"].to_numpy(dtype=object)[idx]
    return frame


def _objective(which: str, full: TrainingSet, requested: str) -> str:
    """The propensity objective: as requested, or by the data for "auto" (churn: binary)."""
    if requested not in ("auto", *OBJECTIVES):
        raise NboError(f"--objective {requested!r} is not one of auto, {', '.join(OBJECTIVES)}")
    if which != "propensity":
        return "binary"
    if requested == "auto":
        return "choice" if full.is_choice_data() else "binary"
    if requested == "choice" and not full.is_choice_data():
        raise NboError("--objective choice needs a contact log of choices: every decision with two or more "
                       "candidates and exactly one accepted; this log has decisions with none, several or one "
                       "candidate (use --objective binary or auto)")
    return requested


def _whole_decisions(decision: pd.Series, is_valid: np.ndarray) -> np.ndarray:
    """The validation mask widened so that a decision with any validation row is all validation."""
    ids = decision.to_numpy(dtype=object)
    return np.isin(ids, pd.unique(ids[is_valid]))


def _top1(decision: np.ndarray, p: np.ndarray, y: np.ndarray) -> float:
    """Share of decisions whose highest P(accept) is the chosen candidate."""
    frame = pd.DataFrame({"d": decision, "p": p, "y": y})
    best = frame.sort_values(["d", "p"], ascending=[True, False], kind="stable").groupby("d", sort=False).head(1)
    return float(best["y"].mean())


def metrics_json(results: list[TrainResult]) -> str:
    return json.dumps({r.model: {"version": r.version, "run_id": r.run_id, **r.report.metrics} for r in results},
                      indent=2, default=float)

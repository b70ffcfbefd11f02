"""Fit, evaluate and register the uplift model (`nbo train --model uplift`): one MLflow run per fit.

The set (`training.uplift_set`) is split by time: the latest `validation_share` of time is held
out. On the held-out decisions the run reports, next to each other:

- the uplift model's incremental conversion tau (`models.uplift.UpliftBooster`, X-learner);
- the response model of the same rows (LightGBM on the treated rows' acceptance: what nbo's
  propensity model learns), ranking by P(accept) and by P(accept) x value;
- random targeting;

as Qini coefficients and AUUC on conversions (bought the category within the window) and on
value (the plain offer's margin of a conversion less the incentive of an acceptance, currency
units), and, on a simulated log, against the simulator's truth: the true incremental conversion
of every held-out contact (recovered from `truth/contacts_truth.parquet`), its correlation and
mean absolute error with tau and with P(accept).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

from features import FEATURE_SET
from models.tracking import CHALLENGER, UPLIFT_MODEL, Tracking
from models.uplift import DEFAULT_PARAMS, UpliftBooster, UpliftPyfunc
from nbo.data import Dataset
from nbo.errors import NboError
from training.datasets import time_split
from training.registry import register
from training.uplift_metrics import QiniCurve, qini_curve, qini_figure
from training.uplift_set import UpliftSet, uplift_set

log = logging.getLogger(__name__)

PIP_REQUIREMENTS = ["lightgbm>=4,<5", "scikit-learn>=1.6,<2", "pandas>=3,<4", "numpy>=2,<3"]
#: Run tag: the run's value-Qini figures the promotion gate compares (`training.registry.promote_uplift`).
UPLIFT_TAG = "nbo.uplift"


@dataclass(frozen=True)
class UpliftConfig:
    as_of: pd.Timestamp
    window_days: int = 7
    validation_share: float = 0.25
    num_boost_round: int = 200
    learner: str = "share"
    seed: int = 0

    def params(self) -> dict[str, object]:
        return {"as_of": str(self.as_of), "window_days": self.window_days, "validation_share": self.validation_share,
                "num_boost_round": self.num_boost_round, "learner": self.learner, "seed": self.seed,
                "feature_set": FEATURE_SET.name, "feature_set_version": FEATURE_SET.version}


@dataclass(frozen=True)
class UpliftResult:
    registered_name: str
    version: str
    run_id: str
    metrics: dict[str, float]

    def summary(self) -> str:
        m = self.metrics
        lines = [
            f"uplift: {int(m['train_rows']):,} training rows, {int(m['valid_rows']):,} held-out rows "
            f"({int(m['valid_control_rows']):,} without contact)",
            f"{'':<22}{'qini (conv.)':>14}{'auuc (conv.)':>14}{'qini (value)':>14}",
        ]
        for name in ("uplift", "response", "random"):
            lines.append(f"{name:<22}{m[f'qini_{name}']:>14.5f}{m[f'auuc_{name}']:>14.5f}"
                         f"{m[f'value_qini_{name}']:>14.4f}")
        if "truth_corr_uplift" in m:
            lines.append(f"vs the simulator's true incremental conversion of {int(m['truth_rows']):,} held-out contacts: "
                         f"corr {m['truth_corr_uplift']:.3f} (P(accept): {m['truth_corr_response']:.3f}), "
                         f"MAE {m['truth_mae_uplift']:.4f}, mean {m['mean_uplift']:.4f} vs true {m['mean_true_uplift']:.4f}")
        return "\n".join(lines)


def _response_model(train: UpliftSet, config: UpliftConfig) -> lgb.Booster:
    """P(accept | contacted with the row's offer): the response ranking the uplift is compared with."""
    t = train.treatment == 1
    params = {**DEFAULT_PARAMS, "objective": "binary", "seed": config.seed}
    data = lgb.Dataset(train.X[t], label=train.accepted[t], feature_name=train.feature_names, free_raw_data=True)
    return lgb.train(params, data, num_boost_round=config.num_boost_round)


def true_uplift(data_dir: Path | None, valid: UpliftSet) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, true incremental conversion) of the held-out contacts, from a simulated log's truth.

    The truth gives each contact's expected incremental value iv and acceptance probability p; with
    the anyway share s of the simulator's config: iv + cost = tau x base x (1 - s) + p x (s x base - incentive).
    """
    if data_dir is None:
        return None
    path, config = data_dir / "truth" / "contacts_truth.parquet", data_dir / "truth" / "config.json"
    if not path.exists() or not config.exists():
        return None
    truth = pd.read_parquet(path)
    if "incremental_value" not in truth.columns:
        return None
    share = float(json.loads(config.read_text()).get("anyway_value_share", 0.0))
    rows = np.flatnonzero(valid.treatment == 1)
    meta = valid.meta.iloc[rows]
    found = truth.set_index(["decision_id", "offer_id"]).reindex(pd.MultiIndex.from_arrays([meta["decision_id"], meta["offer_id"]]))
    ok = found["incremental_value"].notna().to_numpy()
    base, inc, cost = (meta[c].to_numpy(np.float64) for c in ("base_value", "incentive_cost", "cost"))
    iv, p = found["incremental_value"].to_numpy(np.float64), found["p_accept"].to_numpy(np.float64)
    tau = (iv + cost - p * (share * base - inc)) / np.maximum(base * (1.0 - share), 1e-9)
    return rows[ok], tau[ok]


def evaluate_uplift(model: UpliftBooster, response: lgb.Booster, valid: UpliftSet, data_dir: Path | None,
                    seed: int = 0) -> tuple[dict[str, float], dict[str, QiniCurve], dict[str, QiniCurve]]:
    """Qini / AUUC of the uplift, the response ranking and random targeting on held-out rows, and
    the truth comparison when the log is simulated (module docstring)."""
    tau = model.predict_uplift(valid.X)
    p = response.predict(valid.X, num_threads=1)
    base, inc, value = (valid.meta[c].to_numpy(np.float64) for c in ("base_value", "incentive_cost", "value"))
    outcome_value = valid.y * base - valid.accepted * inc
    rand = np.zeros(len(tau))
    conv = {name: qini_curve(s, valid.treatment, valid.y, seed=seed)
            for name, s in (("uplift", tau), ("response", p), ("random", rand))}
    worth = {name: qini_curve(s, valid.treatment, outcome_value, seed=seed)
             for name, s in (("uplift", tau * base - p * inc), ("response", p * value), ("random", rand))}
    metrics: dict[str, float] = {"valid_rows": float(len(valid)), "valid_control_rows": float((valid.treatment == 0).sum()),
                                 "mean_uplift": float(tau[valid.treatment == 1].mean())}
    for name in conv:
        metrics[f"qini_{name}"] = conv[name].coefficient
        metrics[f"auuc_{name}"] = conv[name].auuc
        metrics[f"value_qini_{name}"] = worth[name].coefficient
    truth = true_uplift(data_dir, valid)
    if truth is not None and len(truth[0]) > 1:
        rows, true_tau = truth
        metrics.update({
            "truth_rows": float(len(rows)),
            "truth_corr_uplift": float(np.corrcoef(tau[rows], true_tau)[0, 1]),
            "truth_corr_response": float(np.corrcoef(p[rows], true_tau)[0, 1]),
            "truth_mae_uplift": float(np.abs(tau[rows] - true_tau).mean()),
            "mean_uplift": float(tau[rows].mean()),
            "mean_true_uplift": float(true_tau.mean()),
        })
    return metrics, conv, worth


def fit_uplift(data: Dataset, config: UpliftConfig, data_dir: Path | None = None, progress: bool = True):  # type: ignore[no-untyped-def]
    """Build the set, split by time, fit the uplift and response models, evaluate: (model, metrics, curves)."""
    full = uplift_set(data, config.as_of, config.window_days, config.seed, progress)
    is_valid = time_split(full.meta["ts"], config.validation_share)
    train, valid = full.split(~is_valid), full.split(is_valid)
    for part, label in ((train, "training"), (valid, "validation")):
        for arm, rows in (("contacts", part.treatment == 1), ("decisions without contact", part.treatment == 0)):
            if len(np.unique(part.y[rows])) < 2:
                raise NboError(f"uplift: the {label} period's {arm} have a single outcome ({int(rows.sum())} rows); "
                               "use more data or a later --as-of")
    model = UpliftBooster(full.feature_names, learner=config.learner, num_boost_round=config.num_boost_round,
                          params={"seed": config.seed}, categorical=FEATURE_SET.booster_categorical).fit(
        train.X, train.treatment, train.outcome, accepted=train.accepted, groups=train.meta["customer_id"].to_numpy(object),
        lift_outcome=train.prompt_purchases)
    response = _response_model(train, config)
    metrics, conv, worth = evaluate_uplift(model, response, valid, data_dir, config.seed)
    metrics["train_rows"] = float(len(train))
    if full.span_days is not None:
        metrics["lift_span_days"] = float(full.span_days)
    if hasattr(model, "beta_"):
        metrics["beta"] = model.beta_
    return model, metrics, conv, worth, train, valid


def fit_and_log_uplift(data: Dataset, config: UpliftConfig, tracking: Tracking, data_dir: Path | None = None,
                       progress: bool = True) -> UpliftResult:
    """Fit and evaluate (`fit_uplift`), log one MLflow run, register `nbo-uplift` as challenger."""
    model, metrics, conv, worth, train, valid = fit_uplift(data, config, data_dir, progress)
    with mlflow.start_run(run_name=f"uplift-{config.as_of:%Y-%m-%d}") as run:
        mlflow.set_tags({"nbo.model": "uplift", "nbo.feature_set_version": FEATURE_SET.version, UPLIFT_TAG: "1"})
        mlflow.log_params({**config.params(), "model": "uplift", "train_start": str(train.meta["ts"].min()),
                           "valid_start": str(valid.meta["ts"].min()), "valid_end": str(valid.meta["ts"].max())})
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_figure(qini_figure(conv, "conversions"), "report/qini.png")
        mlflow.log_figure(qini_figure(worth, "value"), "report/qini_value.png")
        example = pd.DataFrame(valid.X[:5], columns=valid.feature_names)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=UpliftPyfunc(model, FEATURE_SET.version),
            signature=infer_signature(example, model.predict_uplift(valid.X[:5])),
            input_example=example,
            pip_requirements=PIP_REQUIREMENTS,
        )
        version = register(tracking.activate(), info.model_uri, UPLIFT_MODEL, CHALLENGER)
        mlflow.set_tag("nbo.registered_version", version)
    return UpliftResult(UPLIFT_MODEL, version, run.info.run_id, metrics)

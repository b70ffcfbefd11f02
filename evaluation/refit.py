"""The nbo policies' propensity model in the closed loop: fitted once on a logging-policy run
(`TrainedWorld`) and refitted on the policy's own log as a deployed nbo would (`Refitter`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import FEATURE_SET
from models.calibrated import CalibratedBooster
from nbo.errors import NboError
from simulator import SimConfig, Simulator
from simulator.io import dataset
from training.datasets import propensity_set, time_split

log = logging.getLogger(__name__)

#: Days between refits of the nbo policies' model on their own log (`Refitter`; 0 = never). Over a
#: simulated year, monthly refits took nbo from 77.9-88.4 % of the oracle's long-term value
#: (5 seeds, median 81.3 %) to 78.5-94.0 % (7 seeds, median 82.4 %; docs/evaluation.md).
DEFAULT_REFIT_DAYS = 30


@dataclass(frozen=True)
class TrainedWorld:
    """What the nbo policies learn before the evaluation period, from a logging-policy run."""

    model: CalibratedBooster
    popularity: np.ndarray  # acceptances per offer (catalogue order) in the training log
    train_rows: int
    valid_auc: float
    X: np.ndarray  # the logging run's exposure rows (training and validation), for refits
    y: np.ndarray
    num_boost_round: int = 200
    seed: int = 0


def train_on_logging_run(config: SimConfig, seed: int, days: int, num_boost_round: int = 200) -> TrainedWorld:
    """Simulate `days` days of the logging policy on the same world configuration with another
    seed, and fit the propensity model the way `training.train.fit_and_log` does (point-in-time
    exposure rows, time split, calibrated LightGBM) without MLflow."""
    from training.metrics import binary_metrics

    sim = Simulator(config.model_copy(update={"days": days}), seed=seed)
    sim.run()
    data = dataset(sim)
    as_of = pd.Timestamp(config.start) + pd.Timedelta(days=days)
    full = propensity_set(data, as_of, window_days=7, progress=False)
    valid = time_split(full.meta["ts"], 0.2)
    train, val = full.split(~valid), full.split(valid)
    model = CalibratedBooster(feature_names=full.feature_names, params={"seed": seed}, num_boost_round=num_boost_round,
                              attributes=full.attributes, offer_vocabulary=full.vocabulary).fit(train.X, train.y, val.X, val.y)
    auc = binary_metrics(val.y, model.predict_proba_positive(val.X)).auc
    accepted = data.contacts[data.contacts["outcome"] == "accepted"]["offer_id"].value_counts()
    popularity = accepted.reindex(data.offers["offer_id"]).fillna(0).to_numpy(float)
    log.info("trained on %d exposures (%s), validation AUC %.3f", len(train), FEATURE_SET.version, auc)
    return TrainedWorld(model, popularity, len(train), float(auc), full.X, full.y, num_boost_round, seed)


class Refitter:
    """The nbo policies' propensity model as a deployed nbo keeps it: refitted every `every_days`
    days on the logging run's rows plus the exposures the policy logged itself whose acceptance
    window has closed (early stopping and calibration on the latest 20 % of the policy's own
    rows, the period nearest to serving). `every_days = 0`: the logging run's model all along.

    Rows are built once, when their window closes (`propensity_set(after=...)`), and kept: a
    refit costs the new period's rows and one fit, not the whole history again.
    """

    def __init__(self, trained: TrainedWorld, every_days: int = 0, window_days: int = 7,
                 min_rows: int = 1000, min_positives: int = 20) -> None:
        if every_days < 0:
            raise ValueError("every_days must be >= 0")
        self.trained = trained
        self.model = trained.model
        self.every_days = every_days
        self.window_days = window_days
        self.min_rows = min_rows
        self.min_positives = min_positives
        self.refitted_on: list[int] = []  # days simulated at each refit
        self._after: pd.Timestamp | None = None
        self._X: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._ts: list[np.ndarray] = []

    def __call__(self) -> CalibratedBooster:
        return self.model

    @property
    def refits(self) -> int:
        return len(self.refitted_on)

    def after_day(self, sim: Simulator, days_done: int) -> None:
        """Refit when `days_done` days have been simulated and a period has ended."""
        if not self.every_days or days_done % self.every_days:
            return
        as_of = pd.Timestamp(sim.config.start) + pd.Timedelta(days=days_done)
        try:
            new = propensity_set(dataset(sim), as_of, self.window_days, progress=False, after=self._after)
        except NboError:  # no window closed yet
            return
        self._after = as_of - pd.Timedelta(days=self.window_days)
        self._X.append(new.X)
        self._y.append(new.y)
        self._ts.append(new.meta["ts"].to_numpy())
        y_own = np.concatenate(self._y)
        if len(y_own) < self.min_rows or y_own.sum() < self.min_positives:  # too little to validate on
            return
        X_own, ts_own = np.concatenate(self._X), pd.Series(np.concatenate(self._ts))
        valid = time_split(ts_own, 0.2)
        if len(np.unique(y_own[valid])) < 2:
            return
        base = self.trained
        self.model = CalibratedBooster(
            feature_names=list(base.model.feature_names_in_), params={"seed": base.seed},
            num_boost_round=base.num_boost_round, offer_vocabulary=base.model.vocabulary,
        ).fit(np.concatenate([base.X, X_own[~valid]]), np.concatenate([base.y, y_own[~valid]]),
              X_own[valid], y_own[valid])
        self.refitted_on.append(days_done)
        log.info("refit %d at %s on %d rows (%d own)", self.refits, as_of.date(), len(base.y) + int((~valid).sum()),
                 len(y_own))

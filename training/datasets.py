"""Training sets built point in time: features as they were known when the label's clock started.

Propensity rows are exposures; their features come from a daily snapshot taken at midnight of the
exposure day (only data before it), with the exposure's own context (channel, hour, weekday, and
for web/app exposures the page and session categories seen just before it).
Churn rows are active customers at several past snapshot dates, so the model sees seasons.
Both are split by time: earlier periods train, the latest one validates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features import (
    FEATURE_SET,
    build_customer_features,
    build_exposure_features,
)
from features.session import exposure_sessions
from nbo.data import Dataset
from nbo.errors import NboError
from training.labels import churn_labels, churn_snapshots, propensity_labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSet:
    """Feature matrix, labels and row metadata (ids, time, stage) for one model."""

    X: np.ndarray
    y: np.ndarray
    meta: pd.DataFrame
    feature_names: list[str]

    def split(self, mask: np.ndarray) -> TrainingSet:
        return TrainingSet(self.X[mask], self.y[mask], self.meta[mask].reset_index(drop=True), self.feature_names)

    def __len__(self) -> int:
        return len(self.y)


def _matrix(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    return frame[names].to_numpy(dtype=np.float32, na_value=np.nan)


def propensity_set(
    data: Dataset,
    as_of: pd.Timestamp,
    window_days: int = 7,
    max_rows: int | None = None,
    progress: bool = True,
    after: pd.Timestamp | None = None,
) -> TrainingSet:
    """One row per exposure whose acceptance window closed before `as_of`.

    `after`: only exposures strictly later than it. A model refitted as the log grows passes the
    previous `as_of - window` and appends the new rows to the ones it already has: a row's
    features and label never change once its window has closed.
    """
    exposures = propensity_labels(data.contacts, as_of, window_days)
    if after is not None:
        exposures = exposures[exposures["ts"] > after].reset_index(drop=True)
    if max_rows is not None and len(exposures) > max_rows:
        exposures = exposures.iloc[-max_rows:].reset_index(drop=True)  # keep the most recent
    if exposures.empty:
        raise NboError(
            "no exposures with a closed acceptance window before --as-of: the contacts table is empty "
            "or too recent to train a propensity model"
        )
    names = list(FEATURE_SET.candidate_features)
    # The page and session each web/app exposure was shown in: the context the service gets from its caller.
    exposures = pd.concat([exposures, exposure_sessions(data.events, exposures)], axis=1)
    days = exposures["ts"].dt.normalize()
    parts: list[pd.DataFrame] = []
    for day, rows in tqdm(exposures.groupby(days, sort=True), desc="propensity snapshots", unit="day",
                          disable=not progress, leave=False):
        ids = rows["customer_id"].unique()
        customers = build_customer_features(data, day, customer_ids=ids)
        feats = build_exposure_features(customers, data.offers, data.contacts, rows, day)
        feats["label"] = rows["label"].to_numpy()
        feats["decision_id"] = rows["decision_id"].to_numpy()
        feats["ts"] = rows["ts"].to_numpy()
        feats["lifecycle"] = customers["lifecycle"].reindex(rows["customer_id"]).to_numpy()
        parts.append(feats)
    frame = pd.concat(parts, ignore_index=True)
    meta = frame[["decision_id", "customer_id", "offer_id", "ts", "lifecycle"]].reset_index(drop=True)
    return TrainingSet(_matrix(frame, names), frame["label"].to_numpy(dtype=np.int8), meta, names)


def churn_set(
    data: Dataset,
    as_of: pd.Timestamp,
    horizon_days: int = 90,
    snapshots: int = 4,
    step_days: int = 30,
    progress: bool = True,
) -> TrainingSet:
    """Active customers at several snapshot dates whose horizon ends before `as_of`."""
    names = list(FEATURE_SET.customer_features)
    parts = []
    dates = churn_snapshots(as_of, horizon_days, snapshots, step_days)
    for snapshot in tqdm(dates, desc="churn snapshots", unit="snapshot", disable=not progress, leave=False):
        labels = churn_labels(data, snapshot, horizon_days)
        if labels.empty:
            continue
        customers = build_customer_features(data, snapshot, customer_ids=labels.index)
        customers = customers.loc[labels.index]
        frame = customers.reset_index()
        frame["label"] = labels.to_numpy()
        frame["snapshot"] = snapshot
        parts.append(frame)
    if not parts:
        raise NboError(
            f"no active customers (a purchase in the year before) at any churn snapshot "
            f"({', '.join(str(d.date()) for d in dates)}): --as-of is too early for a {horizon_days}-day horizon"
        )
    if len(parts) < 2:
        raise NboError(
            f"churn needs active customers at two or more snapshots to split by time; found "
            f"{len(parts)} among {', '.join(str(d.date()) for d in dates)}: use more history or a shorter --horizon-days"
        )
    frame = pd.concat(parts, ignore_index=True)
    meta = frame[["customer_id", "snapshot", "lifecycle"]].rename(columns={"snapshot": "ts"})
    return TrainingSet(_matrix(frame, names), frame["label"].to_numpy(dtype=np.int8), meta, names)


def time_split(ts: pd.Series, validation_share: float = 0.2) -> np.ndarray:
    """Boolean mask of the validation rows: the latest `validation_share` of time (not of rows)."""
    ts = pd.to_datetime(ts)
    if ts.nunique() < 2:
        raise NboError("all training rows share one timestamp: cannot split by time")
    start, end = ts.min(), ts.max()
    cut = start + (end - start) * (1 - validation_share)
    return (ts > cut).to_numpy()

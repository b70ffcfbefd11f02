"""Training sets built point in time: features as they were known when the label's clock started.

Propensity rows are exposures; their features come from a daily snapshot taken at midnight of the
exposure day (only data before it), with the exposure's own context (channel, hour, weekday, and
for web/app exposures the page and session categories seen just before it).
Churn rows are active customers at several past snapshot dates, so the model sees seasons.
Both are split by time: earlier periods train, the latest one validates.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features import (
    FEATURE_SET,
    build_customer_features,
    build_exposure_features,
)
from features.customer import build_customer_features_at, customer_event_counts, customer_event_log
from features.events import EventLog
from features.offer_attributes import attribute_columns
from features.offers import OfferArrays, offer_vocabulary, prepare_offers
from features.session import exposure_sessions
from nbo.contract import ATTRIBUTE_PREFIX, CONTACTS
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
    #: Decision-time offer attribute names whose columns end `feature_names` (propensity only).
    attributes: tuple[str, ...] = ()
    #: The offer ids `offer_code` numbers (propensity only).
    vocabulary: tuple[str, ...] | None = None

    def split(self, mask: np.ndarray) -> TrainingSet:
        return TrainingSet(self.X[mask], self.y[mask], self.meta[mask].reset_index(drop=True), self.feature_names,
                           self.attributes, self.vocabulary)

    def is_choice_data(self) -> bool:
        """True when every decision has two or more candidates and exactly one acceptance: the
        log records choices among alternatives (one purchase per shopping occasion), not yes/no
        answers to offers shown one at a time."""
        if "decision_id" not in self.meta or not len(self.y):
            return False
        per = pd.Series(self.y, dtype=np.int64).groupby(self.meta["decision_id"].to_numpy(), sort=False).agg(["sum", "size"])
        return bool(((per["sum"] == 1) & (per["size"] >= 2)).all())

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
    attributes: tuple[str, ...] | None = None,
    workers: int = 1,
) -> TrainingSet:
    """One row per exposure whose acceptance window closed before `as_of`.

    `after`: only exposures strictly later than it. A model refitted as the log grows passes the
    previous `as_of - window` and appends the new rows to the ones it already has: a row's
    features and label never change once its window has closed. `attributes`: the decision-time
    offer attributes to use (default: those logged for at least one of the exposures; the Spark
    builder passes the whole log's, as each of its groups sees only its own customers).
    `workers`: processes building the pieces (forked, so they share the tables; the rows and their
    order are the same whatever the number: tested); 1 builds them in this process.
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
    # Decision-time offer attributes logged for at least one of these exposures, and the offer
    # vocabulary of the catalogue: the model keeps both, the scorer builds the same columns.
    if attributes is None:
        attributes = logged_attributes(exposures)
    vocabulary = offer_vocabulary(data.offers["offer_id"])
    offers = prepare_offers(data.offers, vocabulary=vocabulary)
    names = [*FEATURE_SET.candidate_features, *attribute_columns(attributes)]
    # The page and session each web/app exposure was shown in: the context the service gets from its caller.
    exposures = pd.concat([exposures, exposure_sessions(data.events, exposures)], axis=1)
    # Each piece is turned into float32 model inputs at once: the float64 frames of every piece
    # are never held together (3.7M exposures x ~190 columns would be ~5.6 GB).
    pieces = list(_pieces(data, exposures, len(offers)))
    job = _PieceJob(data, offers, exposures, pieces, attributes, names)
    done = tqdm(total=len(pieces), desc="propensity snapshots", unit="piece", disable=not progress, leave=False)
    with done:
        built = list(_built_pieces(job, workers, done))
    matrices, labels, metas = zip(*built)
    meta = pd.concat(metas, ignore_index=True)
    return TrainingSet(np.concatenate(matrices), np.concatenate(labels), meta, names, attributes, vocabulary)


def logged_attributes(exposures: pd.DataFrame) -> tuple[str, ...]:
    """The decision-time offer attributes logged for at least one of `exposures`."""
    return tuple(a for a in CONTACTS.attribute_names(exposures.columns)
                 if exposures[f"{ATTRIBUTE_PREFIX}{a}"].notna().any())


#: Event rows (a snapshot reads its customer's events before its day) and candidate cells
#: (opportunities x offers, for the offer and choice history) per piece of the propensity set:
#: memory stays bounded (a few hundred MB) whatever the number of exposures.
PIECE_EVENTS = 4_000_000
PIECE_CELLS = 2_000_000


@dataclass(frozen=True)
class _Snapshots:
    """The (customer, day) snapshots of a piece of the exposures, and each exposure's one."""

    customer_ids: np.ndarray
    days: np.ndarray  # datetime64[ns], midnight
    of_exposure: np.ndarray  # position in the snapshots of each exposure of the piece
    log: EventLog


def _pieces(data: Dataset, exposures: pd.DataFrame, n_offers: int) -> Iterator[tuple[int, int, _Snapshots]]:
    """Consecutive row ranges of `exposures` (sorted by time) covering whole days, each with its
    snapshots: one per (customer, exposure day), taken at midnight of the day, so only data before
    the day is seen. The snapshots of many days are computed in one call
    (`build_customer_features_at`), not one feature computation per day."""
    ids = exposures["customer_id"].to_numpy(dtype=object)
    day_ns = exposures["ts"].dt.normalize().to_numpy(dtype="datetime64[ns]")
    day, _ = pd.factorize(day_ns.view(np.int64), sort=True)
    customer, _ = pd.factorize(ids)
    key = day.astype(np.int64) * (int(customer.max()) + 1) + customer
    _, first, snapshot = np.unique(key, return_index=True, return_inverse=True)  # day-major
    snap_ids, snap_days, snap_day = ids[first], day_ns[first], day[first]
    log = customer_event_log(data)
    work = customer_event_counts(data, log, snap_ids, snap_days)
    day_work = np.bincount(snap_day, weights=work, minlength=int(day.max()) + 1)
    day_rows = np.bincount(day, minlength=len(day_work)) * max(n_offers, 1)
    start = 0
    while start < len(day_work):
        stop, events, cells = start, 0.0, 0
        while stop < len(day_work) and (stop == start or (events + day_work[stop] <= PIECE_EVENTS
                                                          and cells + day_rows[stop] <= PIECE_CELLS)):
            events, cells, stop = events + day_work[stop], cells + day_rows[stop], stop + 1
        a, b = np.searchsorted(day, [start, stop])
        s0, s1 = np.searchsorted(snap_day, [start, stop])
        yield int(a), int(b), _Snapshots(snap_ids[s0:s1], snap_days[s0:s1], snapshot[a:b] - s0, log)
        start = stop


@dataclass(frozen=True)
class _PieceJob:
    """What every piece of the propensity set is built from."""

    data: Dataset
    offers: OfferArrays
    exposures: pd.DataFrame
    pieces: list[tuple[int, int, _Snapshots]]
    attributes: tuple[str, ...]
    names: list[str]

    def build(self, i: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """Piece `i` as float32 model inputs, labels and metadata."""
        a, b, snapshots = self.pieces[i]
        frame = _exposure_rows(self.data, self.offers, self.exposures.iloc[a:b], snapshots, self.attributes)
        return (_matrix(frame, self.names), frame["label"].to_numpy(dtype=np.int8),
                frame[["decision_id", "customer_id", "offer_id", "ts", "lifecycle"]].reset_index(drop=True))


#: The job a forked worker builds pieces of: set by the parent just before it forks the pool.
_FORKED_JOB: list[_PieceJob] = []


def _build_forked(i: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    return _FORKED_JOB[0].build(i)


def _built_pieces(job: _PieceJob, workers: int, done: tqdm) -> Iterator[tuple[np.ndarray, np.ndarray, pd.DataFrame]]:
    """Every piece of `job`, in order: in this process, or in `workers` forked processes that share
    the job's tables with it (copy on write; only each piece's result travels back, float32). On
    two cores the set takes about half the time: each piece is single-threaded NumPy and pandas.
    Without fork (Windows, macOS' default) the pieces are built here."""
    workers = min(workers, len(job.pieces))
    if workers <= 1 or "fork" not in mp.get_all_start_methods():
        for i in range(len(job.pieces)):
            yield job.build(i)
            done.update()
        return
    _FORKED_JOB[:] = [job]
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            futures = [pool.submit(_build_forked, i) for i in range(len(job.pieces))]
            for future in futures:
                yield future.result()
                done.update()
    finally:
        _FORKED_JOB.clear()


def _exposure_rows(data: Dataset, offers: OfferArrays, rows: pd.DataFrame, snapshots: _Snapshots,
                   attributes: tuple[str, ...]) -> pd.DataFrame:
    """The feature rows of the exposures `rows` (with labels and metadata), from their snapshots."""
    customers, kept = build_customer_features_at(data, snapshots.customer_ids, snapshots.days, log=snapshots.log)
    where = np.full(len(snapshots.customer_ids), -1, dtype=np.int64)
    where[kept] = np.arange(len(kept))
    snapshot_rows = where[snapshots.of_exposure]
    feats = build_exposure_features(customers, offers, data.contacts, rows, pd.Timestamp(snapshots.days.min()),
                                    attributes=attributes, snapshot_rows=snapshot_rows)
    feats["label"] = rows["label"].to_numpy()
    feats["decision_id"] = rows["decision_id"].to_numpy()
    feats["ts"] = rows["ts"].to_numpy()
    lifecycle = customers["lifecycle"].to_numpy(dtype=object)
    feats["lifecycle"] = np.where(snapshot_rows >= 0, lifecycle[np.maximum(snapshot_rows, 0)] if len(lifecycle) else np.nan,
                                  np.nan)
    return feats


def churn_set(
    data: Dataset,
    as_of: pd.Timestamp,
    horizon_days: int = 90,
    snapshots: int = 4,
    step_days: int = 30,
    progress: bool = True,
) -> TrainingSet:
    """Active customers at several snapshot dates whose horizon ends before `as_of`."""
    dates = churn_snapshots(as_of, horizon_days, snapshots, step_days)
    frame = churn_frame(data, dates, horizon_days, progress)
    return churn_training_set(frame, dates, horizon_days)


def churn_frame(data: Dataset, dates: list[pd.Timestamp], horizon_days: int, progress: bool = False) -> pd.DataFrame:
    """The churn rows (customer features, `label`, `snapshot`) of every active customer at each of
    `dates`, in date then customer order; possibly empty."""
    parts = []
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
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def churn_training_set(frame: pd.DataFrame, dates: list[pd.Timestamp], horizon_days: int) -> TrainingSet:
    """The churn `TrainingSet` of `churn_frame`'s rows; refuses fewer than two snapshots with rows."""
    names = list(FEATURE_SET.customer_features)
    found = frame["snapshot"].nunique() if len(frame) else 0
    if not found:
        raise NboError(
            f"no active customers (a purchase in the year before) at any churn snapshot "
            f"({', '.join(str(d.date()) for d in dates)}): --as-of is too early for a {horizon_days}-day horizon"
        )
    if found < 2:
        raise NboError(
            f"churn needs active customers at two or more snapshots to split by time; found "
            f"{found} among {', '.join(str(d.date()) for d in dates)}: use more history or a shorter --horizon-days"
        )
    meta = frame[["customer_id", "snapshot", "lifecycle"]].rename(columns={"snapshot": "ts"})
    return TrainingSet(_matrix(frame, names), frame["label"].to_numpy(dtype=np.int8), meta, names)


def time_split(ts: pd.Series, validation_share: float = 0.2) -> np.ndarray:
    """Boolean mask of the validation rows: the latest `validation_share` of the rows in time order
    (rows at the cut's moment go to validation), so the validation period is always the latest
    and its size follows the rows, not the calendar: a log whose volume grows over time (most
    real ones; the household panels of benchmarks/bench_real.py, where 20 % of the calendar held
    83-88 % of the rows) keeps most of its rows for training."""
    ts = pd.to_datetime(ts)
    if ts.nunique() < 2:
        raise NboError("all training rows share one timestamp: cannot split by time")
    values = np.sort(ts.to_numpy(dtype="datetime64[ns]"))
    cut = values[min(len(values) - 1, int(np.floor(len(values) * (1 - validation_share))))]
    valid = (ts >= cut).to_numpy()
    if valid.all():  # the cut fell on the earliest moment: validate on the latest one alone
        valid = (ts == ts.max()).to_numpy()
    return valid

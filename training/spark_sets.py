"""The training sets on Spark (`nbo train --engine spark`): `propensity_set` and the churn rows
run by Spark over buckets of customers, as `nbo features --engine spark` runs the customer
features (features/spark.py: the same union of the per-customer tables, the same buckets).

Every row of both sets is one customer's: an exposure's features read that customer's rows seen
from the exposure's day, a churn row that customer's rows at its snapshot. So each bucket runs the
pandas builders on its own customers, and the driver collects the rows and puts them in the pandas
builders' order (exposures by time, decision and offer; churn rows by snapshot and customer): the
same sets, value for value (tests/training/test_spark_sets.py), hence the same models.

Decided for the whole log, not per bucket, in a first, light pass: which decision-time offer
attributes the propensity model uses (those logged for at least one exposure of the set) and, with
`max_rows`, which exposures are the most recent. The fit itself runs on the driver (LightGBM on one
machine): Spark spreads the feature computation, the part that grows with the log.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from features import FEATURE_SET
from features.offer_attributes import attribute_columns
from features.offers import offer_vocabulary
from features.spark import BUCKET, BucketContext, SparkBuckets, bucket_dataset, spark_buckets, worker_error
from nbo.contract import ATTRIBUTE_PREFIX, CONTACTS
from nbo.errors import NboError
from training.datasets import TrainingSet, churn_frame, churn_training_set, logged_attributes, propensity_set
from training.labels import churn_snapshots, propensity_labels

#: training.labels.propensity_labels' order of the exposures.
ORDER = ["ts", "decision_id", "offer_id"]
#: The propensity set's row metadata and its Spark types.
PROPENSITY_META = (("decision_id", "string"), ("customer_id", "string"), ("offer_id", "string"),
                   ("ts", "timestamp"), ("lifecycle", "string"))
CHURN_META = (("customer_id", "string"), ("lifecycle", "string"), ("snapshot", "timestamp"))


def _ddl(width: int, meta: tuple[tuple[str, str], ...]) -> str:
    """Model inputs as Spark floats (float32, exactly), the label, the row metadata."""
    return ", ".join([*(f"f{i} float" for i in range(width)), "label tinyint", *(f"`{n}` {t}" for n, t in meta)])


def _rows(X: np.ndarray, y: np.ndarray, meta: pd.DataFrame, spec: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    out = pd.DataFrame(X.astype(np.float32, copy=False), columns=[f"f{i}" for i in range(X.shape[1])])
    out["label"] = y.astype(np.int8)
    for name, kind in spec:
        out[name] = meta[name].to_numpy(dtype="datetime64[ns]" if kind == "timestamp" else object)
    return out


def _no_rows(width: int, spec: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """A bucket's answer when it has no rows: `_rows`' columns and types, empty."""
    meta = pd.DataFrame({n: pd.Series(dtype="datetime64[ns]" if k == "timestamp" else object) for n, k in spec})
    return _rows(np.zeros((0, width), np.float32), np.zeros(0, np.int8), meta, spec)


def _collect(frame, width: int) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """The Spark frame's rows on the driver (a worker's refusal as the contract's one line)."""
    try:
        rows = frame.toPandas()
    except Exception as exc:  # a worker's DataError reaches the driver as Spark's PythonException
        raise worker_error(exc) from None
    for i in range(width):
        rows[f"f{i}"] = rows[f"f{i}"].astype(np.float32)
    return rows


# ------------------------------------------------------------------------------ propensity
def _exposure_keys(as_of: pd.Timestamp, window_days: int, max_rows: int | None, candidates: tuple[str, ...],
                   context: BucketContext) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Pass 1: each bucket's exposures (its last `max_rows` at most), with one flag per attribute
    saying whether the exposure logged it."""
    def run(group: pd.DataFrame) -> pd.DataFrame:
        exposures = propensity_labels(bucket_dataset(group, context).contacts, as_of, window_days)
        if max_rows is not None:
            exposures = exposures.iloc[-max_rows:]
        out = pd.DataFrame({"ts": exposures["ts"].to_numpy(dtype="datetime64[ns]"),
                            "decision_id": exposures["decision_id"].to_numpy(dtype=object),
                            "offer_id": exposures["offer_id"].to_numpy(dtype=object)})
        for i, name in enumerate(candidates):
            column = f"{ATTRIBUTE_PREFIX}{name}"
            out[f"a{i}"] = exposures[column].notna().to_numpy() if column in exposures else False
        return out

    return run


def _attributes(buckets: SparkBuckets, as_of: pd.Timestamp, window_days: int, max_rows: int | None) -> tuple[str, ...]:
    """The attributes logged for at least one exposure of the set (`logged_attributes` of the whole log)."""
    prefix = f"contacts__{ATTRIBUTE_PREFIX}"
    candidates = tuple(CONTACTS.attribute_names([c[len("contacts__"):] for c in buckets.union.columns
                                                 if c.startswith(prefix)]))
    if not candidates:
        return ()
    ddl = ", ".join(["ts timestamp", "decision_id string", "offer_id string", *(f"a{i} boolean" for i in range(len(candidates)))])
    keys = _collect(buckets.union.groupBy(BUCKET).applyInPandas(
        _exposure_keys(as_of, window_days, max_rows, candidates, buckets.context), ddl), 0)
    keys["ts"] = pd.to_datetime(keys["ts"]).astype("datetime64[ns]")
    keys = keys.sort_values(ORDER, kind="stable")
    if max_rows is not None:
        keys = keys.iloc[-max_rows:]
    frame = pd.DataFrame({f"{ATTRIBUTE_PREFIX}{name}": np.where(keys[f"a{i}"].to_numpy(dtype=bool), 1.0, np.nan)
                          for i, name in enumerate(candidates)})
    return logged_attributes(frame)


def _propensity_rows(as_of: pd.Timestamp, window_days: int, attributes: tuple[str, ...], width: int,
                     context: BucketContext) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Pass 2: each bucket's propensity rows (`propensity_set` on its customers)."""
    def run(group: pd.DataFrame) -> pd.DataFrame:
        data = bucket_dataset(group, context)
        if not len(propensity_labels(data.contacts, as_of, window_days)):
            return _no_rows(width, PROPENSITY_META)
        part = propensity_set(data, as_of, window_days, progress=False, attributes=attributes)
        return _rows(part.X, part.y, part.meta, PROPENSITY_META)

    return run


def spark_propensity_set(directory: Path, as_of: pd.Timestamp, window_days: int = 7, max_rows: int | None = None,
                         *, master: str | None = None, remote: str | None = None,
                         buckets: SparkBuckets | None = None) -> TrainingSet:
    """`propensity_set(load_dataset(directory), as_of, window_days, max_rows)`, its rows computed
    by Spark: equal to it, row for row and value for value."""
    buckets = buckets or spark_buckets(Path(directory), master, remote, "nbo-train")
    attributes = _attributes(buckets, as_of, window_days, max_rows)
    names = [*FEATURE_SET.candidate_features, *attribute_columns(attributes)]
    rows = _collect(buckets.union.groupBy(BUCKET).applyInPandas(
        _propensity_rows(as_of, window_days, attributes, len(names), buckets.context),
        _ddl(len(names), PROPENSITY_META)), len(names))
    if rows.empty:
        raise NboError(
            "no exposures with a closed acceptance window before --as-of: the contacts table is empty "
            "or too recent to train a propensity model"
        )
    rows["ts"] = pd.to_datetime(rows["ts"]).astype("datetime64[ns]")
    rows = rows.sort_values(ORDER, kind="stable").reset_index(drop=True)
    if max_rows is not None and len(rows) > max_rows:
        rows = rows.iloc[-max_rows:].reset_index(drop=True)
    meta = pd.DataFrame({n: rows[n].to_numpy(dtype="datetime64[ns]" if k == "timestamp" else object)
                         for n, k in PROPENSITY_META})
    X = rows[[f"f{i}" for i in range(len(names))]].to_numpy(dtype=np.float32)
    return TrainingSet(X, rows["label"].to_numpy(dtype=np.int8), meta, names, attributes,
                       offer_vocabulary(buckets.context.offers["offer_id"]))


# ------------------------------------------------------------------------------ churn
def _churn_rows(dates: list[pd.Timestamp], horizon_days: int, names: list[str],
                context: BucketContext) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def run(group: pd.DataFrame) -> pd.DataFrame:
        frame = churn_frame(bucket_dataset(group, context), dates, horizon_days)
        if not len(frame):
            return _no_rows(len(names), CHURN_META)
        return _rows(frame[names].to_numpy(dtype=np.float32), frame["label"].to_numpy(), frame, CHURN_META)

    return run


def spark_churn_set(directory: Path, as_of: pd.Timestamp, horizon_days: int = 90, snapshots: int = 4,
                    step_days: int = 30, *, master: str | None = None, remote: str | None = None,
                    buckets: SparkBuckets | None = None) -> TrainingSet:
    """`churn_set(load_dataset(directory), ...)`, its rows computed by Spark: equal to it."""
    buckets = buckets or spark_buckets(Path(directory), master, remote, "nbo-train")
    dates = churn_snapshots(as_of, horizon_days, snapshots, step_days)
    names = list(FEATURE_SET.customer_features)
    rows = _collect(buckets.union.groupBy(BUCKET).applyInPandas(
        _churn_rows(dates, horizon_days, names, buckets.context), _ddl(len(names), CHURN_META)), len(names))
    if len(rows):
        rows["snapshot"] = pd.to_datetime(rows["snapshot"]).astype("datetime64[ns]")
        rows = rows.sort_values(["snapshot", "customer_id"], kind="stable").reset_index(drop=True)
    frame = pd.DataFrame({name: rows[f"f{i}"].to_numpy(dtype=np.float32) for i, name in enumerate(names)})
    for name in ("customer_id", "lifecycle", "label", "snapshot"):
        frame[name] = rows[name].to_numpy() if len(rows) else pd.Series(dtype=object)
    return churn_training_set(frame if len(rows) else pd.DataFrame(), dates, horizon_days)

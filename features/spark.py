"""Customer features on Spark (`nbo features --engine spark`): the same `build_customer_features`,
run by Spark over groups of customers, for data that does not fit one machine.

Every customer's features read only that customer's rows (customers, events, contacts, consents;
the offers table only names offers, and is small). So Spark hashes each customer id to one of
`buckets` groups, brings each group's rows of the four tables together, and a Python worker runs
the pandas feature functions on that group, exactly as `nbo features` does on the whole data:
validation with the contract's converters, then `build_customer_features`. Nothing of a feature
is written twice; `tests/features/test_spark_features.py` holds the two engines equal.

How the four tables travel together: one frame of their union, each table's columns prefixed
with its name (`events__ts`), one tag column naming the table. Spark reads the files itself
(Parquet or CSV, in the contract's layout), so the driver never holds the events.

What differs from the pandas engine, by design:
- the rows of the output come in bucket order, not in the order of the customers table;
- duplicate keys are found within a bucket only, and a bucket's rows are checked against the
  offers table and its own customers (an event for an unknown customer is still refused: its
  customer would hash to the same bucket).
PySpark is imported only when this engine runs (`nbo.spark`).
"""

from __future__ import annotations

import itertools
import math
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.config import LifecycleRules, check_as_of
from features.customer import CUSTOMER_GROUPS, build_customer_features, customer_columns
from features.definitions import text_columns
from features.store import write_materialised_chunks
from nbo.contract import TABLES
from nbo.data import Dataset, check_references, empty_table, find_table_file, has_table_file, load_table
from nbo.errors import NboError
from nbo.validation import validate_frame
from nbo.vocab import CATEGORIES

#: The tables a customer's features read, besides the offers table.
CUSTOMER_TABLES = ("customers", "events", "contacts", "consents")
TAG = "nbo__table"
BUCKET = "nbo__bucket"
#: Customers per bucket: a bucket is one pandas call in one Python worker.
CUSTOMERS_PER_BUCKET = 20_000


def output_ddl(categories: tuple[str, ...] = CATEGORIES) -> str:
    """The Spark schema of the features frame (`customer_id`, numeric columns, text labels)."""
    numeric = ", ".join(f"`{name}` double" for name in customer_columns(categories))
    text = ", ".join(f"`{name}` string" for name in text_columns(CUSTOMER_GROUPS))
    return f"customer_id string, {numeric}, {text}"


def table_rows(group: pd.DataFrame, table: str, nanos: tuple[str, ...] = ()) -> pd.DataFrame:
    """The raw rows of `table` in a bucket of the union frame, with the table's own column names;
    `nanos`: its timestamp columns sent as integer nanoseconds."""
    prefix = f"{table}__"
    columns = [c for c in group.columns if c.startswith(prefix)]
    rows = group.loc[group[TAG] == table, columns].reset_index(drop=True)
    rows.columns = [c[len(prefix):] for c in columns]
    for name in nanos:
        # Parquet timestamps in nanoseconds reach Spark as integers (`nanosAsLong`), sent as text
        # so that no float64 of the union rounds them: restore them exactly.
        if name in rows.columns:
            rows[name] = pd.to_datetime(rows[name].astype("string").astype("Int64"), unit="ns")
    return rows


@dataclass(frozen=True)
class BucketContext:
    """What every bucket's Python worker needs besides its rows (pickled with the function): the
    offers table (read by the driver), the tables the directory has no file for, and per table
    the timestamp columns Spark read as integer nanoseconds."""

    offers: pd.DataFrame
    absent: tuple[str, ...]
    nanos: dict[str, tuple[str, ...]]


def bucket_dataset(group: pd.DataFrame, context: BucketContext) -> Dataset:
    """One bucket's rows of the union frame as a validated `Dataset` (the contract's converters and
    cross-table checks, as `nbo.data.load_dataset` applies them to a whole directory)."""
    tables = {}
    for table in CUSTOMER_TABLES:
        raw = table_rows(group, table, context.nanos.get(table, ()))
        tables[table] = validate_frame(TABLES[table], raw) if len(raw) else empty_table(table)
    data = Dataset(offers=context.offers, absent_tables=context.absent, **tables)
    check_references(data)
    return data


def bucket_features(group: pd.DataFrame, context: BucketContext, as_of: pd.Timestamp, rules: LifecycleRules,
                    categories: tuple[str, ...]) -> pd.DataFrame:
    """The features of one bucket's customers, from its rows of the union frame."""
    frame = build_customer_features(bucket_dataset(group, context), as_of, rules=rules, categories=categories)
    out = frame.reset_index()
    out["customer_id"] = out["customer_id"].astype(object)
    for name in text_columns(CUSTOMER_GROUPS):
        out[name] = out[name].astype(object)
    return out


def bucket_function(context: BucketContext, as_of: pd.Timestamp, rules: LifecycleRules,
                    categories: tuple[str, ...]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The `applyInPandas` function (pickled to the workers with its arguments)."""
    def run(group: pd.DataFrame) -> pd.DataFrame:
        return bucket_features(group, context, as_of, rules, categories)

    return run


def read_table(spark, directory: Path, table: str):  # type: ignore[no-untyped-def]
    """One contract table as a Spark frame: Parquet as typed, CSV as text (like `nbo.data`)."""
    path = str(find_table_file(directory, table).resolve())
    if path.endswith(".parquet"):
        return spark.read.parquet(path)
    # pandas' CSV dialect: a doubled quote inside a quoted field, empty fields are missing.
    return (spark.read.option("header", True).option("inferSchema", False).option("escape", '"')
            .option("multiLine", True).option("mode", "FAILFAST").csv(path))


def union_frame(spark, directory: Path, tables: tuple[str, ...], buckets: int):  # type: ignore[no-untyped-def]
    """(the union of `tables`, each column prefixed with its table's name, tagged and bucketed;
    per table, its timestamp columns that Spark read as integer nanoseconds, sent as text)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegralType

    frames = []
    nanos: dict[str, tuple[str, ...]] = {}
    for table in tables:
        frame = read_table(spark, directory, table)
        if "customer_id" not in frame.columns:
            load_table(directory, table)  # the contract's own message for a missing column
        stamps = {c.name for c in TABLES[table].columns if c.kind == "ts"}
        nanos[table] = tuple(f.name for f in frame.schema.fields
                             if f.name in stamps and isinstance(f.dataType, IntegralType))
        frames.append(frame.select(
            *[(F.col(f"`{c}`").cast("string") if c in nanos[table] else F.col(f"`{c}`")).alias(f"{table}__{c}")
              for c in frame.columns],
            F.lit(table).alias(TAG),
            F.pmod(F.xxhash64(F.col("customer_id").cast("string")), F.lit(buckets)).alias(BUCKET),
        ))
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame, allowMissingColumns=True)
    return union, nanos


def stitch(parts: Path, out: Path, as_of: pd.Timestamp, categories: tuple[str, ...]) -> int:
    """Spark's part files into one materialised features file (`write_materialised_chunks`),
    streamed one row group at a time; written atomically. Returns the number of customers."""
    files = sorted(p for p in parts.glob("*.parquet") if p.stat().st_size)
    frames = (materialised_chunk(batch.to_pandas(), categories)
              for path in files for batch in pq.ParquetFile(path).iter_batches(batch_size=200_000))
    first = next(frames, None)
    if first is None:
        empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in customer_columns(categories)})
        first = materialised_chunk(empty.assign(**{c: pd.Series(dtype=object) for c in
                                                   ("customer_id", *text_columns(CUSTOMER_GROUPS))}), categories)
    return write_materialised_chunks(itertools.chain([first], frames), out, as_of)


def materialised_chunk(frame: pd.DataFrame, categories: tuple[str, ...]) -> pd.DataFrame:
    """A chunk of Spark's output as `build_customer_features` returns it (index, dtypes, order)."""
    index = pd.Index(frame["customer_id"].astype("str").to_numpy(), name="customer_id", dtype="str")
    columns = {name: frame[name].to_numpy(dtype=np.float64) for name in customer_columns(categories)}
    columns.update({name: frame[name].astype("str").to_numpy() for name in text_columns(CUSTOMER_GROUPS)})
    return pd.DataFrame(columns, index=index)


def worker_error(exc: Exception) -> Exception:
    """The contract's one-line message when a Python worker refused the data; else `exc`."""
    found = re.findall(r"nbo\.errors\.(?:DataError|NboError): (.+)", str(exc))
    return NboError(found[-1].strip()) if found else exc


@dataclass(frozen=True)
class SparkBuckets:
    """A data directory on Spark: the session, the bucketed union of its per-customer tables and
    the `BucketContext` its workers need."""

    spark: Any
    union: Any
    context: BucketContext


def spark_buckets(directory: Path, master: str | None, remote: str | None, app: str, buckets: int | None = None,
                  progress: Callable[[str], None] = lambda line: None) -> SparkBuckets:
    """Start Spark (`nbo.spark`) and bucket the per-customer tables of `directory` (about
    `CUSTOMERS_PER_BUCKET` customers per bucket, at least 4, unless `buckets` is given)."""
    from nbo.spark import spark_session

    present = tuple(t for t in CUSTOMER_TABLES if TABLES[t].required or has_table_file(directory, t))
    absent = tuple(t for t in CUSTOMER_TABLES if t not in present)
    offers = load_table(directory, "offers") if has_table_file(directory, "offers") else empty_table("offers")
    if not has_table_file(directory, "offers"):
        absent = (*absent, "offers")
    spark = spark_session(app, master, remote, config={
        # Parquet written by pandas/pyarrow holds nanosecond timestamps: read them as integers.
        "spark.sql.legacy.parquet.nanosAsLong": "true",
        "spark.sql.shuffle.partitions": "8",
    })
    if buckets is None:
        customers = read_table(spark, directory, "customers").count()
        buckets = max(4, math.ceil(customers / CUSTOMERS_PER_BUCKET))
        progress(f"spark: {customers:,} customers in {buckets:,} buckets")
    union, nanos = union_frame(spark, directory, present, buckets)
    return SparkBuckets(spark, union, BucketContext(offers, absent, nanos))


def spark_customer_features(
    directory: Path,
    as_of: pd.Timestamp,
    out: Path,
    *,
    master: str | None = None,
    remote: str | None = None,
    buckets: int | None = None,
    rules: LifecycleRules | None = None,
    categories: tuple[str, ...] = CATEGORIES,
    progress: Callable[[str], None] = lambda line: None,
) -> int:
    """Materialise the customer features of the data directory `directory` as of `as_of` to
    `out` (one Parquet file, as `nbo features` writes it) with Spark. Returns the customer count."""
    as_of = check_as_of(as_of)
    rules = rules or LifecycleRules()
    buckets_ = spark_buckets(Path(directory), master, remote, "nbo-features", buckets, progress)
    work = Path(tempfile.mkdtemp(prefix=".nbo-features-", dir=out.parent))
    try:
        parts = work / "parts"
        function = bucket_function(buckets_.context, as_of, rules, categories)
        try:
            (buckets_.union.groupBy(BUCKET).applyInPandas(function, output_ddl(categories))
             .write.mode("error").parquet(str(parts.resolve())))
        except Exception as exc:  # a worker's DataError reaches the driver as Spark's PythonException
            raise worker_error(exc) from None
        progress("spark: features computed; writing one file")
        return stitch(parts, out, as_of, categories)
    finally:
        shutil.rmtree(work, ignore_errors=True)


"""The Spark engine of batch scoring: `plan_chunk` inside `mapInPandas` over partitions of the
features file, written as Parquet plan files the driver then reserves in chunks. Nothing of the
decision is re-written for Spark."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from features import materialised_rows
from nbo.spark import spark_session
from serving.batch.customers import compile_segment
from serving.batch.job import BatchJob
from serving.batch.plan import models_blob, plan_chunk
from serving.batch.workers import cached_engine, freeze_startup_objects, keep_freed_memory

SPARK_PLAN_DDL = (
    "customer_id string, offer_id string, rank int, p_accept double, expected_value double, propensity double, "
    "reasons string, decision_id string, category string, model_versions string, no_offer string, reason_texts string"
)


def spark_frame(pdf: pd.DataFrame) -> pd.DataFrame:
    """A Spark batch of materialised rows as `plan_chunk` takes them (indexed by str customer_id)."""
    frame = pdf.set_index("customer_id")
    frame.index = frame.index.astype("str")
    frame.index.name = "customer_id"
    for col in ("lifecycle", "top_category", "next_category"):
        if col in frame.columns:
            frame[col] = frame[col].astype("str")
    return frame


def spark_planner(settings_json: str, job_json: str, customers: frozenset[str] | None, models: bytes):  # type: ignore[no-untyped-def]
    """The `mapInPandas` function: one engine per Python worker, `plan_chunk` per batch."""
    def plan(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        job = BatchJob.model_validate_json(job_json)
        keep_freed_memory()
        engine = cached_engine(settings_json, models)
        freeze_startup_objects()
        segment = compile_segment(job.segment)
        for pdf in batches:
            yield plan_chunk(engine, spark_frame(pdf), job, segment, customers)

    return plan


def run_spark(features: Path, plan_dir: Path, settings_json: str, job: BatchJob, customers: frozenset[str] | None,
              master: str | None) -> None:
    """Plan every customer of `features` with Spark into `plan_dir` (Parquet, `_SUCCESS` when done)."""
    spark = spark_session(f"nbo-score-{job.campaign}", master, config={
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(job.chunk_rows),
        "spark.sql.shuffle.partitions": "8",
    })
    frame = spark.read.parquet(str(features.resolve()))
    # One task per core, more only for very large files (a task streams its rows in chunks).
    partitions = max(spark.sparkContext.defaultParallelism, math.ceil(materialised_rows(features) / 2_000_000))
    planner = spark_planner(settings_json, job.model_dump_json(), customers, models_blob(cached_engine(settings_json)))
    shutil.rmtree(plan_dir, ignore_errors=True)
    (frame.repartition(partitions).mapInPandas(planner, SPARK_PLAN_DDL)
     .write.mode("overwrite").parquet(str(plan_dir.resolve())))


def whole_decisions(files: Sequence[Path], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Plan rows from Parquet files in chunks of about `chunk_rows` that never split a decision."""
    carry: pd.DataFrame | None = None
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            frame = batch.to_pandas()
            if carry is not None:
                frame = pd.concat([carry, frame], ignore_index=True)
                carry = None
            last = frame["decision_id"].iat[-1] if len(frame) else None
            tail = frame["decision_id"].to_numpy() == last
            carry = frame[tail].reset_index(drop=True)
            head = frame[~tail].reset_index(drop=True)
            if len(head):
                yield head
    if carry is not None and len(carry):
        yield carry

"""Batch scoring for campaign tools: the real-time decision pipeline over a whole customer base, in chunks.

One function decides a chunk of customers, `plan_chunk` (`plan.py`): the decision pipeline the
real-time service runs (`serving.pipeline.decide_block`), a chunk at a time. Both engines call it:
`pandas` on chunks of the features file in this process or a pool of worker processes
(`workers.py`), `spark` inside `mapInPandas` over partitions of the same file (`spark.py`).
The driver reserves each chunk's plan exactly once (`reserve.py`) and keeps a resumable work
directory (`run.py`). `job.py` says what a run decides; `customers.py` which customers.
"""

from serving.batch.customers import SEGMENT_EXCLUDED, compile_segment, read_customer_list
from serving.batch.job import (
    MAX_K,
    BatchJob,
    check_channel,
    customers_digest,
    decision_id_for,
    features_fingerprint,
    read_offer_attributes,
)
from serving.batch.plan import OUTPUT_COLUMNS, PLAN_COLUMNS, PLAN_SCHEMA, REASON_SEPARATOR, models_blob, open_engine, plan_chunk
from serving.batch.reserve import merge_summaries, reserve_plan, reserve_plans, summarise
from serving.batch.run import BatchRun
from serving.batch.spark import SPARK_PLAN_DDL
from serving.batch.workers import keep_freed_memory

__all__ = [
    "MAX_K",
    "OUTPUT_COLUMNS",
    "PLAN_COLUMNS",
    "PLAN_SCHEMA",
    "REASON_SEPARATOR",
    "SEGMENT_EXCLUDED",
    "SPARK_PLAN_DDL",
    "BatchJob",
    "BatchRun",
    "check_channel",
    "compile_segment",
    "customers_digest",
    "decision_id_for",
    "features_fingerprint",
    "keep_freed_memory",
    "merge_summaries",
    "models_blob",
    "open_engine",
    "plan_chunk",
    "read_customer_list",
    "read_offer_attributes",
    "reserve_plan",
    "reserve_plans",
    "summarise",
]

"""Batch processes: one engine per process (driver, pool worker, Spark Python worker), the pool's
worker functions, and the memory and thread settings that keep chunks cheap."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from features import MaterialisedRows
from nbo.allocator import freeze_startup_objects, keep_freed_memory
from serving.batch.customers import compile_segment
from serving.batch.job import BatchJob
from serving.batch.plan import open_engine, plan_chunk, write_plan
from serving.engine import DecisionEngine
from serving.settings import EngineSettings

_ENGINES: dict[str, DecisionEngine] = {}

def cached_engine(settings_json: str, models: bytes | None = None) -> DecisionEngine:
    """One engine per process (driver, pool worker or Spark Python worker), built on first use."""
    engine = _ENGINES.get(settings_json)
    if engine is None:
        engine = _ENGINES[settings_json] = open_engine(EngineSettings.model_validate_json(settings_json), models)
    return engine


_WORKER: dict[str, object] = {}


def pool_init(settings_json: str, models: bytes, customers: frozenset[str] | None) -> None:
    """A pool worker's start: its engine (with the driver's models) and the customer list."""
    keep_freed_memory()
    _WORKER.update(engine=cached_engine(settings_json, models), customers=customers)
    freeze_startup_objects()


def pool_plan(frame: pd.DataFrame, job_json: str) -> pd.DataFrame:
    """`plan_chunk` in a pool worker."""
    job = BatchJob.model_validate_json(job_json)
    customers = _WORKER["customers"]
    return plan_chunk(_WORKER["engine"], frame, job, compile_segment(job.segment), customers)  # type: ignore[arg-type]


def pool_plan_rows(path: str, start: int, stop: int, job_json: str, out: str) -> pd.DataFrame:
    """`pool_plan` of rows `[start, stop)` of the features file, read by the worker itself, the
    plan written to `out` before it is returned (the driver, which reserves every chunk, neither
    decodes and pickles each chunk's features nor writes its plan)."""
    reader = _WORKER.get("reader")
    if not isinstance(reader, MaterialisedRows) or reader.path != Path(path):
        reader = _WORKER["reader"] = MaterialisedRows(path)
    plan = pool_plan(reader.read(start, stop), job_json)
    write_plan(Path(out), plan)
    return plan


@contextlib.contextmanager
def one_thread_per_worker() -> Iterator[None]:
    """Worker processes started meanwhile run LightGBM on one thread (OMP_NUM_THREADS=1, unless set).

    With one process per core, LightGBM's default (a thread per core in every process) only adds
    contention; OpenMP reads the variable when the worker loads it, so the driver is unaffected.
    """
    before = os.environ.get("OMP_NUM_THREADS")
    if before is None:
        os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)

"""Batch scoring for campaign tools: the real-time policy over a whole customer base, in chunks.

One function decides a chunk of customers, `plan_chunk`: the materialised rows of the chunk go
through `DecisionEngine.with_features(...).batch_decide(reserve=False)`, i.e. the very code the
real-time service runs (`decide` gives the same offers and scores at the same `now`). Both engines
call it: `pandas` on chunks of the features file in this process (or a pool of `workers`
processes), `spark` inside `mapInPandas` over partitions of the same file. Nothing is re-written
for Spark.

Reservation is exactly-once and happens on the driver only, in order, after the chunk's plan is on
disk: every (campaign, customer, channel) has a deterministic decision id, the store refuses a
decision id it has seen (`ValueError`), and a refused id is looked up in the store instead of being
reserved again. A run killed at any point and re-run with the same arguments therefore finishes
without duplicates. Layout of the work directory next to the output (`<out>.work/`):

    manifest.json          the job (its arguments and input fingerprints) and its status
    plan-00000.parquet     decisions of chunk 0 before reservation (pandas engine)
    spark-plan/            the same, written by Spark (spark engine)
    part-00000.parquet     chunk 0 after reservation (what the output will hold)
    part-00000.json        chunk 0 is done (written last)

The output appears only once complete (written under a temporary name, then renamed). A real run
keeps `manifest.json` (status `complete`, with the summary) as the campaign's ledger: re-running
it reserves nothing. A dry run removes its work directory at the end.

The decision time `now` (caps, cooldowns, validity, quiet hours, exploration seed) is the
campaign's `as_of`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import pickle
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import multiprocessing as mp
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from features import customer_feature_names, iter_materialised, materialised_meta, materialised_rows
from nbo.errors import NboError
from nbo.vocab import CONTACT_CHANNELS
from serving.contact_store import OfferRef
from serving.engine import DecisionEngine, EngineSettings, latest_features_file
from serving.rules import Rule, compile_rule

log = logging.getLogger(__name__)

#: The output: one row per (customer, offer) chosen.
OUTPUT_COLUMNS: tuple[str, ...] = (
    "customer_id", "offer_id", "rank", "p_accept", "expected_value", "propensity", "reasons", "decision_id",
)
#: A plan also has one row per customer without an offer (`offer_id` null, `no_offer` = why).
PLAN_SCHEMA = pa.schema([
    ("customer_id", pa.string()), ("offer_id", pa.string()), ("rank", pa.int32()), ("p_accept", pa.float64()),
    ("expected_value", pa.float64()), ("propensity", pa.float64()), ("reasons", pa.string()),
    ("decision_id", pa.string()), ("category", pa.string()), ("model_versions", pa.string()), ("no_offer", pa.string()),
])
PLAN_COLUMNS: tuple[str, ...] = tuple(PLAN_SCHEMA.names)
SPARK_PLAN_DDL = (
    "customer_id string, offer_id string, rank int, p_accept double, expected_value double, propensity double, "
    "reasons string, decision_id string, category string, model_versions string, no_offer string"
)
#: `no_offer` of a customer the segment rule left out.
SEGMENT_EXCLUDED = "segment"
MAX_K = 20
REASON_SEPARATOR = "; "


class BatchJob(BaseModel):
    """What a run decides; two runs with equal jobs are the same run (resume / ledger)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    campaign: str = Field(min_length=1, max_length=128)
    channel: str
    as_of: datetime  # the decision time `now` (naive UTC)
    k: int = Field(1, ge=1, le=MAX_K)
    dry_run: bool = False
    engine: Literal["pandas", "spark"] = "pandas"
    chunk_rows: int = Field(2_000, ge=1)
    segment: str | None = None
    customers_digest: str | None = None  # sha256 of the sorted --customers ids
    features: str  # fingerprint of the features file (path, size, mtime, as_of)


def decision_id_for(campaign: str, customer_id: str, channel: str) -> str:
    """Deterministic decision id of a campaign's contact: a re-run finds it in the store."""
    text = f"{campaign}\x1f{customer_id}\x1f{channel}".encode("utf-8", "surrogatepass")
    return "b" + hashlib.blake2b(text, digest_size=16).hexdigest()


def compile_segment(text: str | None) -> Rule | None:
    """The segment rule (eligibility rule language over customer features); None = everyone."""
    if text is None or not text.strip():
        return None
    return compile_rule(text, customer_feature_names())


def read_customer_list(path: Path) -> frozenset[str]:
    """Ids from a Parquet/CSV file with a `customer_id` column, or plain text with one id a line."""
    path = Path(path)
    if not path.is_file():
        raise NboError(f"--customers {path} does not exist or is not a file")
    try:
        if path.suffix.lower() == ".parquet":
            names = pq.read_schema(path).names
            if "customer_id" not in names:
                raise NboError(f"--customers {path} has no customer_id column")
            ids = pq.read_table(path, columns=["customer_id"]).column(0).to_pylist()
        else:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            header = lines[0].split(",") if lines else []
            if "customer_id" in header:
                col = header.index("customer_id")
                ids = [line.split(",")[col].strip().strip('"') for line in lines[1:] if line]
            else:
                ids = [line for line in lines if line]
    except (OSError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise NboError(f"--customers {path} is not readable: {str(exc).splitlines()[0][:200]}") from None
    found = frozenset(str(i) for i in ids if i is not None and str(i) != "")
    if not found:
        raise NboError(f"--customers {path} lists no customer ids")
    return found


def customers_digest(ids: Iterable[str] | None) -> str | None:
    if ids is None:
        return None
    h = hashlib.sha256()
    for cid in sorted(ids):
        h.update(cid.encode("utf-8", "surrogatepass") + b"\n")
    return h.hexdigest()


def features_fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{materialised_meta(path)['as_of']}"


# ----------------------------------------------------------------------------- the chunk function
def open_engine(settings: EngineSettings, models: bytes | None = None) -> DecisionEngine:
    """The engine a batch run needs: models required, only a few feature rows held.

    `models`: the driver's (propensity, churn) pair, pickled (`models_blob`); workers take it
    instead of loading the champions from MLflow (~7 s each, and they need no tracking access).
    """
    path = latest_features_file(settings.features_path)
    head = next(iter_materialised(path, 64), None)
    if head is None:
        raise NboError(f"{path} holds no customers")
    pair = pickle.loads(models) if models is not None else None  # noqa: S301 - our own driver's bytes
    engine = DecisionEngine.from_settings(settings, features=head, models=pair)
    if engine.models is None:
        engine.close()
        raise NboError(f"models unavailable, batch scoring refuses the popularity fallback: {engine.models_error}")
    return engine


def _no_offer_reason(suppressed: Sequence[object]) -> str:
    if not suppressed:
        return "no_candidate"
    return Counter(s.reason for s in suppressed).most_common(1)[0][0]  # type: ignore[attr-defined]


def plan_chunk(
    engine: DecisionEngine,
    frame: pd.DataFrame,
    job: BatchJob,
    segment: Rule | None = None,
    customers: frozenset[str] | None = None,
) -> pd.DataFrame:
    """Decide a chunk of materialised rows (indexed by customer_id) without reserving anything.

    Rows of the plan: one per offer chosen, one per customer without an offer (`no_offer` is the
    most frequent suppression reason of its candidates, or `segment` when the segment rule left the
    customer out). Customers not in `customers` are skipped. The same function runs in-process,
    in a worker pool and inside Spark's `mapInPandas`.
    """
    if customers is not None:
        frame = frame[np.fromiter((c in customers for c in frame.index), dtype=bool, count=len(frame))]
    cols: dict[str, list[object]] = {c: [] for c in PLAN_COLUMNS}

    def add(cid: str, did: str, offer: object | None, category: str | None, versions: str, no_offer: str | None) -> None:
        cols["customer_id"].append(cid)
        cols["decision_id"].append(did)
        cols["model_versions"].append(versions)
        cols["no_offer"].append(no_offer)
        cols["category"].append(category)
        if offer is None:
            for c in ("offer_id", "reasons"):
                cols[c].append(None)
            cols["rank"].append(0)
            for c in ("p_accept", "expected_value", "propensity"):
                cols[c].append(math.nan)
        else:
            cols["offer_id"].append(offer.offer_id)  # type: ignore[attr-defined]
            cols["rank"].append(offer.rank)  # type: ignore[attr-defined]
            cols["p_accept"].append(offer.p_accept)  # type: ignore[attr-defined]
            cols["expected_value"].append(offer.expected_value)  # type: ignore[attr-defined]
            cols["propensity"].append(offer.propensity)  # type: ignore[attr-defined]
            cols["reasons"].append(REASON_SEPARATOR.join(offer.reasons))  # type: ignore[attr-defined]

    if segment is not None and len(frame):
        keep = segment.evaluate_frame(frame)
        for cid in frame.index[~keep].tolist():
            add(cid, decision_id_for(job.campaign, cid, job.channel), None, None, "{}", SEGMENT_EXCLUDED)
        frame = frame[keep]
    if len(frame):
        view = engine.with_features(frame)
        categories = dict(zip(engine.offers["offer_id"].astype(str), engine.offers["category"].astype(str), strict=True))
        decisions = view.batch_decide(frame.index.tolist(), job.channel, job.as_of, k=job.k, reserve=False)
        for d in decisions:
            did = decision_id_for(job.campaign, d.customer_id, job.channel)
            versions = json.dumps(d.model_versions, sort_keys=True)
            if not d.offers:
                add(d.customer_id, did, None, None, versions, _no_offer_reason(d.suppressed))
            for o in d.offers:
                add(d.customer_id, did, o, categories[o.offer_id], versions, None)
    out = pd.DataFrame(cols, columns=list(PLAN_COLUMNS))
    out["rank"] = out["rank"].astype(np.int32)
    return out


# ----------------------------------------------------------------------------- reservation
def reserve_plan(engine: DecisionEngine, plan: pd.DataFrame, job: BatchJob) -> tuple[pd.DataFrame, dict[str, int]]:
    """Reserve the plan's contacts in order; returns the plan as reserved and counters.

    A decision id the store already holds (a re-run) is not reserved again: its offers are what
    the store recorded for it.
    """
    store, policy = engine.store, engine.policy
    stats = {"already_reserved": 0, "refused_at_reservation": 0}
    if job.dry_run:
        return plan, stats
    keep = np.ones(len(plan), dtype=bool)
    ranks = plan["rank"].to_numpy().copy()
    no_offer = plan["no_offer"].to_numpy(dtype=object).copy()
    offers = plan["offer_id"].to_numpy(dtype=object)
    has_offer = plan["offer_id"].notna().to_numpy()
    dids = plan["decision_id"].to_numpy(dtype=object)
    for did, group in itertools.groupby(range(len(plan)), key=lambda i: dids[i]):
        rows = [i for i in group if has_offer[i]]
        if not rows:
            continue
        first = rows[0]
        cid = str(plan["customer_id"].iat[first])
        refs = [OfferRef(str(offers[i]), str(plan["category"].iat[i])) for i in rows]
        props = {str(offers[i]): float(plan["propensity"].iat[i]) for i in rows}
        refused: list[tuple[str, str]] = []
        try:
            result = store.check_and_reserve(cid, job.channel, refs, job.as_of, policy, did, props,
                                             json.loads(plan["model_versions"].iat[first]))
            kept = {r.offer_id for r in result.reserved}
            refused = list(result.refused)
        except ValueError as exc:
            if "already recorded" not in str(exc):
                raise
            stats["already_reserved"] += 1
            kept = {c["offer_id"] for c in store.export(cid)["contacts"] if c["decision_id"] == did}
        lost = [i for i in rows if offers[i] not in kept]
        if not lost:
            continue
        stats["refused_at_reservation"] += len(lost)
        rank = 0
        for i in rows:
            if offers[i] in kept:
                rank += 1
                ranks[i] = rank
            else:
                keep[i] = False
        if not kept:  # the customer ends without an offer: one no-offer row, with the store's reason
            keep[first] = True
            ranks[first] = 0
            no_offer[first] = refused[0][1] if refused else "refused"
    out = plan.assign(rank=ranks.astype(np.int32), no_offer=no_offer)
    gone = out["no_offer"].notna()
    out.loc[gone, ["offer_id", "reasons", "category"]] = None
    out.loc[gone, ["p_accept", "expected_value", "propensity"]] = math.nan
    return out[keep].reset_index(drop=True), stats


def summarise(plan: pd.DataFrame) -> dict[str, object]:
    """Counters of one chunk (added up over chunks by `merge_summaries`)."""
    excluded = plan["no_offer"] == SEGMENT_EXCLUDED
    scored = plan[~excluded]
    offered = scored[scored["offer_id"].notna()]
    silent = scored[scored["offer_id"].isna()]
    return {
        "customers_scored": int(scored["customer_id"].nunique()),
        "customers_offered": int(offered["customer_id"].nunique()),
        "offers": int(len(offered)),
        "customers_suppressed": int(silent["customer_id"].nunique()),
        "suppressed_by_reason": {str(k): int(v) for k, v in silent["no_offer"].value_counts().items()},
        "segment_excluded": int(excluded.sum()),
        "expected_value": float(offered["expected_value"].sum()),
    }


def merge_summaries(parts: Iterable[dict[str, object]]) -> dict[str, object]:
    total: dict[str, object] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict):
                bucket = total.setdefault(key, {})
                for k, v in value.items():
                    bucket[k] = bucket.get(k, 0) + v  # type: ignore[union-attr]
            else:
                total[key] = total.get(key, 0) + value  # type: ignore[operator]
    if "suppressed_by_reason" in total:
        total["suppressed_by_reason"] = dict(sorted(total["suppressed_by_reason"].items()))  # type: ignore[union-attr]
    return total


# ----------------------------------------------------------------------------- worker processes
_ENGINES: dict[str, DecisionEngine] = {}


def _cached_engine(settings_json: str, models: bytes | None = None) -> DecisionEngine:
    """One engine per process (driver, pool worker or Spark Python worker), built on first use."""
    engine = _ENGINES.get(settings_json)
    if engine is None:
        engine = _ENGINES[settings_json] = open_engine(EngineSettings.model_validate_json(settings_json), models)
    return engine


def models_blob(engine: DecisionEngine) -> bytes:
    """The engine's (propensity, churn) pair, pickled for workers (a few hundred KB)."""
    assert engine.models is not None
    return pickle.dumps((engine.models.propensity, engine.models.churn))


_WORKER: dict[str, object] = {}


def _pool_init(settings_json: str, models: bytes, customers: frozenset[str] | None) -> None:
    _WORKER.update(engine=_cached_engine(settings_json, models), customers=customers)


def _pool_plan(frame: pd.DataFrame, job_json: str) -> pd.DataFrame:
    job = BatchJob.model_validate_json(job_json)
    customers = _WORKER["customers"]
    return plan_chunk(_WORKER["engine"], frame, job, compile_segment(job.segment), customers)  # type: ignore[arg-type]


def _spark_frame(pdf: pd.DataFrame) -> pd.DataFrame:
    frame = pdf.set_index("customer_id")
    frame.index = frame.index.astype("str")
    frame.index.name = "customer_id"
    for col in ("lifecycle", "top_category", "next_category"):
        if col in frame.columns:
            frame[col] = frame[col].astype("str")
    return frame


def _spark_planner(settings_json: str, job_json: str, customers: frozenset[str] | None, models: bytes):  # type: ignore[no-untyped-def]
    def plan(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        job = BatchJob.model_validate_json(job_json)
        engine = _cached_engine(settings_json, models)
        segment = compile_segment(job.segment)
        for pdf in batches:
            yield plan_chunk(engine, _spark_frame(pdf), job, segment, customers)

    return plan


# ----------------------------------------------------------------------------- the run
@dataclass
class BatchRun:
    """One `nbo score` run: settings of the engine, the job, where the output goes, how to run."""

    settings: EngineSettings
    job: BatchJob
    out: Path
    customers: frozenset[str] | None = None
    workers: int = 1
    master: str | None = None
    progress: bool = True

    @property
    def work_dir(self) -> Path:
        return self.out.with_name(self.out.name + ".work")

    @property
    def summary_path(self) -> Path:
        return self.out.with_name(self.out.name + ".summary.json")

    def _features_file(self) -> Path:
        return latest_features_file(self.settings.features_path)

    # --------------------------------------------------------------- files
    def _write_json(self, path: Path, payload: object) -> None:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def _write_parquet(self, path: Path, frame: pd.DataFrame) -> None:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        pq.write_table(pa.Table.from_pandas(frame, schema=PLAN_SCHEMA, preserve_index=False), tmp)
        os.replace(tmp, path)

    def _manifest(self, status: str, summary: dict[str, object] | None = None) -> None:
        self._write_json(self.work_dir / "manifest.json",
                         {"job": self.job.model_dump(mode="json"), "status": status, "summary": summary})

    def _open_work_dir(self) -> dict[str, object] | None:
        """Create or resume the work dir; the summary when this very job already completed."""
        manifest_path = self.work_dir / "manifest.json"
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if manifest.get("job") != self.job.model_dump(mode="json"):
                raise NboError(
                    f"{self.work_dir} belongs to another run (campaign {manifest.get('job', {}).get('campaign')!r} "
                    "with other arguments or inputs); use another --out, or remove that directory"
                )
            if manifest.get("status") == "complete":
                if not self.out.exists():
                    raise NboError(f"campaign {self.job.campaign!r} completed but {self.out} was removed; its "
                                   f"reservations stand. Remove {self.work_dir} to score it again (nothing is reserved twice)")
                return dict(manifest["summary"])
            log.info("resuming %s", self.work_dir)
            return None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._manifest("running")
        return None

    # --------------------------------------------------------------- plans
    def _pandas_plans(self, bar: object) -> Iterator[tuple[int, pd.DataFrame | None]]:
        """(chunk index, plan or None when the chunk is already done), in order."""
        path = self._features_file()
        job_json, settings_json = self.job.model_dump_json(), self.settings.model_dump_json()
        segment = compile_segment(self.job.segment)

        def todo() -> Iterator[tuple[int, pd.DataFrame | None, pd.DataFrame | None]]:
            for i, frame in enumerate(iter_materialised(path, self.job.chunk_rows)):
                if (self.work_dir / f"part-{i:05d}.json").exists():
                    bar.update(len(frame))  # type: ignore[attr-defined]
                    yield i, None, None
                elif (self.work_dir / f"plan-{i:05d}.parquet").exists():
                    bar.update(len(frame))  # type: ignore[attr-defined]
                    yield i, pq.read_table(self.work_dir / f"plan-{i:05d}.parquet").to_pandas(), None
                else:
                    yield i, None, frame

        if self.workers <= 1:
            engine = _cached_engine(settings_json)
            for i, plan, frame in todo():
                if frame is not None:
                    plan = plan_chunk(engine, frame, self.job, segment, self.customers)
                    self._write_parquet(self.work_dir / f"plan-{i:05d}.parquet", plan)
                    bar.update(len(frame))  # type: ignore[attr-defined]
                yield i, plan
            return
        ctx = mp.get_context("spawn")
        blob = models_blob(_cached_engine(settings_json))
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_pool_init,
                                 initargs=(settings_json, blob, self.customers)) as pool:
            window: list[tuple[int, pd.DataFrame | None, Future | None, int]] = []
            source = todo()
            exhausted = False
            while window or not exhausted:
                while not exhausted and len(window) < 2 * self.workers:
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    i, plan, frame = item
                    fut = None if frame is None else pool.submit(_pool_plan, frame, job_json)
                    window.append((i, plan, fut, 0 if frame is None else len(frame)))
                if not window:
                    break
                i, plan, fut, n = window.pop(0)
                if fut is not None:
                    plan = fut.result()
                    self._write_parquet(self.work_dir / f"plan-{i:05d}.parquet", plan)
                    bar.update(n)  # type: ignore[attr-defined]
                yield i, plan

    def _spark_plans(self, bar: object) -> Iterator[tuple[int, pd.DataFrame | None]]:
        plan_dir = self.work_dir / "spark-plan"
        if not (plan_dir / "_SUCCESS").exists():
            self._run_spark(plan_dir)
        files = sorted(plan_dir.glob("part-*.parquet"))
        for i, plan in enumerate(_whole_decisions(files, self.job.chunk_rows)):
            bar.update(int((plan["rank"] <= 1).sum()))  # type: ignore[attr-defined]
            yield i, (None if (self.work_dir / f"part-{i:05d}.json").exists() else plan)

    def _run_spark(self, plan_dir: Path) -> None:
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
        from pyspark import SparkConf
        from pyspark.sql import SparkSession

        conf = SparkConf()
        builder = SparkSession.builder.appName(f"nbo-score-{self.job.campaign}")
        if self.master:
            builder = builder.master(self.master)
        elif not conf.contains("spark.master"):
            builder = builder.master("local[*]")
        spark = (
            builder.config("spark.sql.execution.arrow.maxRecordsPerBatch", str(self.job.chunk_rows))
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "8")
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
        path = self._features_file()
        frame = spark.read.parquet(str(path.resolve()))
        # One task per core, more only for very large files (a task streams its rows in chunks).
        partitions = max(spark.sparkContext.defaultParallelism, math.ceil(materialised_rows(path) / 2_000_000))
        settings_json = self.settings.model_dump_json()
        planner = _spark_planner(settings_json, self.job.model_dump_json(), self.customers,
                                 models_blob(_cached_engine(settings_json)))
        shutil.rmtree(plan_dir, ignore_errors=True)
        (frame.repartition(partitions).mapInPandas(planner, SPARK_PLAN_DDL)
         .write.mode("overwrite").parquet(str(plan_dir.resolve())))

    # --------------------------------------------------------------- run
    def run(self) -> dict[str, object]:
        """Score, reserve (unless dry run), write output and summary; returns the summary."""
        from tqdm import tqdm

        done = self._open_work_dir()
        if done is not None:
            return {**done, "already_complete": True}
        engine = _cached_engine(self.settings.model_dump_json())
        total = materialised_rows(self._features_file())
        with tqdm(total=total, unit=" customers", unit_scale=True, disable=not self.progress, file=sys.stderr,
                  mininterval=1.0, desc=f"score {self.job.campaign}") as bar:
            plans = self._spark_plans(bar) if self.job.engine == "spark" else self._pandas_plans(bar)
            n_parts = 0
            for i, plan in plans:
                n_parts = i + 1
                if plan is None:
                    continue
                final, stats = reserve_plan(engine, plan, self.job)
                self._write_parquet(self.work_dir / f"part-{i:05d}.parquet", final)
                self._write_json(self.work_dir / f"part-{i:05d}.json", {**summarise(final), **stats})
        summaries = [json.loads((self.work_dir / f"part-{i:05d}.json").read_text(encoding="utf-8")) for i in range(n_parts)]
        summary = merge_summaries(summaries)
        for key in ("customers_scored", "customers_offered", "offers", "customers_suppressed", "segment_excluded",
                    "already_reserved", "refused_at_reservation"):
            summary.setdefault(key, 0)
        summary.setdefault("expected_value", 0.0)
        summary.setdefault("suppressed_by_reason", {})
        if self.customers is not None:
            summary["customers_unknown"] = len(self.customers) - int(summary["customers_scored"]) - int(summary["segment_excluded"])
        summary.update({
            "campaign": self.job.campaign, "channel": self.job.channel, "as_of": self.job.as_of.isoformat(),
            "k": self.job.k, "dry_run": self.job.dry_run, "engine": self.job.engine, "reserved": not self.job.dry_run,
            "output": str(self.out),
        })
        self._assemble(n_parts)
        self._write_json(self.summary_path, summary)
        if self.job.dry_run:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        else:
            self._manifest("complete", summary)
            for path in self.work_dir.iterdir():
                if path.name != "manifest.json":
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        return summary

    def _assemble(self, n_parts: int) -> None:
        """Concatenate the part files into the output (temporary name, then rename)."""
        tmp = self.out.with_name(f".{self.out.name}.tmp-{os.getpid()}")
        csv = self.out.suffix.lower() == ".csv"
        schema = PLAN_SCHEMA
        out_schema = pa.schema([schema.field(c) for c in OUTPUT_COLUMNS])
        try:
            writer = None if csv else pq.ParquetWriter(tmp, out_schema, compression="zstd")
            header = True
            for i in range(n_parts):
                table = pq.read_table(self.work_dir / f"part-{i:05d}.parquet")
                frame = table.to_pandas()
                frame = frame[frame["offer_id"].notna()][list(OUTPUT_COLUMNS)]
                if csv:
                    frame.to_csv(tmp, mode="w" if header else "a", header=header, index=False)
                    header = False
                else:
                    writer.write_table(pa.Table.from_pandas(frame, schema=out_schema, preserve_index=False))  # type: ignore[union-attr]
            if csv and header:
                pd.DataFrame(columns=list(OUTPUT_COLUMNS)).to_csv(tmp, index=False)
            if writer is not None:
                writer.close()
            os.replace(tmp, self.out)
        finally:
            tmp.unlink(missing_ok=True)


def _whole_decisions(files: Sequence[Path], chunk_rows: int) -> Iterator[pd.DataFrame]:
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


def check_channel(channel: str) -> str:
    if channel not in CONTACT_CHANNELS:
        raise NboError(f"--channel {channel!r} is not one of {', '.join(CONTACT_CHANNELS)}")
    return channel

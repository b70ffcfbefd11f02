"""Batch scoring for campaign tools: the real-time policy over a whole customer base, in chunks.

One function decides a chunk of customers, `plan_chunk`: the materialised rows of the chunk go
through the code the real-time service runs, a chunk at a time - the engine's scoring
(`DecisionEngine.with_features(...)._score`: same features, same models) and the arbiter's
`arbitrate_block`, the policy that `Arbiter.decide` applies to one row - so `decide` gives the same
offers and scores at the same `now` (tested). Both engines call it: `pandas` on chunks of the
features file in this process (or a pool of `workers` processes), `spark` inside `mapInPandas`
over partitions of the same file. Nothing is re-written for Spark.

Reservation is exactly-once and happens on the driver only, in order, after the chunk's plan is on
disk, with one store call per chunk (`check_and_reserve_many`: one SQLite transaction, one Redis
pipeline; the same checks as one call per customer): every (campaign, customer, channel) has a deterministic decision id, the store refuses a
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

import contextlib
import ctypes
import functools
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
from serving.contact_store import ContactStore, OfferRef, ReserveRequest
from serving.engine import DecisionEngine, _context, _naive_utc, _seed
from serving.settings import EngineSettings, latest_features_file
from serving.ranking import REASON_CODES, REASON_INDEX, seeded_draws
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


@dataclass(frozen=True)
class _Shown:
    """One chosen offer of a batch decision: the fields of `ranking.ShownOffer` the plan keeps."""

    offer_id: str
    rank: int
    p_accept: float
    expected_value: float
    propensity: float
    reasons: list[str]


class _PrefetchedContacts:
    """The contact store, with the chunk's `contact_rows` read in one go (the features' live history)."""

    def __init__(self, store: ContactStore, customer_ids: list[str]) -> None:
        self._store = store
        self._rows = store.contact_rows_many(customer_ids)

    def contact_rows(self, customer_id: str) -> list[dict[str, object]]:
        return self._rows.get(customer_id, [])

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def _decide_chunk(engine: DecisionEngine, frame: pd.DataFrame, job: BatchJob) -> Iterator[tuple[str, list[_Shown], str | None]]:
    """(customer, offers, why no offer) for each row of `frame`, as `DecisionEngine.decide` answers.

    The real-time path for a whole chunk at once: the engine's scoring (`_score`, the same
    features and models), the arbiter's `arbitrate_block` (the policy `Arbiter.decide` runs with one
    row), exploration seeded per (customer, channel, now) as `decide` seeds it, and the reasons
    from one explainer call for the chunk. Customers who may not be contacted at all (no consent,
    quiet hours) are not scored: every offer is suppressed for them before the scores matter.
    """
    arb, channel, k = engine.arbiter, job.channel, job.k
    now = _naive_utc(job.as_of)
    ids = [str(c) for c in frame.index.tolist()]
    offer_ids = engine.offer_ids
    n_o = len(offer_ids)
    consented = arb.consent_mask(ids, channel, now, engine.consents)
    quiet = engine.policy.quiet_hours.is_quiet(channel, now)
    live = consented & (not quiet)
    answers: dict[int, tuple[list[_Shown], str | None]] = {}
    for i in np.flatnonzero(~live).tolist():
        answers[i] = ([], "no_candidate" if not n_o else ("consent" if not consented[i] else "quiet_hours"))
    rows = np.flatnonzero(live)
    if len(rows) and n_o:
        sub = frame.iloc[rows]
        sub_ids = [ids[i] for i in rows.tolist()]
        view = engine.with_features(sub)
        view.store = _PrefetchedContacts(engine.store, sub_ids)  # type: ignore[assignment]
        ctx = _context(channel, None)
        scored = view._score(sub_ids, channel, ctx, now, view.models)
        columns = np.array([arb._index[o] for o in offer_ids], dtype=np.int64)
        block = arb.arbitrate_block(
            sub_ids, channel, now, scored.p,
            columns=columns,
            rule_masks=arb.rule_masks(sub, channel, now, {}),
            churn_probability=scored.churn,
            customer_value=scored.value,
            k=k,
            draws=seeded_draws(np.array([_seed(c, channel, now) for c in sub_ids], dtype=np.uint64)),
            consented=np.ones(len(sub_ids), dtype=bool),
            histories=engine.store.histories(sub_ids, now),
        )
        top = _top_contributions(view, scored, block.picks, n_o)
        for r, i in enumerate(rows.tolist()):
            shown: list[_Shown] = []
            churn = float(scored.churn[r])
            for rank, c in enumerate(block.picks[r].tolist(), start=1):
                if c < 0:
                    break
                explored = bool(block.explored[r, rank - 1])
                shown.append(_Shown(offer_ids[c], rank, float(scored.p[r, c]), float(block.ev[r, c]),
                                    float(block.propensity[r, rank - 1]),
                                    top.get((r, c), []) + arb.offer_reasons(offer_ids[c], churn, explored)))
            if shown:
                answers[i] = (shown, None)
            else:
                codes = block.reason[r]
                bad = REASON_INDEX["invalid_score"]  # reported first by `decide`
                order = np.r_[np.flatnonzero(codes == bad), np.flatnonzero((codes != bad) & (codes != 0))]
                found = [REASON_CODES[int(codes[j]) - 1] for j in order.tolist()]
                answers[i] = ([], Counter(found).most_common(1)[0][0] if found else "no_candidate")
    elif len(rows):
        for i in rows.tolist():
            answers[i] = ([], "no_candidate")
    for i, cid in enumerate(ids):
        yield cid, *answers[i]


def _top_contributions(view: DecisionEngine, scored: object, picks: np.ndarray, n_o: int) -> dict[tuple[int, int], list[str]]:
    """The three largest attributions (log-odds) of each chosen (row, column), formatted as `decide` does."""
    models = scored.models  # type: ignore[attr-defined]
    X = scored.X  # type: ignore[attr-defined]
    if models is None or X is None:
        return {}
    where = np.argwhere(picks >= 0)
    if not len(where):
        return {}
    cells = [(int(r), int(picks[r, j])) for r, j in where.tolist()]
    index = np.array([r * n_o + c for r, c in cells], dtype=np.int64)
    explainer = models.explainer or models.propensity.model
    contrib = np.concatenate([explainer.contributions(X[index[lo : lo + 4096]])[:, :-1] for lo in range(0, len(index), 4096)])
    top = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :3]
    names = models.propensity.feature_names
    return {
        cell: [f"{names[j]}:{float(contrib[a, j]):+.4g}" for j in top[a].tolist()]
        for a, cell in enumerate(cells)
    }


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
        categories = dict(zip(engine.offers["offer_id"].astype(str), engine.offers["category"].astype(str), strict=True))
        versions = json.dumps(engine.models.versions if engine.models is not None else {}, sort_keys=True)
        for cid, offers, no_offer in _decide_chunk(engine, frame, job):
            did = decision_id_for(job.campaign, cid, job.channel)
            if not offers:
                add(cid, did, None, None, versions, no_offer)
            for o in offers:
                add(cid, did, o, categories[o.offer_id], versions, None)
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
    customers = plan["customer_id"].to_numpy(dtype=object)
    categories = plan["category"].to_numpy(dtype=object)
    propensities = plan["propensity"].to_numpy(dtype=np.float64)
    versions = plan["model_versions"].to_numpy(dtype=object)
    groups: list[list[int]] = []
    requests: list[ReserveRequest] = []
    parsed: dict[str, dict[str, str]] = {}
    for did, group in itertools.groupby(range(len(plan)), key=lambda i: dids[i]):
        rows = [i for i in group if has_offer[i]]
        if not rows:
            continue
        first = rows[0]
        mv = versions[first]
        groups.append(rows)
        requests.append(ReserveRequest(
            str(customers[first]), job.channel, tuple(OfferRef(str(offers[i]), str(categories[i])) for i in rows), str(did),
            {str(offers[i]): float(propensities[i]) for i in rows},
            parsed[mv] if mv in parsed else parsed.setdefault(mv, json.loads(mv)),
        ))
    # One store call for the chunk (one SQLite transaction, one Redis round trip), requests in plan order.
    results = store.check_and_reserve_many(requests, job.as_of, policy)
    for rows, request, result in zip(groups, requests, results, strict=True):
        first = rows[0]
        refused: list[tuple[str, str]] = []
        if result is None:  # the store holds this decision id: a re-run; keep what it recorded
            stats["already_reserved"] += 1
            cid = request.customer_id
            kept = {c["offer_id"] for c in store.export(cid)["contacts"] if c["decision_id"] == request.decision_id}
        else:
            kept = {r.offer_id for r in result.reserved}
            refused = list(result.refused)
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

#: Freed blocks up to this size stay in the process's heap for the next chunk (see `keep_freed_memory`).
_REUSE_BYTES = 256 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc keep freed chunk-sized blocks for reuse instead of unmapping them at once.

    A chunk of 2,000 customers x 50 offers makes several ~65 MB arrays; glibc serves blocks over
    32 MB with mmap and unmaps them when freed, so every chunk page-faults and zeroes its arrays
    again. Measured on 200,000 customers (one process): 42.3 s CPU of which 11.0 s system, and
    33.8 s (4.3 s system) with freed blocks up to 256 MB kept in the heap. Other C libraries:
    nothing changes. Returns whether the setting was applied.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, _REUSE_BYTES)) and bool(libc.mallopt(m_trim_threshold, _REUSE_BYTES))
    except (OSError, AttributeError):
        return False


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
    keep_freed_memory()
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
        keep_freed_memory()
        engine = _cached_engine(settings_json, models)
        segment = compile_segment(job.segment)
        for pdf in batches:
            yield plan_chunk(engine, _spark_frame(pdf), job, segment, customers)

    return plan


@contextlib.contextmanager
def _one_thread_per_worker() -> Iterator[None]:
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
        with _one_thread_per_worker(), ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_pool_init,
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

        # One LightGBM (OpenMP) thread per Python worker: Spark already runs one task per core.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
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
        keep_freed_memory()
        if self.settings.compiled_cache is None:  # workers load the forests the driver compiles
            self.settings = self.settings.model_copy(update={"compiled_cache": self.work_dir / "compiled"})
        engine = _cached_engine(self.settings.model_dump_json())
        if not self.job.dry_run:
            engine.store.expect_bulk_writes()  # this thread reserves every chunk
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

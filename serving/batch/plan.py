"""Planning a chunk: the decision pipeline over a chunk of materialised rows, as plan rows.

`plan_chunk` runs the pipeline `/recommend` runs (`serving.pipeline.decide_block`) on a whole
chunk: the same features and models, the same arbitration, exploration seeded per (customer,
channel, now) as `decide` seeds it, the reasons from one explainer call for the chunk, so `decide`
gives the same offers and scores at the same `now` (tested). It reads the chunk's contact state
through the engine's `ContactDesk` and reserves nothing: `serving.batch.reserve` does, on the
driver, after the plan is on disk. The same function runs in-process, in a worker pool and inside
Spark's `mapInPandas`.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import Context, iter_materialised
from nbo.errors import NboError
from serving.batch.customers import SEGMENT_EXCLUDED
from serving.batch.job import BatchJob, decision_id_for
from serving.engine import DecisionEngine, naive_utc
from serving.pipeline import CustomerBlock, DecisionBlock
from serving.rules import Rule
from serving.settings import EngineSettings, latest_features_file

#: The output: one row per (customer, offer) chosen; `reason_texts` is `reasons` in plain words
#: (`serving.reasons`), last so that readers of the earlier columns are unaffected.
OUTPUT_COLUMNS: tuple[str, ...] = (
    "customer_id", "offer_id", "rank", "p_accept", "expected_value", "propensity", "reasons", "decision_id",
    "reason_texts",
)
#: A plan also has one row per customer without an offer (`offer_id` null, `no_offer` = why).
PLAN_SCHEMA = pa.schema([
    ("customer_id", pa.string()), ("offer_id", pa.string()), ("rank", pa.int32()), ("p_accept", pa.float64()),
    ("expected_value", pa.float64()), ("propensity", pa.float64()), ("reasons", pa.string()),
    ("decision_id", pa.string()), ("category", pa.string()), ("model_versions", pa.string()), ("no_offer", pa.string()),
    ("reason_texts", pa.string()),
])
PLAN_COLUMNS: tuple[str, ...] = tuple(PLAN_SCHEMA.names)
REASON_SEPARATOR = "; "


def write_plan(path: Path, frame: pd.DataFrame) -> None:
    """A plan (or a reserved part) as Parquet in the plan schema, under a temporary name, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(pa.Table.from_pandas(frame, schema=PLAN_SCHEMA, preserve_index=False), tmp)
    os.replace(tmp, path)


def open_engine(settings: EngineSettings, models: bytes | None = None) -> DecisionEngine:
    """The engine a batch run needs: models required, only a few feature rows held.

    `models`: the driver's (propensity, churn[, uplift]) models, pickled (`models_blob`); workers take it
    instead of loading the champions from MLflow (~7 s each, and they need no tracking access).
    """
    path = latest_features_file(settings.features_path)
    head = next(iter_materialised(path, 64), None)
    if head is None:
        raise NboError(f"{path} holds no customers")
    pair = pickle.loads(models) if models is not None else None  # noqa: S301 - our own driver's bytes
    # Blocks only: no live features, no customers table (each indexed 1M customers per process).
    engine = DecisionEngine.from_settings(settings, features=head, models=pair, live=False)
    if engine.models is None:
        engine.close()
        raise NboError(f"models unavailable, batch scoring refuses the popularity fallback: {engine.models_error}")
    return engine


def models_blob(engine: DecisionEngine) -> bytes:
    """The engine's (propensity, churn) pair, with the uplift model when it has one, pickled for
    workers (a few hundred KB)."""
    assert engine.models is not None
    return pickle.dumps(engine.models.loaded)


def plan_chunk(
    engine: DecisionEngine,
    frame: pd.DataFrame,
    job: BatchJob,
    segment: Rule | None = None,
    customers: frozenset[str] | None = None,
) -> pd.DataFrame:
    """Decide a chunk of materialised rows (indexed by customer_id) without reserving anything.

    Rows of the plan: one per offer chosen, one per customer without an offer (`no_offer` is the
    most frequent suppression reason of its candidates, the holdout that emptied it, or `segment`
    when the segment rule left the customer out; `propensity` the probability of making no
    contact). Customers not in `customers` are skipped.
    """
    if customers is not None:
        frame = frame[np.fromiter((c in customers for c in frame.index), dtype=bool, count=len(frame))]
    cols: dict[str, list[object]] = {c: [] for c in PLAN_COLUMNS}

    def add(cid: str, did: str, versions: str, no_offer: str) -> None:
        """A row without an offer (the segment left the customer out: not a decision, no propensity)."""
        cols["customer_id"].append(cid)
        cols["decision_id"].append(did)
        cols["model_versions"].append(versions)
        cols["no_offer"].append(no_offer)
        for c in ("offer_id", "reasons", "reason_texts", "category"):
            cols[c].append(None)
        cols["rank"].append(0)
        for c in ("p_accept", "expected_value", "propensity"):
            cols[c].append(math.nan)

    if segment is not None and len(frame):
        keep = segment.evaluate_frame(frame)
        for cid in frame.index[~keep].tolist():
            add(cid, decision_id_for(job.campaign, cid, job.channel), "{}", SEGMENT_EXCLUDED)
        frame = frame[keep]
    if len(frame):
        categories = dict(zip(engine.offers["offer_id"].astype(str), engine.offers["category"].astype(str), strict=True))
        versions = json.dumps(engine.models.versions if engine.models is not None else {}, sort_keys=True)
        now = naive_utc(job.as_of)
        ids = [str(c) for c in frame.index.tolist()]
        # The chunk's contact state, read once: the caps' histories, the features' store rows and
        # the consent changes recorded at runtime (`POST /consents`: a campaign obeys them too).
        desk = engine.desk
        block = engine.with_features(frame).decide_block(
            CustomerBlock(ids, desk.histories(ids, now), desk.contact_rows_many(ids), desk.consent_changes(ids)),
            job.channel, now,
            Context(channel=job.channel, offer_attributes=job.offer_attributes) if job.offer_attributes else None, job.k,
        )
        _add_block(cols, block, ids, [decision_id_for(job.campaign, cid, job.channel) for cid in ids], categories,
                   versions)
    out = pd.DataFrame(cols, columns=list(PLAN_COLUMNS))
    out["rank"] = out["rank"].astype(np.int32)
    return out


def _add_block(cols: dict[str, list[object]], block: DecisionBlock, ids: list[str], dids: list[str],
               categories: dict[str, str], versions: str) -> None:
    """The block's plan rows, appended to `cols`: per customer in order, its chosen offers best rank
    first, or one no-offer row (why, and P(no contact)); built column by column from the block's
    arrays (`DecisionBlock.chosen`) rather than one `ShownOffer` per offer."""
    picked = block.chosen()
    rows = picked["row"]
    has = np.zeros(len(ids), dtype=bool)
    has[rows] = True
    silent = np.flatnonzero(~has).tolist()
    n_silent = len(silent)
    # Picks come sorted by (row, rank) and a silent row has none: a stable sort by row interleaves them.
    order = np.argsort(np.asarray(rows + silent, dtype=np.int64), kind="stable").tolist()
    who = rows + silent

    def put(name: str, picks: list[object], quiet: list[object]) -> None:
        values = picks + quiet
        cols[name].extend([values[j] for j in order])

    put("customer_id", [ids[i] for i in rows], [ids[i] for i in silent])
    cols["decision_id"].extend([dids[who[j]] for j in order])
    cols["model_versions"].extend([versions] * len(order))
    put("no_offer", [None] * len(rows), [block.no_offer(i) for i in silent])
    put("category", [categories[o] for o in picked["offer_id"]], [None] * n_silent)
    put("offer_id", picked["offer_id"], [None] * n_silent)
    put("rank", picked["rank"], [0] * n_silent)
    put("p_accept", picked["p_accept"], [math.nan] * n_silent)
    put("expected_value", picked["expected_value"], [math.nan] * n_silent)
    put("propensity", picked["propensity"], [block.p_none(i) for i in silent])  # of making no contact
    put("reasons", [REASON_SEPARATOR.join(r) for r in picked["reasons"]], [None] * n_silent)  # type: ignore[arg-type]
    put("reason_texts", [REASON_SEPARATOR.join(r) for r in picked["reason_texts"]], [None] * n_silent)  # type: ignore[arg-type]

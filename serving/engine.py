"""The decision engine: one customer (or a chunk of customers) -> scored, arbitrated offers.

Plain Python, no HTTP. The real-time service calls `DecisionEngine.decide` per request and batch
scoring calls `DecisionEngine.batch_decide` on chunks; both run the very same `_score` and
`_arbitrate`, so a customer scored online and in batch (same `now`, same store state) gets the
same offers, scores and propensities.

Per customer:

1. Candidate features through the features package's online path (`candidate_matrix`): the
   customer's materialised row, the request's `Context` and the live contact history (the
   `contacts` table of the data directory plus what the contact store recorded since).
2. `p_accept` from the propensity champion (one float32 matrix, one thread).
3. `churn_probability` from the churn champion on the materialised row (computed once per model
   load for every materialised customer, vectorised).
4. `customer_value` = `spend_365d` of the materialised row (currency units): the trailing year's
   spend, our estimate of what one more year of the relationship is worth. 0 without a row.
5. `Arbiter.decide` (consent, caps, eligibility, expected value, exploration, reservation).
6. `reasons`: the three largest SHAP contributions (log-odds) of each *shown* offer, then the
   arbiter's own reasons.

Exploration draws from a generator seeded by (customer_id, channel, now): random across customers
and moments, reproducible for one of them, which is what makes online == batch testable.

Fallback (`Decision.fallback = True`): when the models are unavailable, or the customer has no
materialised row (cold start), every offer gets its smoothed historical acceptance rate from the
contacts table (`popularity`). The arbiter still applies consent, caps, validity, channel and
eligibility (a rule on an unknown customer's features is unknown, hence false).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import redis
from pydantic import BaseModel, ConfigDict, Field

from features import (
    CANDIDATE_FEATURES,
    CUSTOMER_FEATURES,
    FEATURE_SET,
    Context,
    CustomerRows,
    candidate_matrix,
    check_feature_set,
    customer_feature_names,
    materialised_meta,
    prepare_offers,
    read_materialised,
)
from nbo.data import empty_table, load_table
from nbo.errors import NboError
from nbo.vocab import FINAL_OUTCOMES
from serving.compiled import Predictor, calibrated_predictor
from serving.contact_store import ConsentBook, ContactHistory, ContactStore, RedisContactStore, SQLiteContactStore
from serving.policy import ContactPolicy, load_policy
from serving.ranking import Arbiter, Candidate, Decision, ShownOffer, compile_offer_rules

log = logging.getLogger(__name__)

PROPENSITY_MODEL = "nbo-propensity"
CHURN_MODEL = "nbo-churn"
FALLBACK_VERSION = "popularity"
#: Pseudo-count of the prior in the popularity fallback: an offer needs about this many finalised
#: contacts before its own acceptance rate outweighs the catalogue-wide one.
POPULARITY_PRIOR_WEIGHT = 20.0
_CONTACT_COLUMNS = ("customer_id", "offer_id", "channel", "ts", "outcome", "outcome_ts")


#: What a contact store raises when it cannot answer: locked or unwritable SQLite file, Redis down,
#: refusing or too slow. The online path turns these into a degraded answer (no offers).
STORE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, redis.RedisError, OSError)


class StoreUnavailable(NboError):
    """The contact store could not answer; `cause` is `timeout`, `error` or `backoff` (not tried).

    Raised by `decide`, `record_outcome` and `forget`: nothing was shown, and whatever the store
    may or may not have recorded, no offer is returned (fail closed).
    """

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


def _store_cause(exc: BaseException) -> str:
    if isinstance(exc, redis.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        return "timeout"
    return "error"


def hash_id(customer_id: str) -> str:
    """What logs carry instead of a customer id."""
    return hashlib.sha256(customer_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]


class EngineSettings(BaseModel):
    """Where the engine's inputs live; loaded once at the edge (CLI or service start)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path
    features_path: Path = Field(description="A materialised features file, or a directory: the latest file in it")
    tracking_uri: str | None = None
    policy_path: Path | None = Field(None, description="policy.toml; None = the default policy")
    store: str = Field("nbo-contacts.db", description="SQLite file path, or redis://host:port/db")
    store_horizon_days: int = Field(90, ge=1)
    propensity_model: str = PROPENSITY_MODEL
    churn_model: str = CHURN_MODEL
    alias: str = "champion"
    explain: Literal["path", "shap"] = Field("path", description="reasons from path attributions (fast) or TreeSHAP")
    store_timeout_s: float | None = Field(
        None, gt=0, description="longest wait on the store per call (SQLite busy timeout, Redis socket timeout); None = the store's default"
    )
    store_retry_s: float = Field(1.0, ge=0, description="after a store failure, answer degraded without trying for this long")
    store_checkpoint_s: float | None = Field(
        None, gt=0, description="SQLite: checkpoint the WAL from a background thread this often (s); None = on the committing call (SQLite's default)"
    )
    compile_models: bool = Field(True, description="score with the champions compiled by lleaves (checked against the booster)")
    compiled_cache: Path | None = Field(None, description="directory for compiled champions shared by processes; None = compile in memory")


def latest_features_file(path: Path) -> Path:
    """`path` itself, or the materialised file with the latest `nbo.as_of` under a directory."""
    path = Path(path)
    if not path.is_dir():
        return path
    best: tuple[pd.Timestamp, Path] | None = None
    for candidate in sorted(path.glob("*.parquet")):
        try:
            meta = pq.read_schema(candidate).metadata or {}
        except (OSError, ValueError):
            continue
        raw = meta.get(b"nbo.as_of")
        if raw is None:
            continue
        when = pd.Timestamp(raw.decode())
        if best is None or when > best[0]:
            best = (when, candidate)
    if best is None:
        raise NboError(f"no materialised features (*.parquet written by `nbo features`) under {path}")
    return best[1]


def open_store(
    spec: str, horizon_days: int = 90, timeout_s: float | None = None, checkpoint_s: float | None = None
) -> ContactStore:
    """`redis://...` -> RedisContactStore, anything else -> a SQLite file at that path.

    `timeout_s` bounds every store call (the online service: a request must answer within its own
    timeout even when the store hangs): SQLite's busy timeout, Redis' connect and socket timeouts,
    and no Redis retries (redis-py retries 10 times with back-off by default). None keeps the
    stores' defaults (command-line tools, which may wait). `checkpoint_s`: SQLite's WAL checkpoints
    from a background thread at this interval instead of on the committing call (the service).
    """
    if spec.startswith(("redis://", "rediss://", "unix://")):
        if timeout_s is None:
            return RedisContactStore(url=spec, horizon_days=horizon_days)
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(
            spec, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return RedisContactStore(client, horizon_days=horizon_days)
    path = Path(spec.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    if timeout_s is None:
        return SQLiteContactStore(path, horizon_days=horizon_days, checkpoint_interval_s=checkpoint_s)
    return SQLiteContactStore(path, horizon_days=horizon_days, busy_timeout_s=timeout_s, checkpoint_interval_s=checkpoint_s)


# ----------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class Models:
    """The champion pair in use; replaced as a whole (one attribute assignment) on reload."""

    propensity: object  # training.registry.LoadedModel
    churn: object
    propensity_columns: np.ndarray | None  # positions in CANDIDATE_FEATURES, None = same order
    churn_probability: np.ndarray  # one per materialised customer (row order of the frame)
    explainer: PathExplainer | None = None  # None: SHAP via model.contributions
    #: P(accept) / P(churn) of float32 rows: the compiled forests where they match (see
    #: serving.compiled), else the models' own `predict_proba_positive`.
    predict_propensity: Predictor | None = None
    predict_churn: Predictor | None = None
    scoring: dict[str, str] = field(default_factory=dict)  # per model: "compiled" or why not

    @property
    def versions(self) -> dict[str, str]:
        return {"propensity": self.propensity.label, "churn": self.churn.label}  # type: ignore[attr-defined]

    @property
    def propensity_predictor(self) -> Predictor:
        return self.predict_propensity or self.propensity.model.predict_proba_positive  # type: ignore[attr-defined]

    @property
    def churn_predictor(self) -> Predictor:
        return self.predict_churn or self.churn.model.predict_proba_positive  # type: ignore[attr-defined]


def _check_model(loaded: object, allowed: Sequence[str], what: str) -> np.ndarray | None:
    version = getattr(loaded, "feature_set_version", None)
    if version != FEATURE_SET.version:
        raise NboError(
            f"{loaded.label} was trained on feature set {version}, this code serves {FEATURE_SET.version}"  # type: ignore[attr-defined]
        )
    names = list(loaded.feature_names)  # type: ignore[attr-defined]
    where = {n: i for i, n in enumerate(allowed)}
    unknown = [n for n in names if n not in where]
    if unknown:
        raise NboError(f"{loaded.label} needs {what} column(s) the features do not have: {', '.join(unknown[:5])}")  # type: ignore[attr-defined]
    positions = np.array([where[n] for n in names], dtype=np.int64)
    return None if len(names) == len(allowed) and np.array_equal(positions, np.arange(len(allowed))) else positions


class PathExplainer:
    """Per-feature path attributions of a LightGBM booster (Saabas / treeinterpreter), in log-odds.

    For every leaf of every tree, the change of the node value along the path from the root is
    credited to the feature split on; a row's attribution is the sum over its leaves. Like SHAP,
    attributions plus `bias` add up exactly to the raw score; unlike SHAP they are not Shapley
    values. Why: TreeSHAP (`pred_contrib`) costs ~0.3 ms per row per 50 trees, this costs one
    `pred_leaf` call plus a table lookup (~0.05 ms for a few rows), whatever the number of trees.
    """

    def __init__(self, booster: object) -> None:
        self.booster = booster
        dump = booster.dump_model()  # type: ignore[attr-defined]
        trees = dump["tree_info"]
        n_features = booster.num_feature()  # type: ignore[attr-defined]
        width = max((t["num_leaves"] for t in trees), default=1)
        table = np.zeros((len(trees), width, n_features))
        bias = 0.0
        for t, info in enumerate(trees):
            root = info["tree_structure"]
            if "split_feature" not in root:  # a one-leaf tree: a constant
                bias += float(root.get("leaf_value", 0.0))
                continue
            bias += float(root["internal_value"])
            stack = [(root, np.zeros(n_features))]
            while stack:
                node, acc = stack.pop()
                for side in ("left_child", "right_child"):
                    child = node[side]
                    leaf = "split_feature" not in child
                    value = child["leaf_value"] if leaf else child["internal_value"]
                    path = acc.copy()
                    path[node["split_feature"]] += value - node["internal_value"]
                    if leaf:
                        table[t, child.get("leaf_index", 0)] = path
                    else:
                        stack.append((child, path))
        self.table = table
        self.bias = bias
        self.n_features = n_features
        # The table's non-zero cells per (tree, leaf), tree-major (CSR): a path touches a few
        # features, so a row's attributions are a weighted bincount of ~depth x trees cells instead
        # of a sum over a dense (trees x features) slice of a table of ~2 MB (measured in a request
        # sequence, where the table is not in cache: ~0.1 ms per request).
        width = table.shape[1]
        flat = table.reshape(len(trees) * width, n_features)
        cell, feature = np.nonzero(flat)
        self._starts = np.searchsorted(cell, np.arange(len(trees) * width + 1)).astype(np.int64)
        self._feature = feature.astype(np.int64)
        self._weight = flat[cell, feature]
        self._width = width
        self._leaf_base = np.arange(len(trees), dtype=np.int64) * width
        self._leaves = _SingleRowLeaves.create(booster, len(trees))

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """(rows, trees) leaf index of each float32 row in each tree, as `booster.predict(pred_leaf=True)`."""
        if self._leaves is not None and len(X) <= _SINGLE_ROW_MAX:
            return self._leaves(X)
        return self.booster.predict(X, pred_leaf=True, num_threads=1).reshape(len(X), -1).astype(np.int64)  # type: ignore[attr-defined]

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """(rows, features + 1): attributions, last column the bias (the layout of `pred_contrib`).

        Each (row, feature) sums its trees' cells in tree order, as the dense sum over the trees
        does (the cells left out are exact zeros), so the result is the same to the last bit.
        """
        leaves = self.leaves(X)
        n, f = len(X), self.n_features
        cells = (self._leaf_base[None, :] + leaves).ravel()  # row-major, tree order within a row
        lo, hi = self._starts[cells], self._starts[cells + 1]
        count = hi - lo
        total = int(count.sum())
        at = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(total)  # the cells' entries, in order
        row = np.repeat(np.repeat(np.arange(n, dtype=np.int64), leaves.shape[1]), count)
        attributions = np.bincount(row * f + self._feature[at], weights=self._weight[at], minlength=n * f).reshape(n, f)
        return np.column_stack([attributions, np.full(n, self.bias)])

    def dense_contributions(self, X: np.ndarray) -> np.ndarray:
        """`contributions` from the dense table and `Booster.predict` (the reference, for tests)."""
        leaves = self.booster.predict(X, pred_leaf=True, num_threads=1).reshape(len(X), -1)  # type: ignore[attr-defined]
        trees = np.arange(leaves.shape[1])
        attributions = self.table[trees, leaves].sum(axis=1)
        return np.column_stack([attributions, np.full(len(X), self.bias)])


#: Up to this many rows (a request's shown offers) the leaves come from LightGBM's single-row path.
_SINGLE_ROW_MAX = 32


class _SingleRowLeaves:
    """Leaf indices of a few float32 rows through LightGBM's single-row fast path.

    Why: `Booster.predict(pred_leaf=True)` on the 3 shown offers of a request builds a predictor
    and walks the Python wrapper per call (measured in a request sequence: ~0.17 ms per call);
    `LGBM_BoosterPredictForMatSingleRowFast` keeps the predictor set up once here. Same library,
    same trees, same leaves: `create` checks that on random rows (with NaNs, zeros and integer
    codes) against `Booster.predict` and returns None (the caller keeps `predict`) on any
    difference or C API failure. LightGBM serialises single-row calls on a booster with a lock.
    """

    def __init__(self, booster: object, n_trees: int) -> None:
        import ctypes

        from lightgbm.basic import _LIB, _c_str, _safe_call

        self._ctypes, self._lib, self._safe_call = ctypes, _LIB, _safe_call
        self.booster = booster  # keeps the booster (and its handle) alive as long as this config
        self.n_features = int(booster.num_feature())  # type: ignore[attr-defined]
        self.n_trees = n_trees
        best = int(getattr(booster, "best_iteration", 0) or 0)  # what Booster.predict uses by default
        handle = ctypes.c_void_p()
        _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
            booster._handle,  # type: ignore[attr-defined]
            ctypes.c_int(2),  # C_API_PREDICT_LEAF_INDEX
            ctypes.c_int(0),  # start_iteration
            ctypes.c_int(best),  # num_iteration (<= 0: all)
            ctypes.c_int(0),  # C_API_DTYPE_FLOAT32
            ctypes.c_int32(self.n_features),
            _c_str("num_threads=1"),
            ctypes.byref(handle),
        ))
        self._handle = handle
        self._free = _LIB.LGBM_FastConfigFree
        self._predict = _LIB.LGBM_BoosterPredictForMatSingleRowFast
        self._void_p = ctypes.c_void_p

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value:
            self._free(handle)
            self._handle = None

    @classmethod
    def create(cls, booster: object, n_trees: int) -> _SingleRowLeaves | None:
        """The fast path if it gives `Booster.predict`'s leaves on a check sample, else None."""
        try:
            fast = cls(booster, n_trees)
            rng = np.random.default_rng(0)
            shape = (64, fast.n_features)
            X = rng.normal(size=shape) * rng.choice([0.1, 1.0, 10.0, 100.0], size=(shape[0], 1))
            X = np.where(rng.random(shape) < 0.3, np.round(np.abs(X)), X)  # integer codes (categorical splits)
            X[rng.random(shape) < 0.1] = 0.0
            X[rng.random(shape) < 0.1] = np.nan
            X = X.astype(np.float32)
            want = booster.predict(X, pred_leaf=True, num_threads=1).reshape(len(X), -1)  # type: ignore[attr-defined]
            if want.shape[1] != n_trees or not np.array_equal(fast(X), want):
                log.warning("LightGBM's single-row leaf path disagrees with Booster.predict: not used")
                return None
            return fast
        except Exception as exc:  # noqa: BLE001 - any C API mismatch: Booster.predict still answers
            log.warning("LightGBM's single-row leaf path unavailable (%s): using Booster.predict", type(exc).__name__)
            return None

    def __call__(self, X: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(X, dtype=np.float32)
        out = np.empty((len(rows), self.n_trees), dtype=np.float64)
        out_len = self._ctypes.c_int64(0)
        # Row pointers from the base addresses (numpy's `.ctypes.data_as` per row cost ~3 us each).
        void_p, row_at, out_at = self._void_p, rows.ctypes.data, out.ctypes.data
        row_step, out_step = rows.strides[0], out.strides[0]
        length = self._ctypes.byref(out_len)
        for i in range(len(rows)):
            self._safe_call(self._predict(self._handle, void_p(row_at + i * row_step), length, void_p(out_at + i * out_step)))
            if out_len.value != self.n_trees:
                raise ValueError(f"LightGBM returned {out_len.value} leaves for {self.n_trees} trees")
        return out.astype(np.int64)


def _probabilities_ok(p: np.ndarray) -> bool:
    return bool(len(p) == 0 or (np.all(np.isfinite(p)) and p.min() >= 0.0 and p.max() <= 1.0))


@dataclass(frozen=True)
class ReloadResult:
    changed: bool
    ok: bool
    message: str
    versions: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- engine
@dataclass(frozen=True)
class _Scored:
    """Scores of one chunk: rows are customer-major, `n_offers` per customer."""

    customer_ids: list[str]
    positions: np.ndarray  # row in the materialised frame, -1 = unknown customer
    X: np.ndarray | None  # float32 model inputs (customers x offers, model columns), None = fallback
    p: np.ndarray  # (customers, offers)
    churn: np.ndarray
    value: np.ndarray
    models: Models | None


class DecisionEngine:
    """Everything a decision needs, built once; `decide` and `batch_decide` are thread-safe."""

    def __init__(
        self,
        *,
        policy: ContactPolicy,
        offers: pd.DataFrame,
        consents: pd.DataFrame,
        contacts: pd.DataFrame,
        features: pd.DataFrame,
        features_as_of: pd.Timestamp,
        store: ContactStore,
        models: Models | None = None,
        client: object | None = None,
        settings: EngineSettings | None = None,
        explain: str | None = None,
    ) -> None:
        self.policy = policy
        self.store = store
        self.settings = settings
        self.explain = explain or (settings.explain if settings is not None else "path")
        self.features_as_of = pd.Timestamp(features_as_of)
        self._client = client
        self._reload_lock = threading.Lock()
        self.offers = offers.reset_index(drop=True)
        self._prepared = prepare_offers(self.offers)
        self.offer_ids: list[str] = [str(o) for o in self.offers["offer_id"].tolist()]
        self._offer_column = {o: j for j, o in enumerate(self.offer_ids)}  # offer id -> column of `_Scored.p`
        rules = compile_offer_rules(self.offers, customer_feature_names())
        self.arbiter = Arbiter(policy, self.offers, rules, store)
        self._rule_names = sorted({n for r in rules.values() for n in r.names} & set(customer_feature_names()))
        self.consents = ConsentBook(consents)
        self._set_features(features)
        self._contacts = self._index_contacts(contacts)
        self.popularity = self._popularity(contacts)
        self._models: Models | None = None
        if models is not None:
            self._models = models
        self.models_error: str | None = None
        self.store_retry_s = settings.store_retry_s if settings is not None else 1.0
        self._store_retry_at = 0.0  # monotonic time before which the store is not tried again
        self._compiling: threading.Thread | None = None  # the last background compilation (tests join it)

    def _set_features(self, features: pd.DataFrame) -> None:
        """Customer rows: positions by id, rule inputs and values as plain arrays."""
        self.features = features
        self._position = {cid: i for i, cid in enumerate(features.index.tolist())}
        self._rule_values = {n: features[n].to_numpy() for n in self._rule_names if n in features.columns}
        self._value = features["spend_365d"].to_numpy(np.float64) if "spend_365d" in features else np.zeros(len(features))
        self._customer_matrix = features[list(CUSTOMER_FEATURES)].to_numpy(np.float32, na_value=np.nan)
        # The numeric columns as one float64 block: a request takes its row out of it with no pandas.
        self._rows = CustomerRows.from_frame(features)

    @property
    def _numeric(self) -> pd.DataFrame:
        """The numeric columns as a float64 frame (what `_score` reads, for tests and debugging)."""
        return pd.DataFrame(self._rows.values, index=self.features.index, columns=self._rows.columns, copy=False)

    def with_features(self, features: pd.DataFrame) -> DecisionEngine:
        """This engine over other materialised rows (a batch-scoring chunk of the same feature set).

        Shares policy, catalogue, consents, contacts, store and models; only the per-customer
        arrays and the churn probabilities (the churn champion on these rows) are new. Lets batch
        scoring stream a features file in chunks instead of holding it whole.
        """
        view = copy.copy(self)
        view._set_features(features)
        models = self._models
        if models is not None:
            X = view._churn_inputs(models.churn)
            churn_p = np.asarray(models.churn_predictor(X), dtype=np.float64) if len(X) else np.zeros(0)
            view._models = dataclasses.replace(models, churn_probability=churn_p)
        return view

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_settings(
        cls,
        settings: EngineSettings,
        *,
        load_models: bool = True,
        features: pd.DataFrame | None = None,
        models: tuple[object, object] | None = None,
    ) -> DecisionEngine:
        """Load policy, catalogue, consents, contacts, features, store and the champion models.

        Models that cannot be loaded leave the engine in fallback mode (`models_error` says why);
        `reload()` keeps trying. `features`: rows of the settings' features file to hold instead of
        the whole file (batch scoring streams the rest through `with_features`). `models`: the
        (propensity, churn) pair already loaded elsewhere (batch workers get the driver's pair
        instead of each loading the champions from the registry).
        """
        policy = load_policy(settings.policy_path) if settings.policy_path else ContactPolicy()
        offers = load_table(settings.data_dir, "offers")
        consents = _optional_table(settings.data_dir, "consents")
        contacts = _optional_table(settings.data_dir, "contacts")
        if features is None:
            frame, meta = read_materialised(latest_features_file(settings.features_path))
        else:
            frame, meta = features, materialised_meta(latest_features_file(settings.features_path))
        check_feature_set(meta)
        store = open_store(settings.store, settings.store_horizon_days, settings.store_timeout_s, settings.store_checkpoint_s)
        store.check_policy(policy)
        engine = cls(
            policy=policy,
            offers=offers,
            consents=consents,
            contacts=contacts,
            features=frame,
            features_as_of=meta["as_of"],  # type: ignore[arg-type]
            store=store,
            settings=settings,
        )
        if models is not None:
            engine._models = engine.build_models(*models)
        elif load_models:
            result = engine.reload(force=True, compile_now=True)
            if not result.ok:
                log.warning("models unavailable at start, serving the popularity fallback: %s", result.message)
        return engine

    @staticmethod
    def _index_contacts(
        contacts: pd.DataFrame,
    ) -> tuple[dict[str, tuple[int, int]], dict[str, np.ndarray]]:
        """The contacts table sorted by customer, as numpy columns, with each customer's row range."""
        frame = contacts.loc[:, list(_CONTACT_COLUMNS)].sort_values("customer_id", kind="stable").reset_index(drop=True)
        ids = frame["customer_id"].to_numpy(dtype=object)
        ranges: dict[str, tuple[int, int]] = {}
        if len(ids):
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
            ends = np.r_[starts[1:], len(ids)]
            ranges = {ids[s]: (int(s), int(e)) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)}
        arrays = {n: frame[n].to_numpy(dtype=object) for n in ("customer_id", "offer_id", "channel", "outcome")}
        arrays.update({n: frame[n].to_numpy(dtype="datetime64[ns]") for n in ("ts", "outcome_ts")})
        return ranges, arrays

    def _popularity(self, contacts: pd.DataFrame) -> np.ndarray:
        """Smoothed historical acceptance rate per catalogue offer (the fallback's p_accept)."""
        final = contacts[contacts["outcome"].isin(FINAL_OUTCOMES)]
        accepted = final["outcome"] == "accepted"
        prior = float(accepted.mean()) if len(final) else 0.05
        by_offer = final.groupby("offer_id", observed=True)["outcome"]
        n = by_offer.size().reindex(self.offer_ids, fill_value=0).to_numpy(np.float64)
        a = accepted.groupby(final["offer_id"], observed=True).sum().reindex(self.offer_ids, fill_value=0).to_numpy(np.float64)
        return (a + POPULARITY_PRIOR_WEIGHT * prior) / (n + POPULARITY_PRIOR_WEIGHT)

    # ---------------------------------------------------------------- models
    @property
    def models(self) -> Models | None:
        return self._models

    @property
    def ready(self) -> bool:
        """True once the engine can answer (with models, or with the documented fallback)."""
        return True

    def build_models(self, propensity: object, churn: object, compile_models: bool | None = None) -> Models:
        """Check feature sets and names, score a sample, precompute churn for every customer.

        `compile_models` (default: the settings'): also compile both forests (`with_compiled`)
        before returning; reloads compile afterwards, in the background, instead.
        """
        columns = _check_model(propensity, CANDIDATE_FEATURES, "candidate")
        churn_X = self._churn_inputs(churn)
        churn_p = np.asarray(churn.model.predict_proba_positive(churn_X), dtype=np.float64)  # type: ignore[attr-defined]
        if not _probabilities_ok(churn_p):
            raise NboError(f"{churn.label} gives probabilities outside [0, 1] or not finite")  # type: ignore[attr-defined]
        explainer = PathExplainer(propensity.model.booster_) if self.explain == "path" else None  # type: ignore[attr-defined]
        models = Models(propensity, churn, columns, churn_p, explainer,
                        scoring={"propensity": "not compiled", "churn": "not compiled"})
        sample = self._sample_scores(models)
        if sample is not None and not _probabilities_ok(sample.p.ravel()):
            raise NboError(f"{propensity.label} gives probabilities outside [0, 1] or not finite on a sample")  # type: ignore[attr-defined]
        if self._compile_wanted if compile_models is None else compile_models:
            models = self.with_compiled(models, sample)
        return models

    def _churn_inputs(self, churn: object) -> np.ndarray:
        """The materialised customer rows in the churn model's column order."""
        columns = _check_model(churn, CUSTOMER_FEATURES, "customer")
        return self._customer_matrix if columns is None else self._customer_matrix[:, columns]

    @property
    def _compile_wanted(self) -> bool:
        return self.settings.compile_models if self.settings is not None else False

    def _sample_scores(self, models: Models) -> _Scored | None:
        """Scores of the first 20 customers x every offer, without the store's contacts (a reload
        must not depend on the store being up)."""
        sample = self.features.index[: min(20, len(self.features))].tolist()
        if not sample:
            return None
        return self._score(sample, "web", None, self.features_as_of.to_pydatetime(), models, live=False)

    def with_compiled(self, models: Models, sample: _Scored | None = None) -> Models:
        """`models` scoring with their forests compiled (serving.compiled), each checked against
        the booster on a sample (`sample`: `_sample_scores(models)` when already computed); a
        model that fails keeps its booster. Takes seconds per model."""
        churn_X = self._churn_inputs(models.churn)
        cache = self.settings.compiled_cache if self.settings is not None else None
        churn_predict, churn_how = calibrated_predictor(models.churn.model, churn_X[:500], models.churn.label, cache)  # type: ignore[attr-defined]
        sample = sample if sample is not None else self._sample_scores(models)
        X = sample.X if sample is not None else None
        predict, how = calibrated_predictor(models.propensity.model, X, models.propensity.label, cache)  # type: ignore[attr-defined]
        log.info("%s: %s; %s: %s", models.propensity.label, how, models.churn.label, churn_how)  # type: ignore[attr-defined]
        # Churn of every customer again, by the predictor batch chunks use (`with_features`): equal
        # to ~1e-16, but online and batch must agree to the last bit.
        churn_p = np.asarray(churn_predict(churn_X), dtype=np.float64)
        return dataclasses.replace(models, predict_propensity=predict, predict_churn=churn_predict,
                                   churn_probability=churn_p, scoring={"propensity": how, "churn": churn_how})

    def _compile_in_background(self, models: Models) -> threading.Thread:
        """Compile `models` off the request path; swap them in only if they are still the ones in use."""

        def work() -> None:
            try:
                compiled = self.with_compiled(models)
            except Exception:  # noqa: BLE001 - the boosters keep serving
                log.exception("compiling %s failed; the booster keeps serving", models.propensity.label)  # type: ignore[attr-defined]
                return
            with self._reload_lock:
                if self._models is models:
                    self._models = compiled

        thread = threading.Thread(target=work, name="nbo-compile", daemon=True)
        thread.start()
        self._compiling = thread
        return thread

    def reload(self, force: bool = False, *, compile_now: bool = False) -> ReloadResult:
        """Load the champions if their versions changed (or `force`); swap atomically on success.

        On any failure the models in use keep serving and the result says why. The new pair
        serves with its boosters at once and with compiled forests a few seconds later (a thread
        compiles them) unless `compile_now`: then this returns only after compiling.
        """
        if self.settings is None:
            return ReloadResult(False, True, "engine built without settings: nothing to reload")
        with self._reload_lock:
            try:
                from training.registry import load_model
                from training.tracking import resolve_tracking, version_by_alias

                if self._client is None:
                    self._client = resolve_tracking(self.settings.tracking_uri).activate()
                client = self._client
                names = (self.settings.propensity_model, self.settings.churn_model)
                wanted = {n: version_by_alias(client, n, self.settings.alias) for n in names}  # type: ignore[arg-type]
                missing = [n for n, v in wanted.items() if v is None]
                if missing:
                    raise NboError(f"no @{self.settings.alias} for {', '.join(missing)} in {self.settings.tracking_uri}")
                current = self._models
                if current is not None and not force:
                    now = {current.propensity.name: current.propensity.version, current.churn.name: current.churn.version}  # type: ignore[attr-defined]
                    if now == wanted:
                        return ReloadResult(False, True, "champions unchanged", current.versions)
                prop = load_model(client, names[0], version=wanted[names[0]])  # type: ignore[arg-type]
                churn = load_model(client, names[1], version=wanted[names[1]])  # type: ignore[arg-type]
                models = self.build_models(prop, churn, compile_models=compile_now and self._compile_wanted)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old models serving
                message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                self.models_error = message
                return ReloadResult(False, False, message, self._models.versions if self._models else {})
            self._models = models  # one reference assignment: requests see the old or the new pair
            self.models_error = None
            log.info("serving %s and %s", prop.label, churn.label)
        if self._compile_wanted and not compile_now:
            self._compile_in_background(models)
        return ReloadResult(True, True, "loaded", models.versions)

    # ---------------------------------------------------------------- scoring
    def _live_contacts(
        self, customer_ids: Sequence[str], live: bool = True, recent: list[dict[str, object]] | None = None
    ) -> dict[str, np.ndarray]:
        """Contacts of these customers (numpy columns): the data directory's log plus what the store
        recorded (`recent`: those rows when already read, else read here)."""
        ranges, arrays = self._contacts
        pieces = [ranges[c] for c in customer_ids if c in ranges]
        if recent is None:
            recent = [row for c in customer_ids for row in self.store.contact_rows(c)] if live else []
        if len(pieces) == 1:
            s, e = pieces[0]
            base = {name: values[s:e] for name, values in arrays.items()}
        else:
            idx = np.concatenate([np.arange(s, e) for s, e in pieces]) if pieces else np.zeros(0, dtype=np.int64)
            base = {name: values[idx] for name, values in arrays.items()}
        if not recent:
            return base
        cols: dict[str, np.ndarray] = {}
        for name in ("customer_id", "offer_id", "channel", "outcome"):
            cols[name] = np.concatenate([base[name], np.array([r[name] for r in recent], dtype=object)])
        for name in ("ts", "outcome_ts"):
            live = np.array([np.datetime64("NaT") if r[name] is None else r[name] for r in recent], dtype="datetime64[ns]")
            cols[name] = np.concatenate([base[name], live])
        return cols

    def _score(
        self,
        customer_ids: Sequence[str],
        channel: str,
        contexts: Context | Mapping[str, Context] | None,
        now: datetime,
        models: Models | None,
        live: bool = True,
        recent: list[dict[str, object]] | None = None,
    ) -> _Scored:
        """Scores of these customers; `recent`: their store rows when already read (`decide`)."""
        ids = list(customer_ids)
        positions = np.array([self._position.get(c, -1) for c in ids], dtype=np.int64)
        n_o = len(self.offer_ids)
        churn = np.zeros(len(ids))
        value = np.where(positions >= 0, self._value[np.maximum(positions, 0)] if len(self._value) else 0.0, 0.0)
        p = np.tile(self.popularity, (len(ids), 1))
        known = np.flatnonzero(positions >= 0)
        X = None
        if models is not None and len(known) and n_o:
            rows = self._rows.take(positions[known])
            as_of = pd.Timestamp(now)
            # Written as float32 directly (the model's input type; same rounding as casting the
            # float64 matrix), then the model's columns if its order differs: one copy, not three.
            block = candidate_matrix(rows, self._prepared, self._live_contacts([ids[i] for i in known], live, recent), contexts, as_of,
                                     dtype=np.float32)
            if models.propensity_columns is not None:
                block = block[:, models.propensity_columns]
            X = np.ascontiguousarray(block, dtype=np.float32)
            scores = models.propensity_predictor(X).reshape(len(known), n_o)
            p[known] = scores
            churn[known] = models.churn_probability[positions[known]]
        return _Scored(ids, positions, X, p, churn, value, models)

    def _rule_inputs(self, position: int) -> dict[str, object] | None:
        if position < 0:
            return None
        return {n: v[position] for n, v in self._rule_values.items()}

    def _arbitrate(
        self,
        scored: _Scored,
        i: int,
        channel: str,
        context: Context | None,
        now: datetime,
        k: int,
        reserve: bool,
        decision_id: str | None,
        explain: bool = True,
        history: ContactHistory | None = None,
    ) -> Decision:
        cid = scored.customer_ids[i]
        position = int(scored.positions[i])
        fallback = scored.models is None or position < 0
        versions = {"fallback": FALLBACK_VERSION} if fallback else scored.models.versions  # type: ignore[union-attr]
        ctx: dict[str, object] = {}
        if context is not None:
            if context.page_category is not None:
                ctx["page_category"] = context.page_category
            if context.device is not None:
                ctx["device"] = context.device
            if context.hour_of_day is not None:
                ctx["hour"] = context.hour_of_day
            if context.day_of_week is not None:
                ctx["day_of_week"] = context.day_of_week
        decision = self.arbiter.decide(
            cid,
            channel,
            now,
            dict(zip(self.offer_ids, scored.p[i].tolist(), strict=True)),
            features=self._rule_inputs(position),
            context=ctx,
            churn_probability=float(scored.churn[i]),
            customer_value=float(scored.value[i]),
            k=k,
            rng=_seed(cid, channel, now),
            consents=self.consents,
            model_versions=versions,
            fallback=fallback,
            decision_id=decision_id,
            reserve=reserve,
            history=history,
        )
        if explain and self._explainable(decision, scored, i):
            decision = self._explain_many([decision], scored, [i])[0]
        return decision

    def _explainable(self, decision: Decision, scored: _Scored, i: int) -> bool:
        return bool(decision.offers) and scored.models is not None and scored.positions[i] >= 0 and scored.X is not None

    def _explain_many(self, decisions: list[Decision], scored: _Scored, indices: Sequence[int]) -> list[Decision]:
        """Prepend the top-3 contributions (log-odds) of each shown offer to its reasons.

        One explainer call for all the decisions (batch scoring); attributions are per row, so the
        result is the same as one call per decision.
        """
        models = scored.models
        assert models is not None and scored.X is not None
        known = np.flatnonzero(scored.positions >= 0)
        n_o = len(self.offer_ids)
        where = self._offer_column
        rows = [
            int(np.searchsorted(known, i)) * n_o + where[s.offer_id]
            for decision, i in zip(decisions, indices, strict=True)
            for s in decision.offers
        ]
        explainer = models.explainer or models.propensity.model  # type: ignore[attr-defined]
        # Blocks bound the explainer's (rows x trees x features) temporary.
        contrib = np.concatenate(
            [explainer.contributions(scored.X[rows[lo : lo + 1024]])[:, :-1] for lo in range(0, max(len(rows), 1), 1024)]
        ) if rows else np.zeros((0, scored.X.shape[1]))
        names = models.propensity.feature_names  # type: ignore[attr-defined]
        out: list[Decision] = []
        at = 0
        for decision in decisions:
            shown: list[ShownOffer] = []
            for s in decision.offers:
                c = contrib[at]
                at += 1
                top = np.argsort(-np.abs(c), kind="stable")[:3]
                reasons = [f"{names[j]}:{float(c[j]):+.4g}" for j in top] + s.reasons
                shown.append(s.model_copy(update={"reasons": reasons}))
            out.append(decision.model_copy(update={"offers": shown}))
        return out

    # ---------------------------------------------------------------- public API
    def decide(
        self,
        customer_id: str,
        channel: str,
        context: Context | Mapping[str, object] | None = None,
        now: datetime | None = None,
        k: int = 3,
        reserve: bool = True,
        decision_id: str | None = None,
    ) -> Decision:
        """Up to `k` offers for one customer on one channel at `now` (naive UTC; default: the clock).

        Raises `StoreUnavailable` when the contact store fails (and, for `store_retry_s` after a
        failure, without trying it): no offer is ever returned that the store did not record.
        """
        now = _naive_utc(now)
        ctx = _context(channel, context)
        with self._store_call():
            # One store read for the features' contact rows and the caps' history (one SQLite
            # transaction instead of two); the reservation re-checks the caps atomically.
            state = self.store.read_customer(customer_id, now)
            scored = self._score([customer_id], channel, ctx, now, self._models, recent=state.rows)
            return self._arbitrate(scored, 0, channel, ctx, now, k, reserve, decision_id, history=state.history)

    @contextlib.contextmanager
    def _store_call(self) -> Iterator[None]:
        """Turn store failures into `StoreUnavailable`; skip the store for a while after one (breaker)."""
        if self._store_retry_at and time.monotonic() < self._store_retry_at:
            raise StoreUnavailable("backoff", "contact store unavailable (recent failure; retrying shortly)")
        try:
            yield
        except STORE_ERRORS as exc:
            self._store_retry_at = time.monotonic() + self.store_retry_s
            cause = _store_cause(exc)
            log.warning("contact store unavailable (%s): %s", cause, type(exc).__name__)
            raise StoreUnavailable(cause, f"contact store unavailable ({cause})") from exc
        self._store_retry_at = 0.0

    def batch_decide(
        self,
        customer_ids: Sequence[str],
        channel: str,
        now: datetime,
        contexts: Mapping[str, Context | Mapping[str, object]] | None = None,
        k: int = 1,
        reserve: bool = False,
    ) -> list[Decision]:
        """`decide` for a chunk of customers: features and scores computed once for the chunk.

        `contexts` maps customer id -> context (absent: only the channel is known). The answers
        are those `decide` gives for each customer at the same `now` and store state
        (`reserve=False` by default: batch scoring proposes, it does not record).
        """
        now = _naive_utc(now)
        ids = list(customer_ids)
        per = {c: _context(channel, (contexts or {}).get(c)) for c in ids}
        models = self._models
        # Without contexts every customer has the same one: the features take it once for the chunk.
        scored = self._score(ids, channel, _context(channel, None) if not contexts else per, now, models)
        decisions = [self._arbitrate(scored, i, channel, per[c], now, k, reserve, None, explain=False) for i, c in enumerate(ids)]
        todo = [i for i, d in enumerate(decisions) if self._explainable(d, scored, i)]
        if todo:
            for i, d in zip(todo, self._explain_many([decisions[i] for i in todo], scored, todo), strict=True):
                decisions[i] = d
        return decisions

    def record_outcome(self, decision_id: str, offer_id: str, outcome: str, now: datetime | None = None) -> bool:
        """Record feedback (committed when this returns); `StoreUnavailable` if the store failed."""
        with self._store_call():
            return self.store.record_outcome(decision_id, offer_id, outcome, _naive_utc(now))

    def forget(self, customer_id: str) -> int:
        """Erase the customer's contact history and decision log from the store (GDPR)."""
        with self._store_call():
            return self.store.forget(customer_id)

    def close(self) -> None:
        self.store.close()


def _optional_table(directory: Path, table: str) -> pd.DataFrame:
    """The table, or an empty one when the directory has no file for it. A file that is there but
    unreadable (truncated, wrong types) is an error: read as "absent", a truncated contacts file
    would silently drop every customer's contact history from the caps' and features' view."""
    if not any((directory / f"{table}.{ext}").exists() for ext in ("parquet", "csv")):
        return empty_table(table)
    return load_table(directory, table)


def _naive_utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(tzinfo=None)
    if isinstance(now, pd.Timestamp):
        now = now.to_pydatetime()
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    return now


def _context(channel: str, context: Context | Mapping[str, object] | None) -> Context:
    if context is None:
        return Context(channel=channel)  # type: ignore[arg-type]
    if isinstance(context, Context):
        if context.channel != channel:
            return context.model_copy(update={"channel": channel})
        return context
    return Context(channel=channel, **{k: v for k, v in context.items() if k != "channel"})  # type: ignore[arg-type]


def _seed(customer_id: str, channel: str, now: datetime) -> int:
    digest = hashlib.blake2b(f"{customer_id}|{channel}|{now.isoformat()}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "little")

"""The decision engine: one customer (or a chunk of customers) -> scored, arbitrated offers.

Plain Python, no HTTP. The real-time service calls `DecisionEngine.decide` per request, which
reads the customer's contact state (`ContactDesk`), runs the decision pipeline on one row
(`serving.pipeline.decide_block`) and reserves; batch scoring runs the same pipeline on chunks,
so a customer scored online and in batch (same `now`, same store state) gets the same offers,
scores and propensities.

Per customer:

1. Candidate features through the features package's online path (`candidate_matrix`): the
   customer's materialised row, the request's `Context` and the live contact history (the
   `contacts` table of the data directory plus what the contact store recorded since).
2. `p_accept` from the propensity champion (one float32 matrix, one thread).
3. `churn_probability` from the churn champion on the materialised row (computed once per model
   load for every materialised customer, vectorised).
4. `customer_value` = `spend_365d` of the materialised row (currency units): the trailing year's
   spend, our estimate of what one more year of the relationship is worth. 0 without a row.
5. `Arbiter.arbitrate_block` (consent, caps, eligibility, expected value, exploration), then the
   reservation (`ContactDesk.reserve`).
6. `reasons`: the three largest SHAP contributions (log-odds) of each *shown* offer, then the
   arbiter's own reasons.

Exploration draws are seeded by (customer_id, channel, now) (`draws.decision_seed`): random across
customers and moments, reproducible for one of them, which is what makes online == batch testable.

Fallback (`Decision.fallback = True`): when the models are unavailable, or the customer has no
materialised row (cold start), every offer gets its smoothed historical acceptance rate from the
contacts table (`popularity`). The arbiter still applies consent, caps, validity, channel and
eligibility (a rule on an unknown customer's features is unknown, hence false).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features import (
    CANDIDATE_FEATURES,
    CUSTOMER_FEATURES,
    Context,
    check_feature_set,
    customer_feature_names,
    materialised_meta,
    read_materialised,
)
from features.incentives import INCENTIVE_FEATURES
from models.tracking import CHAMPION, UPLIFT_MODEL
from nbo.data import empty_table, table_columns
from nbo.errors import NboError
from nbo.table_cache import load_table_cached
from serving.champions import Models, ReloadResult, check_model, probabilities_ok, propensity_inputs
from serving.contact_store import ConsentBook, ContactStore
from serving.contact_store.base import CustomerState, LiveEvent
from serving.contact_store.errors import StoreUnavailable, store_cause, store_errors
from serving.settings import EngineSettings, latest_features_file, open_store
from serving.policy import ContactPolicy, load_policy
from serving.decision import Decision
from serving.live import (
    IngestResult,
    LiveFeatures,
    LiveInputError,
    LiveLimits,
    check_time,
    compact,
    ingest,
    state_key,
    utc_time,
)
from serving.pipeline import CustomerBlock, DecisionBlock, as_context, decide_block
from serving.catalogue import compile_offer_rules
from serving.ranking import Arbiter
from serving.send_time import SendTimes, customer_timezones
from serving.reservation import ContactDesk
from serving.scoring import Scored, Scorer

log = logging.getLogger(__name__)

__all__ = ["DecisionEngine", "Scored", "naive_utc", "require_uplift_champion"]

#: The uplift model's possible inputs: the candidate features, then the incentive columns.
UPLIFT_INPUTS: tuple[str, ...] = (*CANDIDATE_FEATURES, *INCENTIVE_FEATURES)
class DecisionEngine:
    """Everything a decision needs, built once; `decide` and `decide_block` are thread-safe."""

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
        customer_ids: Iterable[str] | None = None,
        timezones: Mapping[str, str] | None = None,
    ) -> None:
        self.policy = policy
        self.store = store
        self.settings = settings
        self.explain = explain or (settings.explain if settings is not None else "path")
        self.features_as_of = pd.Timestamp(features_as_of)
        self._client = client
        self._reload_lock = threading.Lock()
        offers = offers.reset_index(drop=True)
        rules = compile_offer_rules(offers, customer_feature_names())
        rule_names = sorted({n for r in rules.values() for n in r.names} & set(customer_feature_names()))
        self.scorer = Scorer(offers, contacts, features, rule_names)
        self.offers = self.scorer.offers
        self.offer_ids = self.scorer.offer_ids
        self.arbiter = Arbiter(policy, self.offers, rules, timezones)
        self.desk = ContactDesk(self.arbiter, store)
        self.consents = ConsentBook(consents)
        #: The data's customers (`customers` table): who `POST /consents` and `/events` may name.
        self._known: frozenset[str] = frozenset(str(c) for c in customer_ids) if customer_ids is not None else frozenset()
        #: Customers' IANA time zones (`customers.timezone`, where known): quiet hours and send hours.
        self.timezones: Mapping[str, str] = dict(timezones or {})
        self.live_limits = LiveLimits() if settings is None else LiveLimits(settings.live_max_past_days, settings.live_max_skew_s)
        #: Live features (events posted while nbo runs); set by `from_settings`, None = off.
        self.live: LiveFeatures | None = None
        self._send_times: SendTimes | None = None  # built on first use (`send_times`)
        self._send_times_lock = threading.Lock()
        self._models: Models | None = None
        if models is not None:
            self._models = models
        self.models_error: str | None = None
        self.store_retry_s = settings.store_retry_s if settings is not None else 1.0
        self._store_retry_at = 0.0  # monotonic time before which the store is not tried again
        self._compiling: threading.Thread | None = None  # the last background compilation (tests join it)
        #: Called after compiled forests replaced the boosters (the service freezes the new heap).
        self.on_models_swapped: Callable[[], None] | None = None
        #: Background compilations wait for this event when set (`from_settings(compile_after=...)`).
        self.compile_after: threading.Event | None = None

    def with_features(self, features: pd.DataFrame) -> DecisionEngine:
        """This engine over other materialised rows (a batch-scoring chunk of the same feature set).

        Shares policy, catalogue, consents, contacts, store and models; only the per-customer
        arrays and the churn probabilities (the churn champion on these rows) are new. Lets batch
        scoring stream a features file in chunks instead of holding it whole.
        """
        view = copy.copy(self)
        view.scorer = self.scorer.with_features(features)
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
        models: tuple[object, ...] | None = None,
        compile_in_background: bool = False,
        compile_after: threading.Event | None = None,
        live: bool = True,
    ) -> DecisionEngine:
        """Load policy, catalogue, consents, contacts, features, store and the champion models.

        Models that cannot be loaded leave the engine in fallback mode (`models_error` says why);
        `reload()` keeps trying. `features`: rows of the settings' features file to hold instead of
        the whole file (batch scoring streams the rest through `with_features`). `models`: the
        (propensity, churn) pair, or (propensity, churn, uplift), already loaded elsewhere (batch workers get the driver's pair
        instead of each loading the champions from the registry). `compile_in_background`: start
        serving with the boosters and swap in the compiled forests when a thread has compiled them
        (the service: ready in seconds instead of after ~30 s of LLVM); else compile before returning.
        `compile_after`: the background compilation waits for this event (the service sets it once
        it answers, so that loading lleaves and the forests does not delay its first answer).
        `live=False`: an engine that only decides blocks (batch scoring: `decide_block`, no
        `decide`): no live features and no customers table, which are what `decide` and live input
        (`POST /events`, `/consents`) read. Each was indexed per customer in every process: with
        1,000,000 customers ~0.4 GB and ~5 s of CPU per process (docs/batch.md).

        A policy with `arbitration.objective = "uplift"` also loads the uplift champion
        (`settings.uplift_model`), and the engine refuses to start (NboError) without it or when
        the models cannot be loaded: there is no fallback that could value a contact.
        """
        policy = load_policy(settings.policy_path) if settings.policy_path else ContactPolicy()
        cache = settings.table_cache  # tables read and validated once for all processes (nbo.table_cache)
        offers = load_table_cached(settings.data_dir, "offers", cache)
        consents = _optional_table(settings.data_dir, "consents", cache)
        # Batch engines read the customers table only for their time zones (per-customer quiet hours).
        zoned = "timezone" in table_columns(settings.data_dir, "customers")
        customers = load_table_cached(settings.data_dir, "customers", cache) if live or zoned else None
        contacts = _optional_table(settings.data_dir, "contacts", cache)
        if features is None:
            frame, meta = read_materialised(latest_features_file(settings.features_path))
        else:
            frame, meta = features, materialised_meta(latest_features_file(settings.features_path))
        check_feature_set(meta)
        store = open_store(settings.store, settings.store_horizon_days, settings.store_timeout_s, settings.store_checkpoint_s,
                           settings.store_cache_mib)
        store.check_policy(policy)
        if settings.seed_history:
            seed_store(store, contacts, offers)
        engine = cls(
            policy=policy,
            offers=offers,
            consents=consents,
            contacts=contacts,
            features=frame,
            features_as_of=meta["as_of"],  # type: ignore[arg-type]
            store=store,
            settings=settings,
            customer_ids=customers["customer_id"] if live else None,
            timezones=customer_timezones(customers) if customers is not None else {},
        )
        engine.compile_after = compile_after
        if live:
            engine.live = LiveFeatures(settings.data_dir, customers, consents, refresh_s=settings.live_refresh_s,
                                       table_cache=cache)
        by_uplift = policy.arbitration.objective == "uplift"
        if models is not None:
            engine._models = engine.build_models(models[0], models[1], uplift=models[2] if len(models) > 2 else None)
            if by_uplift and engine._models.uplift is None:
                raise NboError("arbitration.objective is 'uplift' but no uplift model was given to the engine")
        elif load_models:
            if by_uplift:  # decisions by incremental value need the uplift champion: refuse to start without one
                require_uplift_champion(settings.tracking_uri, settings.uplift_model, settings.alias)
            result = engine.reload(force=True, compile_now=not compile_in_background, prepared=True)
            if not result.ok:
                if by_uplift:
                    engine.close()
                    raise NboError(f"arbitration.objective is 'uplift' and the models could not be loaded: {result.message}")
                log.warning("models unavailable at start, serving the popularity fallback: %s", result.message)
        return engine

    # ---------------------------------------------------------------- customers
    @property
    def features(self) -> pd.DataFrame:
        """The materialised customer rows this engine holds (indexed by customer_id)."""
        return self.scorer.features

    @property
    def popularity(self) -> np.ndarray:
        """The fallback's p_accept per catalogue offer."""
        return self.scorer.popularity

    def positions(self, customer_ids: Sequence[str]) -> np.ndarray:
        """Row of each customer in the materialised frame, -1 = unknown (cold start)."""
        return self.scorer.positions(customer_ids)

    def rule_inputs(self, position: int) -> dict[str, object] | None:
        """The values the eligibility rules read of the customer at `position` (None: unknown)."""
        return self.scorer.rule_inputs(position)

    def score(
        self,
        customer_ids: Sequence[str],
        channel: str,
        contexts: Context | Mapping[str, Context] | None,
        now: datetime,
        models: Models | None,
        contact_rows: Mapping[str, list[dict[str, object]]] | None = None,
    ) -> Scored:
        """`Scorer.score` of these customers (the caller reads their `contact_rows`)."""
        return self.scorer.score(customer_ids, channel, contexts, now, models, contact_rows)

    # ---------------------------------------------------------------- models
    @property
    def models(self) -> Models | None:
        return self._models

    @property
    def ready(self) -> bool:
        """True once the engine can answer (with models, or with the documented fallback)."""
        return True

    def build_models(self, propensity: object, churn: object, compile_models: bool | None = None,
                     uplift: object | None = None) -> Models:
        """Check feature sets and names, score a sample, precompute churn for every customer.

        `compile_models` (default: the settings'): also compile both forests (`with_compiled`)
        before returning; reloads compile afterwards, in the background, instead. `uplift`: the
        uplift champion (`models.registry.LoadedModel`), checked against the candidate and
        incentive columns and scored on the sample too; it scores with its boosters.
        """
        columns = check_model(propensity, propensity_inputs(propensity), "candidate")
        uplift_columns = None if uplift is None else check_model(uplift, UPLIFT_INPUTS, "candidate or incentive")
        churn_X = self._churn_inputs(churn)
        churn_p = np.asarray(churn.model.predict_proba_positive(churn_X), dtype=np.float64)  # type: ignore[attr-defined]
        if not probabilities_ok(churn_p):
            raise NboError(f"{churn.label} gives probabilities outside [0, 1] or not finite")  # type: ignore[attr-defined]
        explainer = propensity.model.path_explainer() if self.explain == "path" else None  # type: ignore[attr-defined]
        models = Models(propensity, churn, columns, churn_p, explainer,
                        scoring={"propensity": "not compiled", "churn": "not compiled"},
                        offers=self.scorer.prepared_for(propensity.model.vocabulary),  # type: ignore[attr-defined]
                        uplift=uplift, uplift_columns=uplift_columns)
        sample = self._sample_scores(models)
        if sample is not None and not probabilities_ok(sample.p.ravel()):
            raise NboError(f"{propensity.label} gives probabilities outside [0, 1] or not finite on a sample")  # type: ignore[attr-defined]
        if sample is not None and sample.tau is not None:
            known = sample.tau[sample.positions >= 0]
            if not (np.all(np.isfinite(known)) and np.all(np.abs(known) <= 1.0)):
                raise NboError(f"{uplift.label} gives incremental conversions outside [-1, 1] or not finite on a sample")  # type: ignore[attr-defined]
        if self._compile_wanted if compile_models is None else compile_models:
            models = self.with_compiled(models, sample)
        return models

    def _churn_inputs(self, churn: object) -> np.ndarray:
        """The materialised customer rows in the churn model's column order."""
        columns = check_model(churn, CUSTOMER_FEATURES, "customer")
        matrix = self.scorer.customer_matrix
        return matrix if columns is None else matrix[:, columns]

    @property
    def _compile_wanted(self) -> bool:
        return self.settings.compile_models if self.settings is not None else False

    def _sample_scores(self, models: Models) -> Scored | None:
        """Scores of the first 20 customers x every offer, without the store's contacts (a reload
        must not depend on the store being up)."""
        sample = self.features.index[: min(20, len(self.features))].tolist()
        if not sample:
            return None
        return self.score(sample, "web", None, self.features_as_of.to_pydatetime(), models)

    def with_compiled(self, models: Models, sample: Scored | None = None) -> Models:
        """`models` scoring with their forests compiled (models.compiled), each checked against
        the booster on a sample (`sample`: `_sample_scores(models)` when already computed); a
        model that fails keeps its booster. Takes seconds per model."""
        churn_X = self._churn_inputs(models.churn)
        cache = self.settings.compiled_cache if self.settings is not None else None
        churn_predict, churn_how = models.churn.model.fast_predictor(churn_X[:500], models.churn.label, cache)  # type: ignore[attr-defined]
        sample = sample if sample is not None else self._sample_scores(models)
        X = sample.X if sample is not None else None
        predict, how = models.propensity.model.fast_predictor(X, models.propensity.label, cache)  # type: ignore[attr-defined]
        log.info("%s: %s; %s: %s", models.propensity.label, how, models.churn.label, churn_how)  # type: ignore[attr-defined]
        # Churn of every customer again, by the predictor batch chunks use (`with_features`): equal
        # to ~1e-16, but online and batch must agree to the last bit.
        churn_p = np.asarray(churn_predict(churn_X), dtype=np.float64)
        return dataclasses.replace(models, predict_propensity=predict, predict_churn=churn_predict,
                                   churn_probability=churn_p, scoring={"propensity": how, "churn": churn_how})

    def _compile_in_background(self, models: Models) -> threading.Thread:
        """Compile `models` off the request path; swap them in only if they are still the ones in use."""

        def work() -> None:
            if self.compile_after is not None:
                self.compile_after.wait()
            try:
                compiled = self.with_compiled(models)
            except Exception:  # noqa: BLE001 - the boosters keep serving
                log.exception("compiling %s failed; the booster keeps serving", models.propensity.label)  # type: ignore[attr-defined]
                return
            with self._reload_lock:
                if self._models is not models:
                    return
                self._models = compiled
            log.info("%s and %s now score with %s, %s", models.propensity.label, models.churn.label,  # type: ignore[attr-defined]
                     compiled.scoring["propensity"], compiled.scoring["churn"])
            if self.on_models_swapped is not None:
                self.on_models_swapped()

        thread = threading.Thread(target=work, name="nbo-compile", daemon=True)
        thread.start()
        self._compiling = thread
        return thread

    def reload(self, force: bool = False, *, compile_now: bool = False, prepared: bool = False) -> ReloadResult:
        """Load the champions if their versions changed (or `force`); swap atomically on success.

        On any failure the models in use keep serving and the result says why. The new pair
        serves with its boosters at once and with compiled forests a few seconds later (a thread
        compiles them) unless `compile_now`: then this returns only after compiling. `prepared`
        (the start and the service's periodic check): read the aliases from the registry's SQLite
        file (`models.prepared`) when it can, instead of MLflow, which is then imported only to
        load a version not prepared yet. With `settings.prepared_champions`, a version prepared by an earlier
        load is read from its pickle, and one loaded from MLflow is prepared for the next start.
        """
        if self.settings is None:
            return ReloadResult(False, True, "engine built without settings: nothing to reload")
        with self._reload_lock:
            try:
                names: tuple[str, ...] = (self.settings.propensity_model, self.settings.churn_model)
                if self.policy.arbitration.objective == "uplift":
                    names = (*names, self.settings.uplift_model)
                wanted = self._champion_versions(names, prepared)
                missing = [n for n, v in wanted.items() if v is None]
                if missing:
                    raise NboError(f"no @{self.settings.alias} for {', '.join(missing)} in {self.settings.tracking_uri}")
                current = self._models
                if current is not None and not force:
                    now = {m.name: m.version for m in current.loaded}  # type: ignore[attr-defined]
                    if now == wanted:
                        return ReloadResult(False, True, "champions unchanged", current.versions)
                prop = self._champion(names[0], wanted[names[0]])  # type: ignore[arg-type]
                churn = self._champion(names[1], wanted[names[1]])  # type: ignore[arg-type]
                uplift = None
                if len(names) > 2:  # the uplift champion (arbitration by incremental value): from MLflow
                    from models.registry import load_model

                    uplift = load_model(self._mlflow(), names[2], version=wanted[names[2]],  # type: ignore[arg-type]
                                        check_requirements=False, kind="uplift")
                models = self.build_models(prop, churn, compile_models=compile_now and self._compile_wanted, uplift=uplift)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old models serving
                message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                self.models_error = message
                return ReloadResult(False, False, message, self._models.versions if self._models else {})
            self._models = models  # one reference assignment: requests see the old or the new pair
            self.models_error = None
            log.info("serving %s", ", ".join(models.versions.values()))
        if self._compile_wanted and not compile_now:
            self._compile_in_background(models)
        return ReloadResult(True, True, "loaded", models.versions)

    def _mlflow(self) -> object:
        """The MLflow client of the settings' tracking store (imports MLflow the first time)."""
        if self._client is None:
            from models.tracking import resolve_tracking

            self._client = resolve_tracking(self.settings.tracking_uri).activate()  # type: ignore[union-attr]
        return self._client

    def _champion_versions(self, names: tuple[str, ...], prepared: bool) -> dict[str, str | None]:
        """{name: version of the alias, None if none}: from the registry's SQLite file when
        `prepared` and it can answer (`models.prepared.aliased_versions`), else from MLflow."""
        settings = self.settings
        assert settings is not None
        if prepared and settings.prepared_champions is not None:
            from models.prepared import aliased_versions

            found = aliased_versions(settings.tracking_uri, names, settings.alias)
            if found is not None:
                return dict(found)
        from models.tracking import version_by_alias

        client = self._mlflow()
        return {n: version_by_alias(client, n, settings.alias) for n in names}  # type: ignore[arg-type]

    def _champion(self, name: str, version: str) -> object:
        """One champion: its prepared pickle when there is one, else from MLflow (then prepared)."""
        from models.registry import load_model

        settings = self.settings
        assert settings is not None
        store = None
        if settings.prepared_champions is not None and settings.tracking_uri:
            from models.prepared import PreparedChampions

            store = PreparedChampions(settings.prepared_champions)
            loaded = store.get(settings.tracking_uri, name, version)
            if loaded is not None:
                return loaded
        # The service's environment is pinned (constraints.txt): MLflow's package-by-package
        # requirement comparison (~0.8 s per model) is skipped; the feature set is checked.
        loaded = load_model(self._mlflow(), name, version=version, check_requirements=False)  # type: ignore[arg-type]
        if store is not None:
            store.put(settings.tracking_uri, loaded)  # type: ignore[arg-type]
        return loaded

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
        now = naive_utc(now)
        with self._store_call():
            # One store read for the features' contact rows and the caps' history (one SQLite
            # transaction instead of two); the reservation re-checks the caps atomically.
            state = self.desk.read_customer(customer_id, now)
            return self._decide_state(customer_id, state, channel, context, now, k, reserve, decision_id)

    def _decide_state(
        self, customer_id: str, state: CustomerState, channel: str, context: Context | Mapping[str, object] | None,
        now: datetime, k: int, reserve: bool, decision_id: str | None = None,
    ) -> Decision:
        """`decide` on the customer's state read already (`read_customer` at `now`); the caller
        turns store failures into `StoreUnavailable` (`_store_call`)."""
        if state.forgotten:  # erased, maybe through another worker: drop our in-memory copy too
            self._drop(customer_id)
        # Events posted while nbo runs: this customer's row recomputed with them (cached).
        engine = self._live_view(customer_id, state, now) if state.events and not state.forgotten else self
        block = engine.decide_block(
            CustomerBlock([customer_id], {customer_id: state.history}, {customer_id: state.rows},
                          {customer_id: state.consents} if state.consents else {},
                          frozenset((customer_id,)) if state.forgotten else frozenset()),
            channel, now, as_context(channel, context), k)
        decision = block.decision(0, decision_id)
        # An erased customer's decision is answered, never recorded: nothing personal is written
        # again (it offers nothing on outbound channels, where only a record could cap it).
        return self.desk.reserve(decision, now) if reserve and not state.forgotten else decision

    def decide_many(
        self,
        requests: Sequence[tuple[str, Context | Mapping[str, object] | None]],
        channel: str,
        now: datetime | None = None,
        k: int = 3,
        reserve: bool = True,
    ) -> list[Decision | StoreUnavailable]:
        """`decide` for several distinct customers (with their own contexts) on one channel at one
        `now`, in one pass of the pipeline: the service's micro-batch (docs/service.md §7).

        Row i is what `decide(requests[i]...)` gives at this `now`: each customer's read, picks and
        reservation are its own (caps are per customer), the pipeline is the same, reservations run
        in order. The customers' states are read in one store call (`read_customers`) and the
        block's decisions reserved in one (`ContactDesk.reserve_block`). A customer with posted
        events or erased takes `decide`'s one-customer path (`_decide_state`) on the state read
        with the block's, not read a second time. A store failure answers with the
        `StoreUnavailable`: a failed read every row, a failed block reservation every row of the
        block (nothing of it was recorded), and the rows after it meet the breaker as `decide`
        would. Raises ValueError for a customer given twice: its second decision must see the
        first's reservation, so it belongs to the next call.
        """
        return self.decide_groups([(channel, k, requests)], now, reserve)[0]

    def decide_groups(
        self,
        groups: Sequence[tuple[str, int, Sequence[tuple[str, Context | Mapping[str, object] | None]]]],
        now: datetime | None = None,
        reserve: bool = True,
    ) -> list[list[Decision | StoreUnavailable]]:
        """`decide_many` of several blocks (channel, k, requests) at one `now`: one pipeline pass
        per block, but every block's customers read in one store call and every block's decisions
        reserved in one (the worker's turn of micro-batches, one block per channel: one read and
        one write transaction instead of one each per block). The customers are distinct across
        all the blocks, so each answer is the one `decide_many` of its block gives (and `decide`);
        a failed read or block reservation answers every row of every block with the
        `StoreUnavailable`. Raises ValueError for a customer given twice."""
        now = naive_utc(now)
        ids = [c for _, _, requests in groups for c, _ in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("decide_many: a customer given twice; decide the second after the first")
        if not ids:
            return [[] for _ in groups]
        try:
            with self._store_call():  # every customer's state in one store read
                states = self.desk.read_customers(ids, now)
        except StoreUnavailable as exc:
            return [[exc] * len(requests) for _, _, requests in groups]
        out: list[list[Decision | StoreUnavailable | None]] = []
        decided: list[Decision] = []
        where: list[tuple[int, int]] = []  # (block, row) of each of `decided`
        at = 0
        for g, (channel, k, requests) in enumerate(groups):
            mine = states[at : at + len(requests)]
            at += len(requests)
            out.append([None] * len(requests))
            plain = [i for i, s in enumerate(mine) if not s.events and not s.forgotten]
            if not plain:
                continue
            block_ids = [requests[i][0] for i in plain]
            block = self.decide_block(
                CustomerBlock(block_ids, {requests[i][0]: mine[i].history for i in plain},
                              {requests[i][0]: mine[i].rows for i in plain},
                              {requests[i][0]: mine[i].consents for i in plain if mine[i].consents}),
                channel, now, {requests[i][0]: as_context(channel, requests[i][1]) for i in plain}, k)
            decided += [block.decision(row) for row in range(len(plain))]
            where += [(g, i) for i in plain]
        if reserve and decided:  # every block's reservations in one store call (distinct customers: as one by one)
            try:
                with self._store_call():
                    decided = self.desk.reserve_block(decided, now)
            except StoreUnavailable as exc:
                decided = [exc] * len(decided)  # type: ignore[list-item]
        for (g, i), decision in zip(where, decided, strict=True):
            out[g][i] = decision
        at = 0
        for (channel, k, requests), answers in zip(groups, out, strict=True):
            for i, decision in enumerate(answers):
                if decision is None:  # posted events (its own features) or erased: the one-customer path,
                    try:              # on the state read above (not read again)
                        with self._store_call():
                            answers[i] = self._decide_state(requests[i][0], states[at + i], channel, requests[i][1],
                                                            now, k, reserve)
                    except StoreUnavailable as exc:
                        answers[i] = exc
            at += len(requests)
        return out  # type: ignore[return-value]

    def decide_block(
        self,
        customers: CustomerBlock,
        channel: str,
        now: datetime,
        ctx: Context | Mapping[str, Context] | None = None,
        k: int = 1,
    ) -> DecisionBlock:
        """The decision pipeline on a block of customers (`serving.pipeline.decide_block`); reads
        and reserves nothing."""
        return decide_block(self, customers, channel, now, ctx, k)

    @contextlib.contextmanager
    def _store_call(self) -> Iterator[None]:
        """Turn store failures into `StoreUnavailable`; skip the store for a while after one (breaker)."""
        if self._store_retry_at and time.monotonic() < self._store_retry_at:
            raise StoreUnavailable("backoff", "contact store unavailable (recent failure; retrying shortly)")
        try:
            yield
        except store_errors() as exc:
            self._store_retry_at = time.monotonic() + self.store_retry_s
            cause = store_cause(exc)
            log.warning("contact store unavailable (%s): %s", cause, type(exc).__name__)
            raise StoreUnavailable(cause, f"contact store unavailable ({cause})") from exc
        self._store_retry_at = 0.0

    def record_outcome(self, decision_id: str, offer_id: str, outcome: str, now: datetime | None = None) -> bool:
        """Record feedback (committed when this returns); `StoreUnavailable` if the store failed."""
        with self._store_call():
            return self.store.record_outcome(decision_id, offer_id, outcome, naive_utc(now))

    def forget(self, customer_id: str) -> int:
        """Erase the customer's contact history and decision log from the store (GDPR), and drop
        the customer from this engine's memory (materialised row, the data directory's contacts):
        the next decision for the id is the fallback of an unknown customer.

        The store records the id as forgotten (by hash), and `decide` drops a customer the store
        reports forgotten, so other workers and processes sharing the store obey on their next
        decision for the id, also after a restart that reloads the same features."""
        with self._store_call():
            n = self.store.forget(customer_id)
        self._drop(customer_id)
        return n

    def _live_view(self, customer_id: str, state: CustomerState, now: datetime) -> DecisionEngine:
        """This engine over the customer's live row (`LiveFeatures`): recomputed as of `now` when
        the posted events or consents changed, the models were reloaded, or the cached row is
        older than `live_refresh_s`; itself when live features are off or the row is empty."""
        if self.live is None:
            return self
        key = (state_key(state.events, state.consents), id(self._models))
        view = self.live.cached(customer_id, key, now)
        if view is None:
            contacts = self.scorer.live_contacts([customer_id], {customer_id: state.rows})
            row = self.live.row(customer_id, state.events, state.consents, contacts, now)
            view = self.with_features(row) if len(row) else self
            self.live.keep(customer_id, key, now, view)
        return view  # type: ignore[return-value]

    def ingest_events(self, events: Sequence[LiveEvent], now: datetime) -> IngestResult:
        """Append events to the contact store's event log, all or nothing, after `check_events`
        (`LiveInputError`, nothing written, on any bad event); the next decision of every worker
        for these customers recomputes their features with them."""
        if self.live is None:
            raise LiveInputError("events", "live events need an engine built from settings (a data directory)", 422)
        self.live.prepare()
        now = naive_utc(now)
        with self._store_call():
            result = ingest(self.store, events, self.knows, now, self.live_limits, self.live.horizon)
        if self.policy.programmes:
            result = dataclasses.replace(result, fired=len(self.run_programmes(events, now)))
        return result

    def send_times(self) -> SendTimes | None:
        """The send-hour chooser of the programmes (`serving.send_time.SendTimes`): every customer's
        engagement hours in the data directory's events, in their time zone, built once per engine
        (on first use; a new engine, as after a features refresh, builds its own). None when the
        engine has no data directory (`live` off)."""
        if self.live is None:
            return None
        with self._send_times_lock:
            if self._send_times is None:
                events = self.live.data_events()
                horizon = self.live.horizon
                as_of = self.features_as_of if horizon is None else max(self.features_as_of, pd.Timestamp(horizon) + pd.Timedelta(seconds=1))
                self._send_times = SendTimes.from_events(events, self.timezones, as_of)
            return self._send_times

    def run_programmes(self, events: Sequence[LiveEvent], now: datetime) -> list[object]:
        """The programmes a stored batch fires (`serving.programmes.on_events`): outbox rows. A
        failure here leaves the events recorded (the caller's answer stands) and is logged; the
        next sweep (`nbo programmes run`) fires what it missed (trigger keys are fired once)."""
        from serving.programmes import on_events

        try:
            return list(on_events(self, events, now))
        except Exception:  # noqa: BLE001 - the events are stored; the sweep retries the triggers
            log.exception("programmes: triggers of %d event(s) not evaluated; the next sweep retries", len(events))
            return []

    def outbox(self, status: str | None, since: datetime | None, after: int, limit: int) -> list[object]:
        """A page of the programmes' outbox (`ContactStore.outbox_page`); `StoreUnavailable` if the store failed."""
        with self._store_call():
            return list(self.store.outbox_page(status, None if since is None else naive_utc(since), after, limit))

    def ack_outbox(self, outbox_ids: list[int], status: str, now: datetime | None = None) -> dict[int, str]:
        """Mark pending outbox rows `sent` or `failed` (`ContactStore.outbox_ack`), then prune the
        rows settled longer ago than `outbox_retention_days` (also done by every sweep)."""
        now = naive_utc(now)
        with self._store_call():
            after = self.store.outbox_ack(outbox_ids, status, now)
            self.store.outbox_prune(now, self.policy.programme_settings.outbox_retention_days)
            return after

    def compact_events(self) -> int:
        """Drop from the store's event log the posted events the data directory holds now (at or
        before its last event: `serving.live.compact`); 0 without live features."""
        if self.live is None:
            return 0
        self.live.prepare()
        with self._store_call():
            return compact(self.store, self.live.horizon)

    def customer_view(self, customer_id: str, now: datetime | None = None) -> tuple[str, pd.Series | None]:
        """What the next decision knows of the customer: ("live", row) with posted events,
        ("materialised", row) without, ("unknown", None) for an unknown or erased id."""
        now = naive_utc(now)
        with self._store_call():
            state = self.desk.read_customer(customer_id, now)
        if state.forgotten:
            self._drop(customer_id)
            return "unknown", None
        engine = self._live_view(customer_id, state, now) if state.events else self
        pos = int(engine.positions([customer_id])[0])
        if pos < 0:
            return "unknown", None
        return ("live" if engine is not self else "materialised"), engine.features.iloc[pos]

    def _drop(self, customer_id: str) -> None:
        """Forget the customer in this process: materialised row and data contacts. The data's
        consents stay in memory (a withdrawal keeps binding until `nbo forget` erased the table
        and the service restarted); outbound channels are closed to an erased id anyway."""
        self.scorer.forget(customer_id)
        if self.live is not None:
            self.live.drop(customer_id)

    def knows(self, customer_id: str) -> bool:
        """A customer of the data (the `customers` table, or a materialised row) not erased here.
        (The store's erasure record is checked by the callers that write: `record_consent`.)"""
        return customer_id in self._known or self.scorer.positions([customer_id])[0] >= 0

    def record_consent(self, customer_id: str, channel: str, granted: bool, ts: datetime, now: datetime) -> bool:
        """Record a consent change at runtime in the contact store, for every worker and replica
        (their next decision for the customer reads it). `LiveInputError` (nothing written) for
        an unknown or erased customer or a time outside [now - max age, now + skew]; returns
        False when the same change was recorded before (idempotent)."""
        ts, now = utc_time("ts", ts), naive_utc(now)
        check_time("ts", ts, now, self.live_limits)
        if not self.knows(customer_id):
            raise LiveInputError("customer_id", "unknown customer (not in the data's customers table)", 404)
        with self._store_call():
            if self.store.forgotten(customer_id):
                self._drop(customer_id)
                raise LiveInputError("customer_id", "unknown customer (erased)", 404)
            return self.store.record_consent(customer_id, channel, granted, ts)

    def close(self) -> None:
        self.store.close()


def require_uplift_champion(tracking_uri: str | None, name: str = UPLIFT_MODEL, alias: str = CHAMPION) -> str:
    """The version of the uplift champion (`name@alias`); NboError, one line saying what to do,
    when the registry has none (`arbitration.objective = "uplift"` decides by the incremental
    value that model estimates: nothing else can stand in for it)."""
    from models.tracking import resolve_tracking, version_by_alias

    tracking = resolve_tracking(tracking_uri)
    version = version_by_alias(tracking.activate(), name, alias)
    if version is None:
        raise NboError(
            f"the policy arbitrates by incremental value (arbitration.objective = 'uplift') but {name} "
            f"has no @{alias} in {tracking.uri}: train and promote one (nbo train --model uplift, "
            "nbo promote --model uplift) or set objective = 'response'"
        )
    return version


def seed_store(store: ContactStore, contacts: pd.DataFrame, offers: pd.DataFrame) -> int:
    """Import the data's contact history into the store (issue 19 item 1): the caps and cooldowns
    then count a company's past contacts as if nbo had made them. Idempotent (`import_history`
    skips shows already imported), so every engine built from settings (each `nbo serve` worker,
    each `nbo score`) runs it. The shows within the store's horizon before the data's last contact
    are imported: every one a decision at or after the end of the data could count, whatever the
    clock (the wall clock of the service, a batch run's `--as-of`, a simulation's)."""
    if contacts.empty:
        return 0
    latest = pd.Timestamp(contacts["ts"].max()).to_pydatetime()
    # A customer erased with `forget` stays erased: their rows still in the data are not imported
    # again (only the horizon's customers are asked; one cheap store lookup each, at start).
    # The horizon's customers are the only ones worth asking about; which rows to import stays
    # `import_history`'s decision (one horizon rule, in the store).
    recent = contacts.loc[contacts["ts"] > pd.Timestamp(latest) - pd.Timedelta(days=store.horizon_days), "customer_id"]
    erased = [c for c in recent.unique().tolist() if store.forgotten(c)]
    if erased:
        contacts = contacts[~contacts["customer_id"].isin(erased)]
        log.info("%d erased customer(s) left out of the contact history import", len(erased))
    categories = dict(zip(offers["offer_id"].astype(str), offers["category"].astype(str), strict=True))
    n = store.import_history(contacts, categories, latest)
    if n:
        log.info("contact store seeded with %d shows of the data's contact history", n)
    return n


def _optional_table(directory: Path, table: str, cache: Path | None = None) -> pd.DataFrame:
    """The table, or an empty one when the directory has no file for it. A file that is there but
    unreadable (truncated, wrong types) is an error: read as "absent", a truncated contacts file
    would silently drop every customer's contact history from the caps' and features' view."""
    if not any((directory / f"{table}.{ext}").exists() for ext in ("parquet", "csv")):
        return empty_table(table)
    return load_table_cached(directory, table, cache)


def naive_utc(now: datetime | None) -> datetime:
    """`now` as naive UTC (default: the clock)."""
    if now is None:
        return datetime.now(UTC).replace(tzinfo=None)
    if isinstance(now, pd.Timestamp):
        now = now.to_pydatetime()
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    return now

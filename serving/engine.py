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
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features import (
    CANDIDATE_FEATURES,
    CUSTOMER_FEATURES,
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
from serving.champions import Models, ReloadResult, check_model, probabilities_ok
from serving.contact_store import ConsentBook, ContactHistory, ContactStore
from serving.contact_store.errors import STORE_ERRORS, StoreUnavailable, store_cause
from serving.settings import EngineSettings, latest_features_file, open_store
from serving.policy import ContactPolicy, load_policy
from serving.ranking import Arbiter, Decision, ShownOffer, compile_offer_rules

log = logging.getLogger(__name__)

FALLBACK_VERSION = "popularity"
#: Pseudo-count of the prior in the popularity fallback: an offer needs about this many finalised
#: contacts before its own acceptance rate outweighs the catalogue-wide one.
POPULARITY_PRIOR_WEIGHT = 20.0
_CONTACT_COLUMNS = ("customer_id", "offer_id", "channel", "ts", "outcome", "outcome_ts")


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
        columns = check_model(propensity, CANDIDATE_FEATURES, "candidate")
        churn_X = self._churn_inputs(churn)
        churn_p = np.asarray(churn.model.predict_proba_positive(churn_X), dtype=np.float64)  # type: ignore[attr-defined]
        if not probabilities_ok(churn_p):
            raise NboError(f"{churn.label} gives probabilities outside [0, 1] or not finite")  # type: ignore[attr-defined]
        explainer = propensity.model.path_explainer() if self.explain == "path" else None  # type: ignore[attr-defined]
        models = Models(propensity, churn, columns, churn_p, explainer,
                        scoring={"propensity": "not compiled", "churn": "not compiled"})
        sample = self._sample_scores(models)
        if sample is not None and not probabilities_ok(sample.p.ravel()):
            raise NboError(f"{propensity.label} gives probabilities outside [0, 1] or not finite on a sample")  # type: ignore[attr-defined]
        if self._compile_wanted if compile_models is None else compile_models:
            models = self.with_compiled(models, sample)
        return models

    def _churn_inputs(self, churn: object) -> np.ndarray:
        """The materialised customer rows in the churn model's column order."""
        columns = check_model(churn, CUSTOMER_FEATURES, "customer")
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
                from models.registry import load_model
                from models.tracking import resolve_tracking, version_by_alias

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
            cause = store_cause(exc)
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

"""The real-time service (BentoML 1.4): a thin HTTP layer over `serving.engine.DecisionEngine`.

Started by `nbo serve` (cli/serve.py), which passes the settings in the environment:
`NBO_SERVICE_SETTINGS` (JSON of `ServiceSettings`) and the API keys in `NBO_API_KEYS` or
`NBO_API_KEYS_FILE`. Nothing is read at import time; each worker reads them once, in
`Recommender.__init__` and `Guard.__init__`. See docs/service.md.

The rooms of the service: `api_models` (request and response bodies), `service_config` (settings
and keys), `guard` (the middleware in front of every route), `health` (store health, supervisor
watch), and this module (metrics and the endpoints).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import threading
import time
from datetime import datetime
from typing import Any

import bentoml
from bentoml.exceptions import InvalidArgument

from serving.api_models import (
    ConsentRequest,
    ConsentResponse,
    CustomerRequest,
    CustomerResponse,
    EventIn,
    EventsRequest,
    EventsResponse,
    FeedbackRequest,
    FeedbackResponse,
    ForgetRequest,
    ForgetResponse,
    OutboxAckRequest,
    OutboxAckResponse,
    RecommendRequest,
    RecommendResponse,
    ReloadRequest,
    ReloadResponse,
    RequestContext,
)
from serving.guard import WORKER, Guard
from serving.health import PROBE_ID, StoreHealth, watch_supervisor
from serving.heap import settle_heap
from serving.service_config import ServiceSettings

log = logging.getLogger("nbo.service")


# ------------------------------------------------------------------------------ metrics
@functools.cache
def _metrics() -> dict[str, Any]:
    """Prometheus counters, created in the worker (after BentoML set the multiprocess directory)."""
    from prometheus_client import Counter

    return {
        "decisions": Counter("nbo_decisions", "Decisions answered", ["channel"]),
        "offers": Counter("nbo_offers_served", "Offers returned to callers", ["channel"]),
        "suppressions": Counter("nbo_suppressions", "Candidates suppressed, by reason code", ["reason"]),
        "fallbacks": Counter("nbo_fallbacks", "Decisions made with the popularity fallback", ["cause"]),
        "reloads": Counter("nbo_model_reloads", "Champion models loaded after start"),
        "reload_failures": Counter("nbo_model_reload_failures", "Failed attempts to load new champions"),
        "feedback": Counter("nbo_feedback", "Feedback received", ["outcome", "known"]),
        "degraded": Counter("nbo_degraded", "Answers without offers because the contact store failed", ["cause"]),
        "store_refusals": Counter("nbo_store_unavailable", "Feedback, forget or consents refused (503): store failed", ["endpoint"]),
        "consents": Counter("nbo_consents", "Consent changes recorded at runtime", ["granted", "new"]),
        "events": Counter("nbo_events", "Events posted at runtime", ["outcome"]),
        "live_refusals": Counter("nbo_live_refused", "Live input (consents, events) refused with a 4xx", ["endpoint", "field"]),
        "outbox_acks": Counter("nbo_outbox_acks", "Outbox rows acknowledged by a reader", ["status"]),
    }


#: What /feedback, /forget and /consents answer when the store cannot record: the client should retry.
_STORE_DOWN_HEADERS = {"Retry-After": "1"}


def _store_down(what: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(
        {"error": f"contact store unavailable: {what} NOT recorded; retry later"}, status_code=503,
        headers=_STORE_DOWN_HEADERS,
    )


#: Loggers whose INFO lines a worker shows (its start phases, model loads and compilation).
STARTUP_LOGGERS = ("nbo.service", "serving.engine", "models.compiled")


# ------------------------------------------------------------------------------ the service
@bentoml.service(name="nbo", workers=2, traffic={"timeout": 2})
class Recommender:
    """POST /recommend, /feedback, /forget, /consents, /events, /customer, /outbox/ack, /admin/reload
    (and GET /outbox, through the Guard); BentoML adds health, metrics, OpenAPI."""

    def __init__(self) -> None:
        from serving.startup import loading_turn

        # First: a worker whose supervisor dies while it loads must not live on either.
        threading.Thread(target=watch_supervisor, args=(os.getppid(),), name="nbo-supervisor-watch", daemon=True).start()
        for name in STARTUP_LOGGERS:  # the start phases below are INFO lines (BentoML's root is WARNING)
            logging.getLogger(name).setLevel(logging.INFO)
        self.settings = ServiceSettings.from_env()
        self.metrics = _metrics()
        #: The per-decision counters' label children, looked up once each (`_count`).
        self._children: dict[tuple[str, str], Any] = {}
        # One worker loads at a time (serving.startup): the first is ready sooner on a busy machine.
        # The champions' compiled forests are loaded or compiled once this worker answers.
        self._answering = threading.Event()
        try:
            with loading_turn(self.settings.state_dir):
                self._load()
        finally:
            self._answering.set()
        self._thread = threading.Thread(target=self._reload_loop, name="nbo-reload", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        """Engine (data, features, store, champions) and warm-up; then this worker is ready."""
        from serving.contact_store.errors import store_errors
        from serving.engine import DecisionEngine
        from serving.settings import EngineSettings

        began = time.perf_counter()
        log.info("start: loading policy, catalogue, features, contact store and champions")
        # The champions serve with their boosters at once; their compiled forests (lleaves, ~3x
        # faster, same answers) replace them when a thread has compiled them: a start is seconds,
        # not the ~30 s of LLVM it took when compiling came first (benchmarks/bench_startup.py).
        self.engine = DecisionEngine.from_settings(EngineSettings.model_validate(self.settings.engine),
                                                   compile_in_background=True, compile_after=self._answering)
        self.engine.on_models_swapped = settle_heap
        self.store_health = StoreHealth(lambda: self.engine.store.read_customer(PROBE_ID, self.settings.now()), store_errors())
        if self.engine.models is None:
            self.metrics["reload_failures"].inc()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._marker = self.settings.state_dir / "reload-request"
        self._marker_seen = self._marker.stat().st_mtime if self._marker.exists() else 0.0
        self._stop = threading.Event()
        loaded = time.perf_counter()
        self._warm_up()
        WORKER["recommender"] = self  # the Guard answers /recommend through `decide`
        self._sweeper = self._start_sweeper()
        self._ready = True
        models = self.engine.models
        log.info("ready in %.1f s (engine %.1f s, warm-up %.1f s); models: %s", time.perf_counter() - began,
                 loaded - began, time.perf_counter() - loaded,
                 ", ".join(f"{k} {v}" for k, v in models.scoring.items()) if models else f"fallback ({self.engine.models_error})")

    def _start_sweeper(self) -> Any:
        """The programmes' sweep every `sweep_every_minutes` (serving/sweeper.py; one worker of all
        sharing the store at a time), or None when the policy asks for none."""
        from serving.policy import active_programmes

        every = self.engine.policy.programme_settings.sweep_every_minutes
        if every is None or not active_programmes(self.engine.policy):
            return None
        from serving.programmes import periodic_sweep
        from serving.sweeper import Sweeper

        log.info("programmes: sweeping every %g minute(s)", every)
        return Sweeper(periodic_sweep(self.engine), self.engine.store, every * 60.0, self.settings.now).start()

    def _warm_up(self) -> None:
        """Run a few decisions (nothing recorded), then freeze the heap so GC passes stay short."""
        from serving.contact_store.errors import StoreUnavailable

        now = self.settings.now()
        ids = self.engine.features.index[: self.settings.warmup_customers].tolist()
        try:
            for cid in ids:
                self.engine.decide(cid, "web", {"page_category": "travel", "device": "mobile"}, now, k=3, reserve=False)
            self.engine.decide("warm-up-unknown", "web", None, now, k=3, reserve=False)
        except StoreUnavailable as exc:  # start anyway: answers are degraded until the store is back
            log.warning("warm-up: %s", exc)
            self.engine._store_retry_at = 0.0
        if self.engine.live is not None:
            self.engine.live.prepare()  # the data's events, for live features: loaded now, not by a request
            try:  # posted events the data directory now holds (serving.live.compact): dropped from the log
                dropped = self.engine.compact_events()
                if dropped:
                    log.info("event log compacted: %d posted events at or before the data's last event dropped", dropped)
            except StoreUnavailable as exc:
                log.warning("event log compaction skipped: %s", exc)
                self.engine._store_retry_at = 0.0
        gc.collect()
        settle_heap()

    def _reload(self, force: bool = False) -> Any:
        # The champions' versions from the registry's SQLite file when it can answer (as at the
        # start): an unchanged champion, what nearly every check finds, then costs no MLflow. Asking
        # MLflow imported it and opened its SQL store in a worker that had started without it: a
        # ~70 MB heap step a minute after the start (issue 22 item 6, docs/service.md).
        result = self.engine.reload(force=force, prepared=True)
        if not result.ok:
            self.metrics["reload_failures"].inc()
            log.warning("model reload failed, previous models keep serving: %s", result.message)
        elif result.changed:
            self.metrics["reloads"].inc()
            settle_heap()
        return result

    def _reload_loop(self) -> None:
        next_check = time.monotonic() + self.settings.reload_interval_s
        while not self._stop.wait(1.0):
            requested = False
            try:
                mtime = self._marker.stat().st_mtime if self._marker.exists() else 0.0
            except OSError:
                mtime = self._marker_seen
            if mtime > self._marker_seen:
                self._marker_seen, requested = mtime, True
            if requested or time.monotonic() >= next_check:
                next_check = time.monotonic() + self.settings.reload_interval_s
                try:
                    self._reload()
                except Exception:  # noqa: BLE001 - the loop must survive anything
                    log.exception("reload loop error")

    def __is_ready__(self) -> bool:
        return getattr(self, "_ready", False)

    async def unready_cause(self) -> str | None:
        """None when ready; else why not (the contact store is down: answers are degraded)."""
        if not getattr(self, "_ready", False):
            return "starting: models and data not loaded yet"
        return await self.store_health.unready_cause()

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()
        if getattr(self, "_sweeper", None) is not None:
            self._sweeper.stop()  # a sweep in progress ends before the store closes
        self.engine.close()

    # -------------------------------------------------------------------------- endpoints
    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    async def recommend(
        self, customer_id: str, channel: str, k: int = 3, context: RequestContext | None = None,
        offer_attributes: dict[str, dict[str, float]] | None = None,
    ) -> RecommendResponse:
        """Up to `k` offers (or none) for this customer on this channel, now, with reasons."""
        return self.decide(customer_id, channel, k, context, offer_attributes)

    def decide(self, customer_id: str, channel: str, k: int, context: RequestContext | None,
               offer_attributes: dict[str, dict[str, float]] | None = None) -> RecommendResponse:
        """The /recommend handler (called by the Guard's fast path and by the BentoML route).

        Raises `bentoml.exceptions.InvalidArgument` (400) for attributes of an offer not in the catalogue."""
        from serving.contact_store.errors import StoreUnavailable

        ctx = self._context(channel, context, offer_attributes)
        try:
            decision = self.engine.decide(customer_id, channel, ctx, self.settings.now(), k=k, reserve=True)
        except StoreUnavailable as exc:
            decision = exc
        return self._answer(customer_id, channel, decision)

    def decide_many(self, requests: list[RecommendRequest]) -> list[RecommendResponse | Exception]:
        """/recommend for a micro-batch (`serving.guard`): distinct customers, one channel and `k`,
        no offer attributes, decided in one pipeline pass at one `now`
        (`DecisionEngine.decide_many`); each answer is the one `decide` gives it at that `now`.
        A row's exception is what `decide` would have raised for it."""
        return self.decide_blocks([requests])[0]

    def decide_blocks(self, blocks: list[list[RecommendRequest]]) -> list[list[RecommendResponse | Exception]]:
        """`decide_many` of each block (one per channel and `k`; customers distinct across all of
        them) at one `now`: one pipeline pass per block, one store read and one reservation for
        all (`DecisionEngine.decide_groups`).

        A lone request (every turn at low load) is `decide` itself: the same answer, and the
        one-customer read and reservation cost less than a block's (callgrind, docs/service.md §7:
        7.67 M instructions per decision by `decide_many` of one, 7.29 M by `decide`)."""
        if len(blocks) == 1 and len(blocks[0]) == 1:
            first = blocks[0][0]
            try:
                return [[self.decide(first.customer_id, first.channel, first.k, first.context)]]
            except Exception as exc:  # noqa: BLE001 - answered as `decide` would answer it
                return [[exc]]
        out: list[list[RecommendResponse | Exception]] = []
        groups = []
        rows: list[list[int]] = []
        for requests in blocks:
            answers: list[RecommendResponse | Exception] = []
            for r in requests:
                try:
                    answers.append(self._context(r.channel, r.context, None))
                except Exception as exc:  # noqa: BLE001 - answered as `decide` would answer it
                    answers.append(exc)
            mine = [i for i, c in enumerate(answers) if not isinstance(c, Exception)]
            groups.append((requests[0].channel, requests[0].k, [(requests[i].customer_id, answers[i]) for i in mine]))
            rows.append(mine)
            out.append(answers)
        decided = self.engine.decide_groups(groups, self.settings.now(), reserve=True)
        for requests, answers, mine, decisions in zip(blocks, out, rows, decided, strict=True):
            for i, decision in zip(mine, decisions, strict=True):
                answers[i] = self._answer(requests[i].customer_id, requests[i].channel, decision)
        return out

    def _context(self, channel: str, context: RequestContext | None,
                 offer_attributes: dict[str, dict[str, float]] | None) -> Any:
        """The request's `features.Context`; `InvalidArgument` for attributes of an unknown offer."""
        from features import Context
        from features.offer_attributes import check_offer_attributes
        from nbo.errors import NboError

        ctx = Context(channel=channel, **(context.model_dump(exclude_none=True) if context else {}))  # type: ignore[arg-type]
        if offer_attributes:
            try:
                check_offer_attributes(offer_attributes, self.engine.offer_ids)
            except NboError as exc:
                raise InvalidArgument(str(exc)) from None
            ctx = ctx.model_copy(update={"offer_attributes": offer_attributes})
        return ctx

    def _answer(self, customer_id: str, channel: str, decision: Any) -> RecommendResponse:
        """The response to a decision (or to the store's failure: degraded, no offer), counted in the metrics."""
        from serving.contact_store.errors import StoreUnavailable

        m = self.metrics
        if isinstance(decision, StoreUnavailable):
            # Fail closed: an offer the store could not record is never made.
            self.store_health.failed(decision.cause)
            self._count("decisions", channel)
            m["degraded"].labels(decision.cause).inc()
            return self._degraded(customer_id, channel)
        self.store_health.ok()
        self._count("decisions", channel)
        if decision.offers:
            self._count("offers", channel, len(decision.offers))
        counts: dict[str, int] = {}
        for s in decision.suppressed:
            counts[s.reason] = counts.get(s.reason, 0) + 1
        for reason, n in counts.items():
            self._count("suppressions", reason, n)
        versions = decision.model_versions
        if decision.fallback:
            self._count("fallbacks", "no_models" if self.engine.models is None else "cold_start")
        # The decision's objects are validated already: construct, do not validate again.
        return RecommendResponse.model_construct(
            decision_id=decision.decision_id,
            customer_id=customer_id,
            channel=channel,
            offers=decision.offers,
            suppressed=decision.suppressed,
            model_version=versions.get("propensity", versions.get("fallback", "")),
            model_versions=versions,
            fallback=decision.fallback,
            degraded=False,
        )

    def _count(self, metric: str, label: str, n: int = 1) -> None:
        """`self.metrics[metric].labels(label).inc(n)`, the label's child looked up once: `labels()`
        takes a lock and builds its key on every call (~1 us; a decision counts 3-8 times)."""
        child = self._children.get((metric, label))
        if child is None:
            child = self._children[(metric, label)] = self.metrics[metric].labels(label)
        child.inc(n)

    def _degraded(self, customer_id: str, channel: str) -> RecommendResponse:
        import uuid

        models = self.engine.models
        versions = models.versions if models is not None else {"fallback": "popularity"}
        return RecommendResponse(
            decision_id=uuid.uuid4().hex,
            customer_id=customer_id,
            channel=channel,
            offers=[],
            suppressed=[],
            model_version=versions.get("propensity", versions.get("fallback", "")),
            model_versions=versions,
            fallback=models is None,
            degraded=True,
        )

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest)
    async def feedback(self, decision_id: str, offer_id: str, outcome: str, ctx: bentoml.Context) -> FeedbackResponse:
        """Record what the customer did with a shown offer; repeating it changes nothing; unknown -> 404.

        200 only once the outcome is committed; 503 (nothing recorded, retry) if the store failed.
        """
        from serving.contact_store.errors import StoreUnavailable

        try:
            known = self.engine.record_outcome(decision_id, offer_id, outcome, self.settings.now())
        except StoreUnavailable as exc:
            ctx.response.status_code = 503
            ctx.response.metadata.update(_STORE_DOWN_HEADERS)
            return self._store_failed(exc, "feedback", "feedback")
        self.store_health.ok()
        self.metrics["feedback"].labels(outcome, str(known).lower()).inc()
        if not known:
            ctx.response.status_code = 404
        return FeedbackResponse(decision_id=decision_id, offer_id=offer_id, outcome=outcome, recorded=known,
                                error=None if known else "unknown decision_id, or offer_id not shown in that decision")

    @bentoml.api(route="/forget", input_spec=ForgetRequest)
    async def forget(self, customer_id: str) -> ForgetResponse:
        """Erase the customer's contact history and decision log (GDPR)."""
        from serving.contact_store.errors import StoreUnavailable
        from serving.privacy import hash_id

        try:
            n = self.engine.forget(customer_id)
        except StoreUnavailable as exc:
            return self._store_failed(exc, "forget", "forget")
        self.store_health.ok()
        log.info("forgot customer %s (%d shows)", hash_id(customer_id), n)
        return ForgetResponse(customer_id=customer_id, erased_shows=n)

    @bentoml.api(route="/consents", input_spec=ConsentRequest)
    async def consents(self, customer_id: str, channel: str, granted: bool, ts: datetime) -> ConsentResponse:
        """Record a consent grant or withdrawal in the contact store: the next decision of every
        worker and replica obeys it (the latest change wins; a tie is a withdrawal).

        404 for an unknown or erased customer, 422 for a time out of range (nothing written);
        503 (nothing written, retry) if the store failed; 200 with `recorded: false` for a repeat.
        """
        from serving.contact_store.errors import StoreUnavailable
        from serving.live import LiveInputError

        try:
            new = self.engine.record_consent(customer_id, channel, granted, ts, self.settings.now())
        except LiveInputError as exc:
            return self._refused("consents", exc)
        except StoreUnavailable as exc:
            return self._store_failed(exc, "consent", "consents")
        self.store_health.ok()
        self.metrics["consents"].labels(str(granted).lower(), str(new).lower()).inc()
        return ConsentResponse(customer_id=customer_id, channel=channel, granted=granted, ts=ts, recorded=new)

    def _store_failed(self, exc: Any, what: str, endpoint: str | None = None) -> Any:
        """The 503 of a write (or read) the store could not make: nothing recorded, retry. Marks the
        store unhealthy and counts the refusal under `endpoint` (reads are not counted)."""
        self.store_health.failed(exc.cause)
        if endpoint is not None:
            self.metrics["store_refusals"].labels(endpoint).inc()
        return _store_down(what)

    def _refused(self, endpoint: str, exc: Any) -> Any:
        """The 4xx of live input refused after validation (nothing written), one warning line."""
        from starlette.responses import JSONResponse

        self.metrics["live_refusals"].labels(endpoint, exc.field.split("].")[-1].split("[")[0]).inc()
        log.warning("client error: POST /%s -> %d %s", endpoint, exc.status, exc)
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @bentoml.api(route="/events", input_spec=EventsRequest)
    async def events(self, events: list[EventIn]) -> EventsResponse:
        """Append events to the event log (the contact store), all or nothing: the next decision of
        every worker and replica for these customers reads features recomputed with them.

        404 unknown or erased customer, 409 an event id recorded with other content, 422 a time out
        of range or not after the data's last event (nothing written); 503 if the store failed.
        """
        from serving.contact_store.base import LiveEvent, to_epoch
        from serving.contact_store.errors import StoreUnavailable
        from serving.live import LiveInputError, utc_time

        try:
            records = []
            for i, raw in enumerate(events):
                e = raw if isinstance(raw, EventIn) else EventIn.model_validate(raw)
                ts = to_epoch(utc_time(f"events[{i}].ts", e.ts))
                records.append(LiveEvent(e.event_id, e.customer_id, ts, e.type, e.channel, e.category, e.product_id,
                                         None if e.amount is None else float(e.amount)))
            result = self.engine.ingest_events(records, self.settings.now())
        except LiveInputError as exc:
            return self._refused("events", exc)
        except StoreUnavailable as exc:
            return self._store_failed(exc, "events", "events")
        self.store_health.ok()
        self.metrics["events"].labels("recorded").inc(result.recorded)
        self.metrics["events"].labels("duplicate").inc(result.duplicates)
        return EventsResponse(received=result.received, recorded=result.recorded, duplicates=result.duplicates)

    @bentoml.api(route="/customer", input_spec=CustomerRequest)
    async def customer(self, customer_id: str) -> CustomerResponse:
        """The live customer view: every feature the next decision reads for this customer
        (recomputed with posted events, or the features file's row); 404 unknown or erased."""
        import math

        from starlette.responses import JSONResponse

        from serving.contact_store.errors import StoreUnavailable

        try:
            source, row = self.engine.customer_view(customer_id, self.settings.now())
        except StoreUnavailable as exc:
            return self._store_failed(exc, "customer view")
        self.store_health.ok()
        if row is None:
            return JSONResponse({"error": "customer_id: unknown customer (no features, or erased)"},  # type: ignore[return-value]
                                status_code=404)
        features: dict[str, float | str | None] = {}
        for name, value in row.items():
            if isinstance(value, str):
                features[str(name)] = value
            else:
                v = float(value) if value is not None else math.nan
                features[str(name)] = None if math.isnan(v) else v
        lifecycle = features.get("lifecycle")
        return CustomerResponse(customer_id=customer_id, source=source, lifecycle=lifecycle if isinstance(lifecycle, str) else None,  # type: ignore[arg-type]
                                features=features)

    def outbox_page(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """`GET /outbox` (answered by the Guard, which checked the key): a page of the programmes'
        outbox. 400 naming the parameter for a bad one; 503 if the store failed."""
        from pydantic import ValidationError

        from serving.api_models import OutboxQuery
        from serving.contact_store.errors import StoreUnavailable

        try:
            q = OutboxQuery.model_validate(query)
        except ValidationError as exc:
            errors = exc.errors(include_context=False, include_input=False, include_url=False)
            names = ", ".join(".".join(str(p) for p in e["loc"]) or "query" for e in errors)
            return 400, {"error": f"invalid query parameter(s): {names}", "detail": errors}
        try:
            rows = self.engine.outbox(None if q.status == "any" else q.status, q.since, q.after, q.limit)
        except StoreUnavailable as exc:
            self.store_health.failed(exc.cause)
            return 503, {"error": "contact store unavailable: retry later"}
        self.store_health.ok()
        return 200, {"rows": [r.record() for r in rows],  # type: ignore[attr-defined]
                     "next_after": rows[-1].outbox_id if len(rows) == q.limit else None}  # type: ignore[attr-defined]

    @bentoml.api(route="/outbox/ack", input_spec=OutboxAckRequest)
    async def outbox_ack(self, outbox_ids: list[int], status: str) -> OutboxAckResponse:
        """Mark pending sends of the outbox `sent` or `failed` (a campaign tool after sending);
        acknowledging again changes nothing. 503 (nothing recorded, retry) if the store failed."""
        from serving.contact_store.errors import StoreUnavailable

        try:
            after = self.engine.ack_outbox(list(outbox_ids), status, self.settings.now())
        except StoreUnavailable as exc:
            return self._store_failed(exc, "acknowledgement", "outbox_ack")
        self.store_health.ok()
        self.metrics["outbox_acks"].labels(status).inc(sum(1 for s in after.values() if s == status))
        return OutboxAckResponse(statuses={str(i): s for i, s in after.items()},
                                 unknown=[i for i in dict.fromkeys(outbox_ids) if i not in after])

    @bentoml.api(route="/admin/reload", input_spec=ReloadRequest)
    async def admin_reload(self, force: bool = False) -> ReloadResponse:
        """Load the current champions now (this worker) and ask the other workers to do the same."""
        result = await asyncio.to_thread(self._reload, force)
        try:
            self._marker.touch()
            self._marker_seen = self._marker.stat().st_mtime
        except OSError:
            log.warning("could not write %s; other workers reload on their interval", self._marker)
        return ReloadResponse(changed=result.changed, ok=result.ok, message=result.message, versions=result.versions)


Recommender.add_asgi_middleware(Guard)

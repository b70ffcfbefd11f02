"""The decision pipeline: score, arbitrate and explain a block of customers at once.

One implementation serves every caller: `/recommend` (`DecisionEngine.decide`) passes one row,
`nbo score` (`serving.batch.plan`) passes a chunk, in pandas or inside Spark. For a block:

1. customers who may not be contacted at all (no consent, quiet hours) are not scored: every
   offer is suppressed for them before the scores matter;
2. the others are scored by the engine (`DecisionEngine.score`: the features package's online
   path, the champion models, or the popularity fallback);
3. the arbiter applies the contact policy to the whole block (`Arbiter.arbitrate_block`) with
   the contact histories the caller read (`ContactDesk`), exploring with one seed per
   (customer, channel, now) (`draws.decision_seed`); with `arbitration.objective = "uplift"` it
   is given the uplift champion's incremental conversion of every offer too (`Scored.tau`), and
   p_accept is the uplift champion's own acceptance when it has one (`Scored.p_uplift`: tau and
   the incentive's cost then come from one model); a customer without features gets the
   popularity fallback and tau = fallback x the model's mean incremental share;
4. the holdouts (`serving.holdout`): customers of the universal control group get no offer on
   the channels it holds, other decisions are randomised to "no offer" at the policy's rate, and
   every row knows its probability of making no contact (`p_none`);
5. the chosen offers are explained in one explainer call: the three largest contributions
   (log-odds) of each, then the arbiter's own reasons.

Nothing is read from or written to the contact store here: the caller reads before (`CustomerBlock`)
and reserves after (`ContactDesk.reserve`, `serving.batch.reserve`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from features import Context
from nbo.vocab import OUTBOUND_CHANNELS
from serving.contact_store import ContactHistory
from serving.contact_store.base import ConsentChange
from serving.decision import INVALID_SCORE, REASON_CODES, BlockResult, Decision, ShownOffer, reason_code, top_indices_block
from serving.draws import decision_seed, seeded_draws
from serving.holdout import hold_out
from serving.reasons import contribution_text

if TYPE_CHECKING:
    from serving.engine import DecisionEngine
    from serving.ranking import Arbiter

FALLBACK_VERSION = "popularity"
#: Rows per explainer call: bounds its (rows x trees x features) temporary.
EXPLAIN_ROWS = 4096


@dataclass(frozen=True)
class CustomerBlock:
    """The customers to decide for and what the contact store holds about them (read by the caller).

    `histories`: the caps' view of each customer at `now` (absent: no contact, no decline);
    `contact_rows`: the store's contact rows of each customer, which the features add to the data
    directory's contacts (absent: none).
    """

    customer_ids: Sequence[str]
    histories: Mapping[str, ContactHistory] = field(default_factory=dict)
    contact_rows: Mapping[str, list[dict[str, object]]] = field(default_factory=dict)
    #: Consent changes recorded in the contact store (`POST /consents`), merged with the data's
    #: consents table (absent: none).
    consents: Mapping[str, Sequence[ConsentChange]] = field(default_factory=dict)
    #: Customers erased (`forget`): no consent on any outbound channel (nothing about them may be
    #: recorded, so no cap could hold); on inbound channels they are unknown customers.
    forgotten: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DecisionBlock:
    """The decisions of a block of customers, before reservation; row i is `customer_ids[i]`."""

    engine: DecisionEngine
    customer_ids: list[str]
    channel: str
    now: datetime
    result: BlockResult
    p_accept: np.ndarray  # (n, offers) the scores arbitrated (0 for customers not scored)
    churn: np.ndarray  # (n,)
    fallback: np.ndarray  # (n,) bool
    model_versions: dict[str, str]
    reasons: dict[tuple[int, int], list[str]]  # (row, column) of a pick -> its top contributions
    reason_texts: dict[tuple[int, int], list[str]] = field(default_factory=dict)  # the same in plain words
    #: (n, offers) the incremental conversion arbitrated (objective `uplift`; 0 for customers not
    #: scored, NaN without an estimate), None under the `response` objective.
    uplift: np.ndarray | None = None

    def versions(self, i: int) -> dict[str, str]:
        return {"fallback": FALLBACK_VERSION} if self.fallback[i] else self.model_versions

    def shown(self, i: int) -> list[ShownOffer]:
        """Row i's chosen offers, best rank first."""
        return self.engine.arbiter.shown(self.result, i, offer_ids=self.engine.offer_ids, p_accept=self.p_accept[i],
                                         churn_probability=float(self.churn[i]), reasons=self._row_reasons(i),
                                         reason_texts=self._row_reasons(i, self.reason_texts))

    def chosen(self) -> dict[str, list[object]]:
        """Every row's chosen offers at once, as columns (what `shown` gives row by row, without a
        `ShownOffer` per offer): `row`, `rank`, `offer_id`, `p_accept`, `expected_value`,
        `propensity`, `reasons`, `reason_texts`; rows in order, each row's offers best rank first."""
        result, arb, offer_ids = self.result, self.engine.arbiter, self.engine.offer_ids
        picks = result.picks
        valid = np.cumprod(picks >= 0, axis=1).astype(bool)  # a row's offers stop at its first empty rank
        rows, ranks = np.nonzero(valid)
        cols = picks[rows, ranks]
        explored = result.explored[rows, ranks].tolist()
        churn = self.churn[rows].tolist()
        codes: list[object] = []
        texts: list[object] = []
        ids = [offer_ids[c] for c in cols.tolist()]
        for i, c, oid, e, ch in zip(rows.tolist(), cols.tolist(), ids, explored, churn, strict=True):
            first = self.reasons.get((i, c), [])
            code, text = arb.pick_reasons(oid, ch, e, first, self.reason_texts.get((i, c)))
            codes.append(code)
            texts.append(text)
        return {
            "row": rows.tolist(), "rank": (ranks + 1).tolist(), "offer_id": ids,
            "p_accept": self.p_accept[rows, cols].tolist(), "expected_value": result.ev[rows, cols].tolist(),
            "propensity": result.propensity[rows, ranks].tolist(), "reasons": codes, "reason_texts": texts,
        }

    def decision(self, i: int, decision_id: str | None = None) -> Decision:
        """Row i as the `Decision` `/recommend` answers (nothing reserved yet)."""
        return self.engine.arbiter.decision(
            self.result, i, self.customer_ids[i], self.channel, self.now, offer_ids=self.engine.offer_ids,
            p_accept=self.p_accept[i], churn_probability=float(self.churn[i]), reasons=self._row_reasons(i),
            model_versions=self.versions(i), fallback=bool(self.fallback[i]), decision_id=decision_id,
            reason_texts=self._row_reasons(i, self.reason_texts),
        )

    def p_none(self, i: int) -> float:
        """P(row i's decision makes no contact): 1 without holdouts when it has no offer."""
        return self.result.none_propensity(i)

    def no_offer(self, i: int) -> str:
        """Why row i has no offer: the most frequent suppression reason of its candidates
        (invalid scores counted first, as a `Decision` lists them), or `no_candidate`; a row a
        holdout emptied says which (`control_group`, `explore_no_offer`)."""
        held = self.result.held
        if held is not None and held[i] > 0:
            return REASON_CODES[int(held[i]) - 1]
        codes = self.result.reason[i]
        order = np.r_[np.flatnonzero(codes == INVALID_SCORE), np.flatnonzero((codes != INVALID_SCORE) & (codes != 0))]
        found = [REASON_CODES[int(codes[j]) - 1] for j in order.tolist()]
        return Counter(found).most_common(1)[0][0] if found else "no_candidate"

    def _row_reasons(self, i: int, by_cell: dict[tuple[int, int], list[str]] | None = None) -> dict[int, list[str]]:
        cells = self.reasons if by_cell is None else by_cell
        return {c: cells[(i, c)] for c in self.result.picks[i].tolist() if (i, c) in cells}


def _rule_context(ctx: Context | None) -> dict[str, object]:
    """The request context as the eligibility rules name it."""
    out: dict[str, object] = {}
    if ctx is not None:
        if ctx.page_category is not None:
            out["page_category"] = ctx.page_category
        if ctx.device is not None:
            out["device"] = ctx.device
        if ctx.hour_of_day is not None:
            out["hour"] = ctx.hour_of_day
        if ctx.day_of_week is not None:
            out["day_of_week"] = ctx.day_of_week
    return out


def as_context(channel: str, context: Context | Mapping[str, object] | None) -> Context:
    """A request's context on `channel` (the channel given wins over one in the context)."""
    if context is None:
        return Context(channel=channel)  # type: ignore[arg-type]
    if isinstance(context, Context):
        if context.channel != channel:
            return context.model_copy(update={"channel": channel})
        return context
    return Context(channel=channel, **{k: v for k, v in context.items() if k != "channel"})  # type: ignore[arg-type]


def decide_block(
    engine: DecisionEngine,
    customers: CustomerBlock,
    channel: str,
    now: datetime,
    ctx: Context | Mapping[str, Context] | None = None,
    k: int = 1,
) -> DecisionBlock:
    """Score, arbitrate and explain N customers at once; /recommend passes one row, batch a chunk.

    `now`: naive UTC. `ctx`: one context for every customer (None: only the channel is known) or
    one per customer id (absent: only the channel).
    """
    arb = engine.arbiter
    ids = [str(c) for c in customers.customer_ids]
    n, m = len(ids), len(engine.offer_ids)
    per_customer = isinstance(ctx, Mapping)
    shared = None if per_customer else as_context(channel, ctx)  # type: ignore[arg-type]
    contexts = {c: as_context(channel, ctx.get(c)) for c in ids} if per_customer else None  # type: ignore[union-attr]
    models = engine.models
    positions = engine.positions(ids)
    fallback = (positions < 0) if models is not None else np.ones(n, dtype=bool)
    consented = arb.consent_mask(ids, channel, now, engine.consents, customers.consents)
    if customers.forgotten and channel in OUTBOUND_CHANNELS:
        consented &= np.array([c not in customers.forgotten for c in ids], dtype=bool)
    quiet = _quiet_rows(engine, ids, channel, now)
    live = consented & (not engine.policy.quiet_hours.is_quiet(channel, now) if quiet is None else ~quiet)
    p = np.zeros((n, m))
    churn = np.zeros(n)
    value = np.zeros(n)
    reasons: dict[tuple[int, int], list[str]] = {}
    texts: dict[tuple[int, int], list[str]] = {}
    rows = np.flatnonzero(live)
    scored = None
    # Customers not scored (no consent, quiet hours) keep 0: the arbiter names their real reason.
    tau = np.zeros((n, m)) if engine.policy.arbitration.objective == "uplift" else None
    if len(rows) and m:
        live_ids = [ids[i] for i in rows.tolist()]
        scored = engine.score(live_ids, channel, shared if contexts is None else {c: contexts[c] for c in live_ids}, now,
                              models, contact_rows=customers.contact_rows)
        p[rows], churn[rows], value[rows] = scored.p, scored.churn, scored.value
        if tau is not None:
            tau[rows] = np.nan if scored.tau is None else scored.tau
            if scored.p_uplift is not None:  # the incentive is charged at the uplift model's own acceptance
                p[rows] = scored.p_uplift
    seeds = np.array([decision_seed(c, channel, now) for c in ids], dtype=np.uint64)
    result = arb.arbitrate_block(
        ids, channel, now, p,
        columns=arb.columns_of(engine.offer_ids),
        rule_masks=_rule_masks(engine, ids, positions, channel, now, shared, contexts),
        churn_probability=churn,
        customer_value=value,
        k=k,
        draws=seeded_draws(seeds),
        consented=consented,
        histories=customers.histories,
        uplift=tau,
        quiet=quiet,
    )
    if engine.policy.holds_out:  # the control group and randomised no-offer, after the arbiter
        result = hold_out(result, engine.policy, ids, channel, seeds)
    if scored is not None and scored.X is not None and scored.models is not None:
        reasons, texts = _top_contributions(scored, rows, result.picks, m, engine.offer_ids, arb)
    return DecisionBlock(engine, ids, channel, now, result, p, churn, fallback,
                         models.versions if models is not None else {}, reasons, texts, tau)


def _quiet_rows(engine: DecisionEngine, ids: list[str], channel: str, now: datetime) -> np.ndarray | None:
    """Quiet hours per customer, in each one's time zone (`customers.timezone`); None when no
    customer of the data has one (the policy's zone for all, as before the column)."""
    zones = engine.timezones
    q = engine.policy.quiet_hours
    if not zones or channel not in q.channels:
        return None
    return np.fromiter((q.is_quiet(channel, now, zones.get(c)) for c in ids), dtype=bool, count=len(ids))


def _rule_masks(
    engine: DecisionEngine,
    ids: list[str],
    positions: np.ndarray,
    channel: str,
    now: datetime,
    shared: Context | None,
    contexts: Mapping[str, Context] | None,
) -> dict[int, np.ndarray]:
    """Every eligibility rule on every row: one customer's values (a mapping) row by row for one
    request or per-customer contexts, the materialised frame for a chunk with one context."""
    arb = engine.arbiter
    if len(ids) == 1 or contexts is not None or (positions < 0).any():
        masks = [
            arb.rule_masks(engine.rule_inputs(int(pos)), channel, now,
                           _rule_context(shared if contexts is None else contexts[cid]))
            for cid, pos in zip(ids, positions.tolist(), strict=True)
        ]
        return {key: np.concatenate([mk[key] for mk in masks]) for key in (masks[0] if masks else {})}
    frame = engine.features
    if not (len(positions) == len(frame) and np.array_equal(positions, np.arange(len(frame)))):
        frame = frame.iloc[positions]
    return arb.rule_masks(frame, channel, now, _rule_context(shared))


def _top_contributions(scored, rows: np.ndarray, picks: np.ndarray, n_o: int,  # type: ignore[no-untyped-def]
                       offer_ids: Sequence[str], arbiter: Arbiter) -> tuple[dict[tuple[int, int], list[str]], dict[tuple[int, int], list[str]]]:
    """The top contributions of each chosen (row, column) of a scored customer, one explainer call:
    as codes, and in plain words from the feature's value in the candidate row (`serving.reasons`)."""
    known = np.flatnonzero(scored.positions >= 0)  # scored rows with model inputs, in X's order
    where = {int(rows[s]): a for a, s in enumerate(known.tolist())}  # block row -> its rank in X
    cells = [(i, int(picks[i, r])) for i, r in np.argwhere(picks >= 0).tolist() if i in where]
    if not cells:
        return {}, {}
    index = np.array([where[i] * n_o + c for i, c in cells], dtype=np.int64)
    models = scored.models
    explainer = models.explainer or models.propensity.model
    contrib = np.concatenate([explainer.contributions(scored.X[index[lo : lo + EXPLAIN_ROWS]])[:, :-1]
                              for lo in range(0, len(index), EXPLAIN_ROWS)])
    names = models.propensity.feature_names
    # One sort and two gathers for every chosen cell (per cell: two sorts and ~10 scalar reads
    # cost ~30 % of a batch chunk's pipeline); the same positions and values as row by row.
    top = top_indices_block(contrib)
    weights = np.take_along_axis(contrib, top, axis=1).tolist()
    values = np.take_along_axis(scored.X[index], top, axis=1).tolist()
    by_id = arbiter.catalogue.by_id
    categories = {c: by_id[offer_ids[c]].category for c in {cell[1] for cell in cells}}
    codes: dict[tuple[int, int], list[str]] = {}
    texts: dict[tuple[int, int], list[str]] = {}
    # A sentence depends on the feature, its value, the sign of the contribution and the offer's
    # category only: said once per such key in the call (counts, flags and segments repeat a lot).
    said: dict[tuple[int, float, bool, str], str] = {}
    for cell, js, ws, vs in zip(cells, top.tolist(), weights, values, strict=True):
        category = categories[cell[1]]
        codes[cell] = [reason_code(names[j], w) for j, w in zip(js, ws, strict=True)]
        row: list[str] = []
        for j, w, v in zip(js, ws, vs, strict=True):
            if not v:  # 0.0 and -0.0 are one key but may be said differently: not remembered
                row.append(contribution_text(names[j], v, w, category))
                continue
            key = (j, v, w > 0, category)
            text = said.get(key)
            if text is None:
                text = said[key] = contribution_text(names[j], v, w, category)
            row.append(text)
        texts[cell] = row
    return codes, texts

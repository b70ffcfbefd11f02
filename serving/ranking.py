"""Arbitration: from calibrated scores to the offers (or none) to make, within the contact policy.

`Arbiter` is pure: from scores, the catalogue (`serving.catalogue`: offers, levers, eligibility
rules), the contact policy and the contact history it is given, it drops every candidate a rule forbids (recording the reason), scores the rest by
expected value, and picks up to `k` with a little exploration (`serving.selection`), recording the
exact probability of each pick. It reads no store and reserves nothing: `serving.reservation`
(`ContactDesk`) reads the history before it and reserves its picks after it.

Expected value (currency units) of offer o for this customer:

    ev(o) = p_accept x value x lever(o) - cost                      (every offer)
          + churn_probability x customer_value x p_accept            (retention offers only)

`lever(o)` = kind weight x offer weight from the policy. The retention term credits a retention
offer with the value it keeps if it is accepted by a customer who would otherwise leave.

With `arbitration.objective = "uplift"` an offer is worth what it changes against no contact
(issue 21): with tau(o) the uplift model's incremental conversion,

    ev(o) = tau x base value x lever(o) - p_accept x incentive cost - cost - fatigue cost(channel)
          + churn_probability x customer_value x tau                 (retention offers only)

(base value: the plain offer's margin, value + incentive cost; the incentive is given away on
every acceptance, the margin is earned only on the purchases the contact adds). No contact is
worth 0: when no offer's ev reaches `min_expected_value` the answer is no offer. Among the
incentive variants of one offer still eligible, the cheapest that pays is kept: variants are
walked by incentive cost and a costlier one replaces the kept one only when its ev is higher by
more than `incentive_hurdle`; the others are suppressed (`incentive_variant`).

One implementation for one customer and for many: `Arbiter.arbitrate_block` applies every rule
and the selection to a block of customers x offers at once (NumPy over the block, Python only for
customers with a contact history), and `Arbiter.decide` is that block with one row. The decision
pipeline (`serving.pipeline`) calls `arbitrate_block` for one request and for batch chunks alike.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from nbo.vocab import CONTACT_CHANNELS
from serving.caps import CONTACT_REASONS
from serving.catalogue import OfferCatalogue
from serving.contact_store.base import (
    ConsentChange,
    ContactHistory,
    OfferRef,
    decision_refusal,
    offer_refusal,
    to_epoch,
    touches,
)
from serving.contact_store.consent import ConsentBook
from serving.decision import (
    DIVERSITY,
    REASON_CODES,
    REASON_INDEX,
    BlockResult,
    Candidate,
    Decision,
    ShownOffer,
    Suppressed,
    top_reasons,
)
from serving.draws import Draws, generator_draws, seeded_draws
from serving.reasons import BEST_INCREMENTAL, BEST_VALUE, ELIGIBILITY_PREFIX, EXPLORED, RETENTION, arbiter_text, contribution_text_of, suppression_text
from serving.policy import ContactPolicy
from serving.rules import Rule
from serving.selection import rank_probabilities, select_block

class Arbiter:
    """Chooses the offers to make under a `ContactPolicy`; see the module docstring for the maths."""

    def __init__(
        self,
        policy: ContactPolicy,
        offers: pd.DataFrame,
        rules: Mapping[str, Rule],
        timezones: Mapping[str, str] | None = None,
    ) -> None:
        self.policy = policy
        #: Customers' IANA time zones where known (`customers.timezone`): quiet hours of `decide`
        #: and the quiet-hours sentence are read in them (others: `quiet_hours.timezone`).
        self.timezones: Mapping[str, str] = dict(timezones or {})
        self._rng = np.random.default_rng()
        self.catalogue = OfferCatalogue(offers, rules, policy.arbitration)
        self._empty: dict[str, tuple[str | None, np.ndarray]] = {}
        # One frozen `Suppressed` per (catalogue offer, reason, channel), built on first use (bounded
        # by offers x reason codes x channels): a decision's ~35 suppressions become dictionary
        # look-ups, their plain-language texts (which name the channel's caps) written once.
        self._suppressed: dict[tuple[str, str, str, str | None], Suppressed] = {}

    @property
    def offer_ids(self) -> list[str]:
        """Catalogue offer ids in column order of `arbitrate_block`."""
        return self.catalogue.offer_ids

    # ------------------------------------------------------------------ helpers
    def _consented(self, customer_id: str, channel: str, now: datetime, consents: Mapping[str, bool] | ConsentBook | None,
                   live: Sequence[ConsentChange] = ()) -> bool:
        if isinstance(consents, ConsentBook):
            state = consents.state(customer_id, channel, now, live)
        else:
            state = None if consents is None else consents.get(channel)
        return (channel not in self.policy.consent.opt_in_channels) if state is None else bool(state)

    def may_contact(self, customer_id: str, channel: str, now: datetime, consents: Mapping[str, bool] | ConsentBook | None) -> bool:
        """Consent given and not quiet hours (in the customer's zone): the caps (and so the contact history) matter."""
        return (self._consented(customer_id, channel, now, consents)
                and not self.policy.quiet_hours.is_quiet(channel, now, self.timezones.get(customer_id)))

    def consent_mask(self, customer_ids: Sequence[str], channel: str, now: datetime, consents: ConsentBook | None,
                     live: Mapping[str, Sequence[ConsentChange]] | None = None) -> np.ndarray:
        """May each customer be contacted on `channel` at `now` (the consent rule of `decide`);
        `live`: consent changes recorded in the contact store, per customer (merged with the book's)."""
        live = live or {}
        if isinstance(consents, ConsentBook):  # the whole block in one lookup, the same rule as `_consented`
            states = consents.state_many(customer_ids, channel, now, live)
            return np.where(states < 0, channel not in self.policy.consent.opt_in_channels, states == 1)
        return np.fromiter((self._consented(c, channel, now, consents, live.get(c, ())) for c in customer_ids),
                           dtype=bool, count=len(customer_ids))

    def rule_masks(
        self, features: pd.DataFrame | Mapping[str, object] | None, channel: str, now: datetime, context: Mapping[str, object] | None = None
    ) -> dict[int, np.ndarray]:
        """`OfferCatalogue.rule_masks`: every eligibility rule on these customers."""
        return self.catalogue.rule_masks(features, channel, now, context)

    # ------------------------------------------------------------------ the block
    def arbitrate_block(
        self,
        customer_ids: Sequence[str],
        channel: str,
        now: datetime,
        p_accept: np.ndarray,
        *,
        columns: np.ndarray | None = None,
        rule_masks: Mapping[int, np.ndarray] | None = None,
        churn_probability: np.ndarray | None = None,
        customer_value: np.ndarray | None = None,
        k: int = 1,
        draws: Draws,
        consented: np.ndarray,
        histories: Mapping[str, ContactHistory],
        uplift: np.ndarray | None = None,
        quiet: np.ndarray | None = None,
    ) -> BlockResult:
        """Apply the policy to n customers x m offers at once and choose up to `k` offers per customer.

        `p_accept` (n, m): calibrated scores of the offers at catalogue positions `columns` (all
        offers in catalogue order when None; no repeats). `consented` (n,): `consent_mask`.
        `rule_masks`: `rule_masks(...)` of these customers. `histories`: contact histories by
        customer, as the caller read them (customers absent have none). `uplift` (n, m): the
        incremental conversion of every cell, required by the `uplift` objective (ignored by
        `response`). `quiet` (n,): quiet hours per customer, read in each one's time zone
        (None: the policy's `quiet_hours.timezone` for all). Reads and records nothing.
        The checks and their order are those of the module docstring and `decide`.
        """
        t = to_epoch(now)
        policy, arb = self.policy, self.policy.arbitration
        ids = list(customer_ids)
        n = len(ids)
        cols = np.arange(len(self.catalogue.items)) if columns is None else np.asarray(columns, dtype=np.int64)
        m = len(cols)
        p = np.asarray(p_accept, dtype=np.float64).reshape(n, m)
        churn = np.zeros(n) if churn_probability is None else np.asarray(churn_probability, dtype=np.float64)
        cv = np.zeros(n) if customer_value is None else np.asarray(customer_value, dtype=np.float64)
        code = np.zeros((n, m), dtype=np.int8)

        def put(mask: np.ndarray, reason: str) -> None:
            code[(code == 0) & mask] = REASON_INDEX[reason]

        put(~((p >= 0.0) & (p <= 1.0)), "invalid_score")  # NaN compares False
        by_uplift = arb.objective == "uplift"
        if by_uplift:
            if uplift is None:
                raise ValueError("arbitration.objective 'uplift' needs the incremental conversion of every offer "
                                 "(an nbo-uplift model); none was given")
            tau = np.asarray(uplift, dtype=np.float64).reshape(n, m)
            put(~((tau >= -1.0) & (tau <= 1.0)), "invalid_score")
        consented = np.asarray(consented, dtype=bool)
        put(~consented[:, None], "consent")
        open_rows = consented.copy()
        if quiet is not None:
            quiet_rows = np.asarray(quiet, dtype=bool)
            put(quiet_rows[:, None], "quiet_hours")
            open_rows &= ~quiet_rows
        elif policy.quiet_hours.is_quiet(channel, now):
            put(np.ones((n, 1), dtype=bool), "quiet_hours")
            open_rows[:] = False
        # Contact history: one empty-history answer for every customer without one, Python for the rest.
        todo = np.flatnonzero(open_rows)
        refs = [self.catalogue.items[j].ref for j in cols.tolist()] if len(todo) else []
        empty_decision, empty_offer = self._without_history(channel)
        row_reason: list[str | None] = [None] * n
        offer_reason = np.zeros((n, m), dtype=np.int8)
        if empty_decision is None:
            offer_reason[:] = empty_offer[cols]
        for i in todo.tolist():
            h = histories.get(ids[i])
            if h is None or (not h.contacts and not h.last_decline_offer and not h.last_decline_category):
                row_reason[i] = empty_decision
                continue
            why = decision_refusal(h, channel, policy)
            row_reason[i] = why
            if why is None:  # the empty history's verdicts, checked again where this history touches an offer
                shows = h.offer_show_counts(policy.offer_cap.days)
                row = offer_reason[i]
                row[:] = empty_offer[cols]
                for j, ref in enumerate(refs):
                    if touches(h, ref, shows):
                        r = offer_refusal(h, ref, policy, shows)
                        row[j] = 0 if r is None else REASON_INDEX[r]
        for reason in CONTACT_REASONS:
            rows = np.array([r == reason for r in row_reason], dtype=bool)
            if rows.any():
                put(rows[:, None], reason)
                open_rows &= ~rows
        # Offer by offer, for the customers still open.
        opened = open_rows[:, None]
        valid = (self.catalogue.valid_from[cols] <= t) & (t <= self.catalogue.valid_to[cols])
        put(opened & ~valid[None, :], "validity")
        on_channel = self.catalogue.on_channel(channel)
        put(opened & ~on_channel[cols][None, :], "channel")
        rule_of = self.catalogue.rule_of[cols]  # index in self.catalogue.rule_list, -1 = no rule
        if (rule_of >= 0).any():
            masks = rule_masks or {}
            ok = np.ones((n, len(self.catalogue.rule_list)), dtype=bool)
            for r, rule in enumerate(self.catalogue.rule_list):
                mask = masks.get(id(rule))
                if mask is None:
                    if (rule_of == r).any():
                        raise ValueError(f"no rule mask for eligibility rule {rule.text!r}")
                    continue
                ok[:, r] = np.asarray(mask, dtype=bool)
            eligible_cells = np.where(rule_of >= 0, ok[:, np.maximum(rule_of, 0)], True)
            put(opened & ~eligible_cells, "eligibility")
        code = np.where((code == 0) & opened & (offer_reason != 0), offer_reason, code).astype(np.int8)
        # Expected value, in the order of operations of the scalar formula.
        ret = self.catalogue.retention[cols]
        if by_uplift:
            ev = self._incremental_value(p, tau, cols, channel)
            if ret.any():
                ev[:, ret] = ev[:, ret] + (churn * cv)[:, None] * tau[:, ret]
        else:
            ev = p * self.catalogue.value[cols] * self.catalogue.lever[cols] - self.catalogue.cost[cols]
            if ret.any():
                ev[:, ret] = ev[:, ret] + (churn * cv)[:, None] * p[:, ret]
        reached = code == 0
        ev = np.where(reached, ev, np.nan)
        put(reached & (ev < arb.min_expected_value), "min_value")
        if by_uplift and self.catalogue.has_variants:
            kept = cheapest_paying(ev, code == 0, self.catalogue.group[cols], self.catalogue.incentive_cost[cols],
                                   self.catalogue.id_order[cols], arb.incentive_hurdle)
            put((code == 0) & ~kept, "incentive_variant")
        eligible = code == 0

        picks, props, explored = select_block(ev, eligible, [self.catalogue.items[j] for j in cols.tolist()], self.catalogue.id_order[cols],
                                              self.catalogue.category[cols], k, draws, arb)
        # Diversity: eligible offers left out because their category is full.
        if (picks >= 0).any():
            cats = self.catalogue.category[cols]
            picked_cat = np.where(picks >= 0, cats[np.maximum(picks, 0)], -1)  # (n, k)
            same = (picked_cat[:, :, None] == cats[None, None, :]).sum(axis=1)  # picks in each cell's category
            chosen = (picks[:, :, None] == np.arange(m)[None, None, :]).any(axis=1)
            code[eligible & ~chosen & (same >= arb.max_per_category)] = DIVERSITY
        return BlockResult(cols, picks, props, explored, ev, code)

    def _incremental_value(self, p: np.ndarray, tau: np.ndarray, cols: np.ndarray, channel: str) -> np.ndarray:
        """Expected incremental value of every cell (module docstring), before the retention term."""
        c = self.catalogue
        fatigue = self.policy.arbitration.fatigue_cost.get(channel, 0.0)  # type: ignore[call-overload]
        return tau * c.base_value[cols] * c.lever[cols] - p * c.incentive_cost[cols] - c.cost[cols] - fatigue

    def _without_history(self, channel: str) -> tuple[str | None, np.ndarray]:
        """What the caps say to a customer with no contact and no decline (per catalogue offer)."""
        cached = self._empty.get(channel)
        if cached is None:
            empty = ContactHistory("", 0.0)
            codes = [offer_refusal(empty, o.ref, self.policy, {}) for o in self.catalogue.items]
            cached = self._empty[channel] = (
                decision_refusal(empty, channel, self.policy),
                np.array([0 if r is None else REASON_INDEX[r] for r in codes], dtype=np.int8),
            )
        return cached

    # ------------------------------------------------------------------ decide
    def columns_of(self, offer_ids: Sequence[str]) -> np.ndarray:
        """Catalogue positions (columns of `arbitrate_block`) of these catalogue offers."""
        return self.catalogue.columns_of(offer_ids)

    def offer_ref(self, offer_id: str) -> OfferRef:
        """The (offer, category) the contact store counts a contact of this offer under."""
        return self.catalogue.by_id[offer_id].ref

    def draws_for(self, rng: np.random.Generator | int | None) -> Draws:
        """One customer's draws: a generator, an integer seed (`draws.uniform`), or None (this arbiter's generator)."""
        if isinstance(rng, int | np.integer):
            return seeded_draws(np.array([int(rng) % 2**64], dtype=np.uint64))
        return generator_draws(self._rng if rng is None else rng)

    def suppression(self, offer_id: str, reason: str, channel: str, tz: str | None = None) -> Suppressed:
        """The record of a suppressed candidate on `channel`, with its reason in plain words
        (`serving.reasons`; `tz`: the customer's time zone, named by the quiet-hours sentence);
        catalogue offers share one frozen record per (reason, channel, zone) (~35 drops per
        decision cost ~0.1 ms as new objects), anything else is validated."""
        tz = tz if reason == "quiet_hours" else None
        key = (offer_id, reason, channel, tz)
        record = self._suppressed.get(key)
        if record is None:
            if type(offer_id) is not str or offer_id not in self.catalogue.by_id:
                return Suppressed(offer_id=offer_id, reason=reason,
                                  reason_text=suppression_text(reason, None, channel, self.policy, tz))
            text = suppression_text(reason, self.catalogue.by_id[offer_id], channel, self.policy, tz)
            record = self._suppressed[key] = Suppressed.model_construct(offer_id=offer_id, reason=reason, reason_text=text)
        return record

    def decision(
        self,
        block: BlockResult,
        row: int,
        customer_id: str,
        channel: str,
        now: datetime,
        *,
        offer_ids: Sequence[str],
        p_accept: Sequence[float],
        churn_probability: float,
        reasons: Mapping[int, list[str]] | None = None,
        model_versions: Mapping[str, str] | None = None,
        fallback: bool = False,
        decision_id: str | None = None,
        suppressed: Sequence[Suppressed] = (),
        reason_texts: Mapping[int, list[str]] | None = None,
    ) -> Decision:
        """Row `row` of a block as a `Decision` (nothing reserved yet).

        `offer_ids` and `p_accept`: the block's columns and this row's scores; `reasons`: column ->
        the reasons that come first (top feature contributions), `reason_texts` the same in plain
        words; `suppressed`: candidates refused before the block (unknown offers, invalid scores).
        """
        dropped = list(suppressed)
        tz = self.timezones.get(customer_id) if self.timezones else None
        codes = block.reason[row].tolist()  # Python ints: ~35-45 drops a decision, no NumPy scalar each
        suppression = self.suppression
        dropped += [suppression(offer_ids[c], REASON_CODES[codes[c] - 1], channel, tz) for c in block.suppressed_order(row)]
        shown = self.shown(block, row, offer_ids=offer_ids, p_accept=p_accept, churn_probability=churn_probability,
                           reasons=reasons, reason_texts=reason_texts)
        # No offer: the probability of making no contact (1 unless holdouts randomise it).
        slate = math.prod(o.propensity for o in shown) if shown else block.none_propensity(row)
        return Decision(
            decision_id=decision_id or uuid.uuid4().hex,
            customer_id=customer_id,
            channel=channel,
            ts=now,
            offers=shown,
            suppressed=dropped,
            model_versions=dict(model_versions or {}),
            fallback=fallback,
            slate_propensity=slate,
        )

    def shown(
        self,
        block: BlockResult,
        row: int,
        *,
        offer_ids: Sequence[str],
        p_accept: Sequence[float],
        churn_probability: float,
        reasons: Mapping[int, list[str]] | None = None,
        reason_texts: Mapping[int, list[str]] | None = None,
    ) -> list[ShownOffer]:
        """The offers chosen in row `row` of a block, best rank first, with their reasons
        (`reasons[column]`, the top contributions, then the arbiter's own) and the same in plain
        words (`reason_texts[column]`; a contribution without one is said from its code)."""
        shown: list[ShownOffer] = []
        for r, c in enumerate(block.picks[row].tolist()):
            if c < 0:
                break
            explored = bool(block.explored[row, r])
            oid = offer_ids[c]
            codes, texts = self.pick_reasons(oid, churn_probability, explored, (reasons or {}).get(c, []),
                                             (reason_texts or {}).get(c))
            shown.append(ShownOffer(
                offer_id=oid,
                rank=r + 1,
                p_accept=float(p_accept[c]),
                expected_value=float(block.ev[row, c]),
                propensity=float(block.propensity[row, r]),
                explored=explored,
                reasons=codes,
                reason_texts=texts,
            ))
        return shown

    def pick_reasons(self, offer_id: str, churn_probability: float, explored: bool, first: list[str],
                     first_texts: list[str] | None) -> tuple[list[str], list[str]]:
        """A chosen offer's reasons: its top contributions `first` (codes), then the arbiter's own;
        and the same in plain words (`first_texts`, or each contribution said from its code)."""
        own = self.offer_reasons(offer_id, churn_probability, explored)
        texts = first_texts or [contribution_text_of(code, self.catalogue.by_id[offer_id].category) for code in first]
        return first + own, texts + [arbiter_text(code, churn_probability) for code in own]

    def decide(
        self,
        customer_id: str,
        channel: str,
        now: datetime,
        candidates: Mapping[str, float] | Iterable[Candidate],
        features: Mapping[str, object] | None = None,
        context: Mapping[str, object] | None = None,
        churn_probability: float = 0.0,
        customer_value: float = 0.0,
        k: int = 1,
        rng: np.random.Generator | int | None = None,
        consents: Mapping[str, bool] | ConsentBook | None = None,
        model_versions: Mapping[str, str] | None = None,
        fallback: bool = False,
        decision_id: str | None = None,
        history: ContactHistory | None = None,
        uplift: Mapping[str, float] | None = None,
    ) -> Decision:
        """Which offers (0..k) to make to `customer_id` on `channel` at `now` (UTC); records nothing.

        `uplift`: offer id -> incremental conversion, for the `uplift` objective (an offer without
        one is suppressed as `invalid_score`).
        `history`: the customer's contact history at `now` (None: no contact, no decline); a caller
        that reserves reads it first (`ContactDesk.decide`), and the reservation re-checks the caps.
        `consents`: channel -> latest consent (absent: no row) or a `ConsentBook`.
        `rng`: a generator, or an integer seed (see `draws.uniform`), or None (this arbiter's generator).
        The policy itself is `arbitrate_block` with one row.
        """
        if channel not in CONTACT_CHANNELS:
            raise ValueError(f"channel must be one of {CONTACT_CHANNELS}, got {channel!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        draws = self.draws_for(rng)
        if now.tzinfo is not None:
            now = now.astimezone(UTC).replace(tzinfo=None)
        # (offer_id, p_accept, contributions) without a `Candidate` per offer for a mapping (the engine's 50).
        cands: Iterable[tuple[str, object, Mapping[str, float] | None]] = (
            ((o, p, None) for o, p in candidates.items())
            if isinstance(candidates, Mapping)
            else ((c.offer_id, c.p_accept, c.contributions) for c in candidates)
        )
        dropped: list[Suppressed] = []
        known: list[tuple[str, float, Mapping[str, float] | None]] = []
        seen: set[str] = set()
        for oid, p, contributions in cands:
            if oid not in self.catalogue.by_id:
                dropped.append(self.suppression(oid, "unknown_offer", channel))
            elif oid in seen:
                continue
            elif not (isinstance(p, int | float) and 0.0 <= p <= 1.0):
                dropped.append(self.suppression(oid, "invalid_score", channel))
            else:
                seen.add(oid)
                known.append((oid, float(p), contributions))
        ids = [oid for oid, _, _ in known]
        scores = [p for _, p, _ in known]
        block = self.arbitrate_block(
            [customer_id],
            channel,
            now,
            np.array([scores], dtype=np.float64).reshape(1, len(known)),
            columns=self.columns_of(ids),
            rule_masks=self.rule_masks(features, channel, now, context),
            churn_probability=np.array([churn_probability], dtype=np.float64),
            customer_value=np.array([customer_value], dtype=np.float64),
            k=k,
            draws=draws,
            consented=np.array([self._consented(customer_id, channel, now, consents)]),
            quiet=(np.array([self.policy.quiet_hours.is_quiet(channel, now, self.timezones[customer_id])])
                   if customer_id in self.timezones else None),
            histories={} if history is None else {customer_id: history},
            uplift=None if uplift is None else np.array([[uplift.get(o, np.nan) for o in ids]], dtype=np.float64),
        )
        reasons = {c: top_reasons(list(cb), list(cb.values())) for c, (_, _, cb) in enumerate(known) if cb}
        return self.decision(block, 0, customer_id, channel, now, offer_ids=ids, p_accept=scores,
                             churn_probability=churn_probability, reasons=reasons, model_versions=model_versions,
                             fallback=fallback, decision_id=decision_id, suppressed=dropped)

    def first_rank_probabilities(self, block: BlockResult, row: int) -> np.ndarray:
        """P(offer) at rank 1 for each column of a block's row (0 for an offer a rule forbids):
        the selection's `rank_probabilities` over the offers eligible before any pick."""
        codes = block.reason[row]
        probs = np.zeros(len(codes))
        idx = np.flatnonzero((codes == 0) | (codes == DIVERSITY))
        if not len(idx):
            return probs
        ev = block.ev[row]
        ids = [self.catalogue.items[j].offer_id for j in block.columns.tolist()]
        order = sorted(idx.tolist(), key=lambda i: (-ev[i], ids[i]))
        probs[order] = rank_probabilities(ev[order].tolist(), self.policy.arbitration.exploration)
        return probs

    def offer_reasons(self, offer_id: str, churn_probability: float, explored: bool) -> list[str]:
        """The arbiter's own reasons for showing an offer (after the top contributions, when known)."""
        o = self.catalogue.by_id[offer_id]
        reasons: list[str] = []
        if o.rule is not None:
            reasons.append(f"{ELIGIBILITY_PREFIX}{o.rule.text}")
        if o.kind == "retention" and churn_probability:
            reasons.append(RETENTION)
        by_uplift = self.policy.arbitration.objective == "uplift"
        reasons.append(EXPLORED if explored else BEST_INCREMENTAL if by_uplift else BEST_VALUE)
        return reasons


def cheapest_paying(ev: np.ndarray, eligible: np.ndarray, group: np.ndarray, incentive_cost: np.ndarray,
                    id_order: np.ndarray, hurdle: float) -> np.ndarray:
    """(n, m) bool: the cell kept among the eligible incentive variants of each offer (`group`),
    every cell of an offer without variants in the block kept as it is.

    The variants are walked from the cheapest incentive (ties: offer id); a costlier variant replaces
    the kept one only when its expected value is higher by more than `hurdle` (currency units): a
    discount is given only where it pays for itself, and for more than estimation noise.
    """
    kept = eligible.copy()
    groups, counts = np.unique(group, return_counts=True)
    for g in groups[counts > 1].tolist():
        members = np.flatnonzero(group == g)
        members = members[np.lexsort((id_order[members], incentive_cost[members]))]
        best = np.full(ev.shape[0], -1, dtype=np.int64)
        best_ev = np.full(ev.shape[0], -np.inf)
        for j in members.tolist():
            better = eligible[:, j] & ((best < 0) | (ev[:, j] > best_ev + hurdle))
            best = np.where(better, j, best)
            best_ev = np.where(better, ev[:, j], best_ev)
        kept[:, members] = best[:, None] == members[None, :]
    return kept

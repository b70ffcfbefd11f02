"""Arbitration: from calibrated scores to the offers (or none) to make, within the contact policy.

`Arbiter.decide` drops every candidate a rule forbids (recording the reason), scores the rest by
expected value, picks up to `k` with a little exploration, records the exact probability of each
pick, and reserves the contact atomically in the store. Plain Python: the HTTP service and batch
scoring call it alike.

Expected value (currency units) of offer o for this customer:

    ev(o) = p_accept x value x lever(o) - cost                      (every offer)
          + churn_probability x customer_value x p_accept            (retention offers only)

`lever(o)` = kind weight x offer weight from the policy. The retention term credits a retention
offer with the value it keeps if it is accepted by a customer who would otherwise leave.

Selection is sequential, without replacement. At each rank the remaining set R holds the eligible
offers not yet picked whose category is below `max_per_category`; the greedy pick is the best ev
in R (ties: smallest offer_id). With exploration rate e the pick is drawn from
    P(o) = (1 - e) [o is greedy] + e q(o),
q uniform over R (epsilon_greedy) or q(o) proportional to exp(ev(o) / temperature) (softmax).
The recorded `propensity` of a shown offer is that P(o) at its rank, given the offers at earlier
ranks; the product over ranks (`slate_propensity`) is the probability of the whole ordered
answer. For k = 1 it is the plain probability that the offer was chosen.

One implementation for one customer and for many: `Arbiter.arbitrate_block` applies every rule
and the selection to a block of customers x offers at once (NumPy over the block, Python only for
customers with a contact history and for softmax exploration), and `Arbiter.decide` is that block
with one row. Batch scoring calls `arbitrate_block` on whole chunks.

Exploration draws: `rng` may be a `numpy.random.Generator` (its `random()` gives the draw of each
rank) or an integer seed; with a seed the draw at rank r (0-based) is `uniform(seed, r)`, a
SplitMix64 hash of (seed, r) - counter-based, so a block computes every customer's draws at once
and a customer gets the same draws alone or in a block.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from nbo.errors import ConfigError
from nbo.vocab import CONTACT_CHANNELS
from serving.contact_store.base import ContactHistory, ContactStore, OfferRef, decision_refusal, offer_refusal, to_epoch
from serving.contact_store.consent import ConsentBook
from serving.policy import ContactPolicy
from serving.rules import CONTEXT_NAMES, Rule, compile_rule

#: Reason codes for a suppressed candidate, in the order the checks run.
REASON_CODES: tuple[str, ...] = (
    "unknown_offer",
    "invalid_score",
    "consent",
    "quiet_hours",
    "cap_channel",
    "cap_outbound",
    "validity",
    "channel",
    "eligibility",
    "cap_offer",
    "cooldown_offer",
    "cooldown_category",
    "min_value",
    "diversity",
)
#: Codes of `BlockResult.reason`: 0 = not suppressed, i + 1 = REASON_CODES[i].
REASON_INDEX: dict[str, int] = {r: i + 1 for i, r in enumerate(REASON_CODES)}
_DIVERSITY = REASON_INDEX["diversity"]

#: Below this many customers the selection runs row by row (`_select`): array set-up costs more.
_ROWS_FOR_ARRAYS = 4

#: Draws for exploration: (rank, rows of the block still choosing) -> one uniform [0, 1) per row.
Draws = Callable[[int, np.ndarray], np.ndarray]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def uniform(seeds: np.ndarray | int, rank: int) -> np.ndarray:
    """The exploration draw at `rank` for each seed: SplitMix64(seed + (rank + 1) x golden) / 2^64, in [0, 1).

    Counter-based (no generator state), so the draws of a whole block are a few array operations
    and equal to those of each customer alone.
    """
    z = np.atleast_1d(np.asarray(seeds, dtype=np.uint64)).copy()
    step = np.uint64(((rank + 1) * 0x9E3779B97F4A7C15) % 2**64)
    z += step
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


_M64 = 2**64 - 1


def _uniform_one(seed: int, rank: int) -> float:
    """`uniform` of one seed in plain Python integers (a one-row block: no array overhead)."""
    z = (seed + (rank + 1) * 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    z ^= z >> 31
    return (z >> 11) * (1.0 / 9007199254740992.0)


def seeded_draws(seeds: np.ndarray) -> Draws:
    """`Draws` of a block whose row i explores with `seeds[i]` (see `uniform`)."""
    seeds = np.asarray(seeds, dtype=np.uint64)
    if len(seeds) == 1:
        one = int(seeds[0])
        return lambda rank, rows: np.array([_uniform_one(one, rank)] * len(rows), dtype=np.float64)
    return lambda rank, rows: uniform(seeds[rows], rank)


def generator_draws(rng: np.random.Generator) -> Draws:
    """`Draws` from a generator, one `rng.random()` per row and rank, in row order."""
    return lambda rank, rows: np.array([rng.random() for _ in range(len(rows))], dtype=np.float64)


@dataclass(frozen=True)
class BlockResult:
    """`Arbiter.arbitrate_block`'s answer for n customers x m offers (the block's columns).

    `picks[i, r]` is the column of the offer at rank r + 1 for customer i (-1: none), with its
    `propensity` and whether it was `explored`; `ev` the expected value of every cell that reached
    that check (NaN elsewhere); `reason` the suppression code of every cell (0: not suppressed,
    i.e. chosen, or eligible and not chosen within k; else 1 + index in REASON_CODES).
    """

    columns: np.ndarray  # (m,) catalogue positions
    picks: np.ndarray  # (n, k) int64
    propensity: np.ndarray  # (n, k) float64
    explored: np.ndarray  # (n, k) bool
    ev: np.ndarray  # (n, m) float64
    reason: np.ndarray  # (n, m) int8

    def suppressed_order(self, row: int) -> list[int]:
        """Columns of row `row` that were suppressed, in the order `decide` reports them."""
        codes = self.reason[row]
        first = [j for j in np.flatnonzero((codes != 0) & (codes != _DIVERSITY)).tolist()]
        return first + np.flatnonzero(codes == _DIVERSITY).tolist()


@dataclass(frozen=True)
class Candidate:
    """A model's score for one offer: calibrated p_accept and optional top feature contributions."""

    offer_id: str
    p_accept: float
    contributions: Mapping[str, float] = field(default_factory=dict)


class ShownOffer(BaseModel):
    offer_id: str
    rank: int
    p_accept: float
    expected_value: float
    propensity: float
    explored: bool
    reasons: list[str]


class Suppressed(BaseModel):
    """A candidate left out, with its reason code. Frozen: the arbiter hands out one shared
    instance per (catalogue offer, reason) instead of building ~35 objects per decision."""

    model_config = ConfigDict(frozen=True)

    offer_id: str
    reason: str


class Decision(BaseModel):
    """The answer for one customer on one channel; `offers == []` means "no offer"."""

    decision_id: str
    customer_id: str
    channel: str
    ts: datetime
    offers: list[ShownOffer]
    suppressed: list[Suppressed]
    model_versions: dict[str, str]
    fallback: bool
    slate_propensity: float


@dataclass(frozen=True)
class _Offer:
    offer_id: str
    category: str
    kind: str
    channels: frozenset[str]
    value: float
    cost: float
    valid_from: float
    valid_to: float
    rule: Rule | None
    ref: OfferRef
    lever: float


def compile_offer_rules(offers: pd.DataFrame, feature_names: Iterable[str]) -> dict[str, Rule]:
    """Compile the `eligibility` column of the offer catalogue; errors name the offer."""
    known = frozenset(feature_names) | CONTEXT_NAMES
    rules: dict[str, Rule] = {}
    cache: dict[str, Rule] = {}
    for offer_id, text in zip(offers["offer_id"].tolist(), offers["eligibility"].tolist(), strict=True):
        if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
            continue
        try:
            rules[offer_id] = cache[text] if text in cache else cache.setdefault(text, compile_rule(text, known))
        except ConfigError as exc:
            raise ConfigError(f"offer {offer_id!r}: {exc}") from None
    return rules


def _epoch_column(values: pd.Series) -> list[float]:
    ts = pd.to_datetime(values)
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return (ts.to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9).tolist()


class Arbiter:
    """Chooses the offers to make under a `ContactPolicy`; see the module docstring for the maths."""

    def __init__(
        self,
        policy: ContactPolicy,
        offers: pd.DataFrame,
        rules: Mapping[str, Rule],
        store: ContactStore,
    ) -> None:
        self.policy = policy
        self.store = store
        self._rng = np.random.default_rng()
        catalogue: dict[str, _Offer] = {}
        has_rule = offers["eligibility"].notna() & (offers["eligibility"].astype(str).str.strip() != "") if "eligibility" in offers else None
        for i, (oid, cat, kind, chans, value, cost, vf, vt) in enumerate(
            zip(
                offers["offer_id"].tolist(),
                offers["category"].tolist(),
                offers["kind"].tolist(),
                offers["channels"].tolist(),
                offers["value"].astype(float).tolist(),
                offers["cost"].astype(float).tolist(),
                _epoch_column(offers["valid_from"]),
                _epoch_column(offers["valid_to"]),
                strict=True,
            )
        ):
            rule = rules.get(oid)
            if rule is None and has_rule is not None and bool(has_rule.iloc[i]):
                raise ConfigError(f"offer {oid!r} has an eligibility rule but no compiled rule was given")
            lever = policy.arbitration.weight(oid, kind)
            catalogue[oid] = _Offer(oid, cat, kind, frozenset(chans), value, cost, vf, vt, rule, OfferRef(oid, cat), lever)
        self._offers = catalogue
        # The catalogue as arrays (position = order of first appearance), for blocks of customers.
        items = list(catalogue.values())
        self._items = items
        self._index = {o.offer_id: j for j, o in enumerate(items)}
        self._value = np.array([o.value for o in items], dtype=np.float64)
        self._cost = np.array([o.cost for o in items], dtype=np.float64)
        self._lever = np.array([o.lever for o in items], dtype=np.float64)
        self._valid_from = np.array([o.valid_from for o in items], dtype=np.float64)
        self._valid_to = np.array([o.valid_to for o in items], dtype=np.float64)
        self._retention = np.array([o.kind == "retention" for o in items], dtype=bool)
        categories = sorted({o.category for o in items})
        self._category = np.array([categories.index(o.category) for o in items], dtype=np.int64)
        self._n_categories = len(categories)
        self._id_order = np.argsort(np.argsort(np.array([o.offer_id for o in items], dtype=object), kind="stable"), kind="stable")
        self._rules: dict[int, Rule] = {id(o.rule): o.rule for o in items if o.rule is not None}
        self._empty: dict[str, tuple[str | None, np.ndarray]] = {}
        self._on_channel: dict[str, np.ndarray] = {}
        self._rule_list: list[Rule] = list(self._rules.values())
        where = {key: r for r, key in enumerate(self._rules)}
        self._rule_of = np.array([-1 if o.rule is None else where[id(o.rule)] for o in items], dtype=np.int64)
        # One frozen `Suppressed` per (catalogue offer, reason), built on first use (bounded by
        # offers x reason codes): a decision's ~35 suppressions become dictionary look-ups.
        self._suppressed: dict[tuple[str, str], Suppressed] = {}

    @property
    def offer_ids(self) -> list[str]:
        """Catalogue offer ids in column order of `arbitrate_block`."""
        return [o.offer_id for o in self._items]

    # ------------------------------------------------------------------ helpers
    def _consented(self, customer_id: str, channel: str, now: datetime, consents: Mapping[str, bool] | ConsentBook | None) -> bool:
        if isinstance(consents, ConsentBook):
            state = consents.state(customer_id, channel, now)
        else:
            state = None if consents is None else consents.get(channel)
        return (channel not in self.policy.consent.opt_in_channels) if state is None else bool(state)

    def consent_mask(self, customer_ids: Sequence[str], channel: str, now: datetime, consents: ConsentBook | None) -> np.ndarray:
        """May each customer be contacted on `channel` at `now` (the consent rule of `decide`)."""
        return np.fromiter((self._consented(c, channel, now, consents) for c in customer_ids), dtype=bool, count=len(customer_ids))

    def _context_env(self, channel: str, now: datetime, context: Mapping[str, object] | None) -> dict[str, object]:
        env = dict(context or {})
        env["channel"] = channel
        env.setdefault("hour", now.hour)
        env.setdefault("day_of_week", now.weekday())
        return env

    def rule_masks(
        self, features: pd.DataFrame | Mapping[str, object] | None, channel: str, now: datetime, context: Mapping[str, object] | None = None
    ) -> dict[int, np.ndarray]:
        """Eligibility of every rule of the catalogue: rule id -> one bool per customer.

        `features`: one customer's values (a mapping, or None when unknown: `Rule.evaluate`) or a
        frame of customers (`Rule.evaluate_frame`, the same semantics). Context values
        (channel, hour, day_of_week, page_category, device) are the same for every row.
        """
        env = self._context_env(channel, now, context)
        if features is None or isinstance(features, Mapping):
            row = dict(features or {})
            row.update(env)
            return {key: np.array([rule.evaluate(row)]) for key, rule in self._rules.items()}
        needed = sorted({n for r in self._rules.values() for n in r.names})
        frame = pd.DataFrame({n: features[n] for n in needed if n in features.columns and n not in env}, index=features.index)
        for name, value in env.items():
            if name in needed:
                frame[name] = value
        return {key: rule.evaluate_frame(frame) for key, rule in self._rules.items()}

    def _select(
        self, eligible: list[tuple[float, _Offer]], k: int, rng: np.random.Generator
    ) -> list[tuple[_Offer, float, bool]]:
        """Sequential sampling without replacement; returns (offer, propensity at its rank, explored).

        The one-customer form of the selection in `arbitrate_block` (which runs it for softmax).
        """
        exp = self.policy.arbitration.exploration
        limit = self.policy.arbitration.max_per_category
        remaining = sorted(eligible, key=lambda e: (-e[0], e[1].offer_id))
        picked: list[tuple[_Offer, float, bool]] = []
        per_cat: dict[str, int] = {}
        for _ in range(k):
            if not remaining:
                break
            n = len(remaining)
            if exp.rate <= 0.0 or n == 1:
                probs = [1.0] + [0.0] * (n - 1)
            else:
                if exp.method == "softmax":
                    evs = np.array([ev for ev, _ in remaining]) / exp.temperature
                    q = np.exp(evs - evs.max())
                    q = (q / q.sum()).tolist()
                else:
                    q = [1.0 / n] * n
                probs = [exp.rate * qi for qi in q]
                probs[0] += 1.0 - exp.rate
            u = rng.random()
            acc, choice = 0.0, n - 1
            for i, p in enumerate(probs):
                acc += p
                if u < acc:
                    choice = i
                    break
            while probs[choice] <= 0.0:  # float round-off at the top end: never pick a zero-probability offer
                choice -= 1
            offer = remaining[choice][1]
            picked.append((offer, probs[choice], choice != 0))
            per_cat[offer.category] = per_cat.get(offer.category, 0) + 1
            del remaining[choice]
            if per_cat[offer.category] >= limit:
                full = offer.category
                remaining = [e for e in remaining if e[1].category != full]
        return picked

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
        histories: Mapping[str, ContactHistory] | None = None,
    ) -> BlockResult:
        """Apply the policy to n customers x m offers at once and choose up to `k` offers per customer.

        `p_accept` (n, m): calibrated scores of the offers at catalogue positions `columns` (all
        offers in catalogue order when None; no repeats). `consented` (n,): `consent_mask`.
        `rule_masks`: `rule_masks(...)` of these customers. `histories`: contact histories by
        customer (read from the store when None; customers absent have none). Nothing is recorded.
        The checks and their order are those of the module docstring and `decide`.
        """
        t = to_epoch(now)
        policy, arb = self.policy, self.policy.arbitration
        ids = list(customer_ids)
        n = len(ids)
        cols = np.arange(len(self._items)) if columns is None else np.asarray(columns, dtype=np.int64)
        m = len(cols)
        p = np.asarray(p_accept, dtype=np.float64).reshape(n, m)
        churn = np.zeros(n) if churn_probability is None else np.asarray(churn_probability, dtype=np.float64)
        cv = np.zeros(n) if customer_value is None else np.asarray(customer_value, dtype=np.float64)
        code = np.zeros((n, m), dtype=np.int8)

        def put(mask: np.ndarray, reason: str) -> None:
            code[(code == 0) & mask] = REASON_INDEX[reason]

        put(~((p >= 0.0) & (p <= 1.0)), "invalid_score")  # NaN compares False
        consented = np.asarray(consented, dtype=bool)
        put(~consented[:, None], "consent")
        open_rows = consented.copy()
        if policy.quiet_hours.is_quiet(channel, now):
            put(np.ones((n, 1), dtype=bool), "quiet_hours")
            open_rows[:] = False
        # Contact history: one empty-history answer for every customer without one, Python for the rest.
        todo = np.flatnonzero(open_rows)
        if histories is None and len(todo):
            histories = self.store.histories([ids[i] for i in todo], now)
        histories = histories or {}
        refs = [self._items[j].ref for j in cols.tolist()] if len(todo) else []
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
            if why is None:
                shows = h.offer_show_counts(policy.offer_cap.days)
                offer_reason[i] = [0 if (r := offer_refusal(h, ref, policy, shows)) is None else REASON_INDEX[r] for ref in refs]
        for reason in ("cap_channel", "cap_outbound"):
            rows = np.array([r == reason for r in row_reason], dtype=bool)
            if rows.any():
                put(rows[:, None], reason)
                open_rows &= ~rows
        # Offer by offer, for the customers still open.
        opened = open_rows[:, None]
        valid = (self._valid_from[cols] <= t) & (t <= self._valid_to[cols])
        put(opened & ~valid[None, :], "validity")
        on_channel = self._on_channel.get(channel)
        if on_channel is None:
            on_channel = self._on_channel[channel] = np.array([channel in o.channels for o in self._items], dtype=bool)
        put(opened & ~on_channel[cols][None, :], "channel")
        rule_of = self._rule_of[cols]  # index in self._rule_list, -1 = no rule
        if (rule_of >= 0).any():
            masks = rule_masks or {}
            ok = np.ones((n, len(self._rule_list)), dtype=bool)
            for r, rule in enumerate(self._rule_list):
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
        ev = p * self._value[cols] * self._lever[cols] - self._cost[cols]
        ret = self._retention[cols]
        if ret.any():
            ev[:, ret] = ev[:, ret] + (churn * cv)[:, None] * p[:, ret]
        reached = code == 0
        ev = np.where(reached, ev, np.nan)
        put(reached & (ev < arb.min_expected_value), "min_value")
        eligible = code == 0

        picks, props, explored = self._choose(ev, eligible, cols, k, draws)
        # Diversity: eligible offers left out because their category is full.
        if (picks >= 0).any():
            cats = self._category[cols]
            picked_cat = np.where(picks >= 0, cats[np.maximum(picks, 0)], -1)  # (n, k)
            same = (picked_cat[:, :, None] == cats[None, None, :]).sum(axis=1)  # picks in each cell's category
            chosen = (picks[:, :, None] == np.arange(m)[None, None, :]).any(axis=1)
            code[eligible & ~chosen & (same >= arb.max_per_category)] = _DIVERSITY
        return BlockResult(cols, picks, props, explored, ev, code)

    def _without_history(self, channel: str) -> tuple[str | None, np.ndarray]:
        """What the caps say to a customer with no contact and no decline (per catalogue offer)."""
        cached = self._empty.get(channel)
        if cached is None:
            empty = ContactHistory("", 0.0)
            codes = [offer_refusal(empty, o.ref, self.policy, {}) for o in self._items]
            cached = self._empty[channel] = (
                decision_refusal(empty, channel, self.policy),
                np.array([0 if r is None else REASON_INDEX[r] for r in codes], dtype=np.int8),
            )
        return cached

    def _choose(
        self, ev: np.ndarray, eligible: np.ndarray, cols: np.ndarray, k: int, draws: Draws
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The selection of the module docstring for every row at once (columns of the picks)."""
        n, m = ev.shape
        exp = self.policy.arbitration.exploration
        limit = self.policy.arbitration.max_per_category
        picks = np.full((n, k), -1, dtype=np.int64)
        props = np.zeros((n, k))
        explored = np.zeros((n, k), dtype=bool)
        if n == 0 or m == 0 or not eligible.any():
            return picks, props, explored
        if (exp.method == "softmax" and exp.rate > 0.0) or n <= _ROWS_FOR_ARRAYS:
            # Softmax, or a few rows (one request): the one-customer selection, row by row.
            items, col_list = self._items, cols.tolist()
            for i in np.flatnonzero(eligible.any(axis=1)).tolist():
                # Only the eligible cells, and a column per offer object for the picks (no map of all offers).
                cells = np.flatnonzero(eligible[i]).tolist()
                column = {id(items[col_list[c]]): c for c in cells}
                row = [(e, items[col_list[c]]) for e, c in zip(ev[i, cells].tolist(), cells, strict=True)]
                stream = _RowDraws(draws, i)
                for r, (o, prop, exp_) in enumerate(self._select(row, k, stream)):  # type: ignore[arg-type]
                    picks[i, r], props[i, r], explored[i, r] = column[id(o)], prop, exp_
            return picks, props, explored
        # Sort every row by (-ev, offer_id); ineligible cells last.
        key = np.where(eligible, -np.where(eligible, ev, 0.0), np.inf)
        tie = np.broadcast_to(self._id_order[cols], (n, m))
        order = np.lexsort((tie, key), axis=-1)
        rows_all = np.arange(n)[:, None]
        remaining = eligible[rows_all, order]
        cat_sorted = self._category[cols][order]
        per_cat = np.zeros((n, max(self._n_categories, 1)), dtype=np.int64)
        for r in range(k):
            left = remaining.sum(axis=1)
            active = np.flatnonzero(left > 0)
            if not len(active):
                break
            rem = remaining[active]
            nr = left[active]
            first = np.argmax(rem, axis=1)
            u = np.asarray(draws(r, active), dtype=np.float64)
            a = np.arange(len(active))
            if exp.rate <= 0.0:
                probs = np.zeros(rem.shape)
                probs[a, first] = 1.0
            else:
                probs = np.where(rem, (exp.rate * (1.0 / nr))[:, None], 0.0)
                probs[a, first] += 1.0 - exp.rate
                single = nr == 1
                if single.any():
                    probs[single] = 0.0
                    probs[np.flatnonzero(single), first[single]] = 1.0
            acc = np.cumsum(probs, axis=1)
            hit = rem & (u[:, None] < acc)
            has = hit.any(axis=1)
            positive = rem & (probs > 0.0)
            last = m - 1 - np.argmax(positive[:, ::-1], axis=1)
            choice = np.where(has, np.argmax(hit, axis=1), last)
            picks[active, r] = order[active, choice]
            props[active, r] = probs[a, choice]
            explored[active, r] = choice != first
            remaining[active, choice] = False
            cat = cat_sorted[active, choice]
            per_cat[active, cat] += 1
            full = per_cat[active, cat] >= limit
            if full.any():
                rows = active[full]
                remaining[rows] &= cat_sorted[rows] != cat[full][:, None]
        return picks, props, explored

    # ------------------------------------------------------------------ decide
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
        reserve: bool = True,
        history: ContactHistory | None = None,
    ) -> Decision:
        """Decide which offers (0..k) to make to `customer_id` on `channel` at `now` (UTC).

        `history`: the customer's contact history at `now` when the caller has read it already
        (`ContactStore.read_customer`); None reads it from the store. Either way the reservation
        re-checks the caps atomically.
        `consents`: channel -> latest consent (absent: no row) or a `ConsentBook`.
        `reserve=False` answers without recording anything (what-if / batch scoring).
        `rng`: a generator, or an integer seed (see `uniform`), or None (this arbiter's generator).
        The policy itself is `arbitrate_block` with one row.
        """
        if channel not in CONTACT_CHANNELS:
            raise ValueError(f"channel must be one of {CONTACT_CHANNELS}, got {channel!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if isinstance(rng, int | np.integer):
            draws = seeded_draws(np.array([int(rng) % 2**64], dtype=np.uint64))
        else:
            draws = generator_draws(self._rng if rng is None else rng)
        if now.tzinfo is not None:
            now = now.astimezone(UTC).replace(tzinfo=None)
        decision_id = decision_id or uuid.uuid4().hex
        # (offer_id, p_accept, contributions) without a `Candidate` per offer for a mapping (the engine's 50).
        cands: Iterable[tuple[str, object, Mapping[str, float] | None]] = (
            ((o, p, None) for o, p in candidates.items())
            if isinstance(candidates, Mapping)
            else ((c.offer_id, c.p_accept, c.contributions) for c in candidates)
        )
        suppressed: list[Suppressed] = []
        shared = self._suppressed

        def drop(oid: str, reason: str) -> None:
            # Catalogue offers: the shared frozen record (~35 drops per decision cost ~0.1 ms as
            # new objects). Anything else: a validated one.
            key = (oid, reason)
            record = shared.get(key)
            if record is None:
                if type(oid) is not str or oid not in self._offers:
                    suppressed.append(Suppressed(offer_id=oid, reason=reason))
                    return
                record = shared[key] = Suppressed.model_construct(offer_id=oid, reason=reason)
            suppressed.append(record)

        known: list[tuple[str, float, Mapping[str, float] | None, _Offer]] = []
        seen: set[str] = set()
        for oid, p, contributions in cands:
            o = self._offers.get(oid)
            if o is None:
                drop(oid, "unknown_offer")
            elif oid in seen:
                continue
            elif not (isinstance(p, int | float) and 0.0 <= p <= 1.0):
                drop(oid, "invalid_score")
            else:
                seen.add(oid)
                known.append((oid, p, contributions, o))

        consented = np.array([self._consented(customer_id, channel, now, consents)])
        histories: dict[str, ContactHistory] = {}
        if consented[0] and not self.policy.quiet_hours.is_quiet(channel, now):
            histories[customer_id] = self.store.history(customer_id, now) if history is None else history
        block = self.arbitrate_block(
            [customer_id],
            channel,
            now,
            np.array([[float(p) for _, p, _, _ in known]], dtype=np.float64).reshape(1, len(known)),
            columns=np.array([self._index[oid] for oid, _, _, _ in known], dtype=np.int64),
            rule_masks=self.rule_masks(features, channel, now, context),
            churn_probability=np.array([churn_probability], dtype=np.float64),
            customer_value=np.array([customer_value], dtype=np.float64),
            k=k,
            draws=draws,
            consented=consented,
            histories=histories,
        )
        for c in block.suppressed_order(0):
            drop(known[c][0], REASON_CODES[int(block.reason[0, c]) - 1])
        picked = [
            (known[c][3], float(block.propensity[0, r]), bool(block.explored[0, r]), c)
            for r, c in enumerate(block.picks[0].tolist())
            if c >= 0
        ]
        slate = math.prod(p for _, p, _, _ in picked) if picked else 1.0

        if reserve:
            result = self.store.check_and_reserve(
                customer_id,
                channel,
                [o.ref for o, _, _, _ in picked],
                now,
                self.policy,
                decision_id,
                {o.offer_id: p for o, p, _, _ in picked},
                model_versions,
            )
            kept = {r.offer_id for r in result.reserved}
            for oid, why in result.refused:
                drop(oid, why)
            picked = [x for x in picked if x[0].offer_id in kept]

        shown: list[ShownOffer] = []
        for rank, (o, prop, explored, c) in enumerate(picked, start=1):
            _, p_accept, contributions, _ = known[c]
            shown.append(
                ShownOffer(
                    offer_id=o.offer_id,
                    rank=rank,
                    p_accept=float(p_accept),
                    expected_value=float(block.ev[0, c]),
                    propensity=float(prop),
                    explored=explored,
                    reasons=self.offer_reasons(o.offer_id, churn_probability, explored, contributions),
                )
            )
        return Decision(
            decision_id=decision_id,
            customer_id=customer_id,
            channel=channel,
            ts=now,
            offers=shown,
            suppressed=suppressed,
            model_versions=dict(model_versions or {}),
            fallback=fallback,
            slate_propensity=slate,
        )

    def offer_reasons(
        self, offer_id: str, churn_probability: float, explored: bool, contributions: Mapping[str, float] | None = None
    ) -> list[str]:
        """The arbiter's reasons for showing an offer (after the top contributions, when given)."""
        o = self._offers[offer_id]
        reasons = (
            [f"{name}:{value:+.4g}" for name, value in sorted(contributions.items(), key=lambda kv: -abs(kv[1]))[:3]]
            if contributions
            else []
        )
        if o.rule is not None:
            reasons.append(f"eligibility: {o.rule.text}")
        if o.kind == "retention" and churn_probability:
            reasons.append("retention value: churn_probability x customer_value")
        reasons.append("explored" if explored else "best expected value")
        return reasons


class _RowDraws:
    """One row's draws of a block, as the `random()` of a generator (for `Arbiter._select`)."""

    def __init__(self, draws: Draws, row: int) -> None:
        self._draws, self._row, self._rank = draws, np.array([row]), 0

    def random(self) -> float:
        u = float(self._draws(self._rank, self._row)[0])
        self._rank += 1
        return u

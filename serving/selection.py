"""Selection: from the expected values of a customer's eligible offers to the offers shown.

Selection is sequential, without replacement. At each rank the remaining set R holds the eligible
offers not yet picked whose category is below `max_per_category`; the greedy pick is the best ev
in R (ties: smallest offer_id). With exploration rate e the pick is drawn from
    P(o) = (1 - e) [o is greedy] + e q(o),
q uniform over R (epsilon_greedy) or q(o) proportional to exp(ev(o) / temperature) (softmax)
(`rank_probabilities`). The recorded `propensity` of a shown offer is that P(o) at its rank, given
the offers at earlier ranks; the product over ranks (`slate_propensity`) is the probability of the
whole ordered answer. For k = 1 it is the plain probability that the offer was chosen.

`select_row` is the rule for one customer; `select_block` applies it to a block of customers
(NumPy over the block for epsilon-greedy; the row rule for softmax and for a few rows, where
array set-up costs more). The two agree draw for draw (tests/serving/test_selection.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

import numpy as np

from serving.draws import Draws, RowDraws
from serving.policy import Arbitration, Exploration

#: Below this many customers `select_block` runs the row rule (`select_row`): array set-up costs more.
ROWS_FOR_ARRAYS = 4


class Choice(Protocol):
    """What the selection needs to know of an offer."""

    @property
    def offer_id(self) -> str: ...

    @property
    def category(self) -> str: ...


T = TypeVar("T", bound=Choice)


class Uniforms(Protocol):
    def random(self) -> float: ...


def rank_probabilities(evs: Sequence[float], exploration: Exploration) -> list[float]:
    """P(o) at one rank for the remaining offers, given best first (`evs` in descending order)."""
    n = len(evs)
    if exploration.rate <= 0.0 or n == 1:
        return [1.0] + [0.0] * (n - 1)
    if exploration.method == "softmax":
        z = np.array(evs) / exploration.temperature
        q = np.exp(z - z.max())
        q = (q / q.sum()).tolist()
    else:
        q = [1.0 / n] * n
    probs = [exploration.rate * qi for qi in q]
    probs[0] += 1.0 - exploration.rate
    return probs


def select_row(eligible: Sequence[tuple[float, T]], k: int, arbitration: Arbitration, rng: Uniforms) -> list[tuple[T, float, bool]]:
    """Up to `k` picks of one customer from (ev, offer) pairs: (offer, propensity at its rank, explored)."""
    limit = arbitration.max_per_category
    remaining = sorted(eligible, key=lambda e: (-e[0], e[1].offer_id))
    picked: list[tuple[T, float, bool]] = []
    per_cat: dict[str, int] = {}
    for _ in range(k):
        if not remaining:
            break
        n = len(remaining)
        probs = rank_probabilities([ev for ev, _ in remaining], arbitration.exploration)
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


def select_block(
    ev: np.ndarray,
    eligible: np.ndarray,
    offers: Sequence[Choice],
    id_order: np.ndarray,
    category: np.ndarray,
    k: int,
    draws: Draws,
    arbitration: Arbitration,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`select_row` for every row of an (n, m) block at once: (picks (n, k) columns, -1 = none;
    propensities; explored). `offers[j]`, `id_order[j]` (rank of the offer id) and `category[j]`
    (a code in 0..) describe column j."""
    n, m = ev.shape
    exp = arbitration.exploration
    limit = arbitration.max_per_category
    picks = np.full((n, k), -1, dtype=np.int64)
    props = np.zeros((n, k))
    explored = np.zeros((n, k), dtype=bool)
    if n == 0 or m == 0 or not eligible.any():
        return picks, props, explored
    if (exp.method == "softmax" and exp.rate > 0.0) or n <= ROWS_FOR_ARRAYS:
        for i in np.flatnonzero(eligible.any(axis=1)).tolist():
            # Only the eligible cells, and a column per offer object for the picks (no map of all offers).
            cells = np.flatnonzero(eligible[i]).tolist()
            column = {id(offers[c]): c for c in cells}
            row = [(e, offers[c]) for e, c in zip(ev[i, cells].tolist(), cells, strict=True)]
            for r, (o, prop, exp_) in enumerate(select_row(row, k, arbitration, RowDraws(draws, i))):
                picks[i, r], props[i, r], explored[i, r] = column[id(o)], prop, exp_
        return picks, props, explored
    # Sort every row by (-ev, offer_id); ineligible cells last.
    key = np.where(eligible, -np.where(eligible, ev, 0.0), np.inf)
    tie = np.broadcast_to(id_order, (n, m))
    order = np.lexsort((tie, key), axis=-1)
    rows_all = np.arange(n)[:, None]
    remaining = eligible[rows_all, order]
    cat_sorted = category[order]
    per_cat = np.zeros((n, max(int(category.max()) + 1 if m else 1, 1)), dtype=np.int64)
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

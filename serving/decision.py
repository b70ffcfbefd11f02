"""What a decision is: the offers shown, the candidates suppressed and why, and the reasons given.

The types every caller of the decision pipeline sees (`Decision` is what `/recommend` answers),
the suppression reason codes in the order the arbiter checks them, `BlockResult` (the arbiter's
answer for a block of customers) and `top_reasons`, the one formatting of a shown offer's largest
feature contributions as codes (their plain words: `serving.reasons`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

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
    # holdouts (serving.holdout), after the arbiter: the customer is in the universal control group
    # of this channel; the decision was randomised to "no offer"
    "control_group",
    "explore_no_offer",
    # uplift objective: another incentive variant of the same offer is kept (the cheapest that pays)
    "incentive_variant",
)
#: Codes of `BlockResult.reason`: 0 = not suppressed, i + 1 = REASON_CODES[i].
REASON_INDEX: dict[str, int] = {r: i + 1 for i, r in enumerate(REASON_CODES)}
DIVERSITY = REASON_INDEX["diversity"]
INVALID_SCORE = REASON_INDEX["invalid_score"]
#: How many feature contributions a shown offer's reasons start with.
TOP_REASONS = 3


def top_indices(contributions: np.ndarray | Sequence[float]) -> list[int]:
    """Positions of the `TOP_REASONS` largest contributions by magnitude (ties: first name)."""
    values = np.asarray(contributions, dtype=np.float64)
    return np.argsort(-np.abs(values), kind="stable")[:TOP_REASONS].tolist()


def top_indices_block(contributions: np.ndarray) -> np.ndarray:
    """`top_indices` of every row of a (rows, features) block in one sort: (rows, TOP_REASONS).

    The same stable sort along each row as `top_indices` does row by row, so the same positions
    (ties: first name); a chunk of batch scoring sorts once instead of twice per shown offer."""
    values = np.asarray(contributions, dtype=np.float64)
    return np.argsort(-np.abs(values), axis=1, kind="stable")[:, :TOP_REASONS]


def reason_code(name: str, contribution: float) -> str:
    """One contribution as the code a shown offer's `reasons` list: "name:+value"."""
    return f"{name}:{contribution:+.4g}"


def top_reasons(names: Sequence[str], contributions: np.ndarray | Sequence[float]) -> list[str]:
    """The `TOP_REASONS` largest contributions by magnitude (ties: first name), as "name:+value"."""
    values = np.asarray(contributions, dtype=np.float64)
    return [reason_code(names[j], float(values[j])) for j in top_indices(values)]


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
    #: (n,) P(the decision makes no contact) and (n,) the holdout code that emptied the row (0: none;
    #: REASON_INDEX of control_group or explore_no_offer), set by `serving.holdout.hold_out`; None
    #: before it (or without holdouts): a row makes no contact with probability 1 if it has no
    #: pick, 0 otherwise.
    p_none: np.ndarray | None = None
    held: np.ndarray | None = None

    def none_propensity(self, row: int) -> float:
        """P(no contact) of row `row` (see `p_none`)."""
        if self.p_none is not None:
            return float(self.p_none[row])
        return 0.0 if self.picks.shape[1] and self.picks[row, 0] >= 0 else 1.0

    def suppressed_order(self, row: int) -> list[int]:
        """Columns of row `row` that were suppressed, in the order a `Decision` reports them:
        invalid scores first (they are refused before any rule), then by column, diversity last."""
        codes = self.reason[row]
        return (np.flatnonzero(codes == INVALID_SCORE).tolist()
                + np.flatnonzero((codes != 0) & (codes != DIVERSITY) & (codes != INVALID_SCORE)).tolist()
                + np.flatnonzero(codes == DIVERSITY).tolist())


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
    #: Reason codes: the largest feature contributions ("name:+log-odds"), then the arbiter's own.
    reasons: list[str]
    #: The same reasons in plain words, in the same order (`serving.reasons`).
    reason_texts: list[str] = Field(default_factory=list)


class Suppressed(BaseModel):
    """A candidate left out, with its reason code. Frozen: the arbiter hands out one shared
    instance per (catalogue offer, reason) instead of building ~35 objects per decision."""

    model_config = ConfigDict(frozen=True)

    offer_id: str
    reason: str
    #: The reason in plain words, with the setting that removed the offer (`serving.reasons`).
    reason_text: str = ""


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

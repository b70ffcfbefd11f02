"""Holdouts: the universal control group and randomised "no offer", on top of the arbiter's picks.

Pure, like the arbiter: from a block's `BlockResult`, the customer ids, the channel and the
decision seeds, `hold_out` returns the block with

- every row of a customer in the control group (`nbo.control`, `[control_group]` of policy.toml)
  emptied on the channels the group is held out of: its candidates are suppressed with the reason
  `control_group`;
- every other row that had an offer emptied with probability `exploration.no_offer_rate` (a
  counter-based draw of the decision seed, `NO_OFFER_DRAW`, apart from the selection's draws):
  its candidates are suppressed with `explore_no_offer`;
- `p_none`: the probability that the decision makes no contact, over the policy's randomisation
  with the control group's included (the group is a random share of customers):
  share + (1 - share) x no_offer_rate for a row that had an offer, 1 for one that had none;
- the rank-1 propensity of every offer kept multiplied by (1 - share) x (1 - no_offer_rate), the
  probability that an offer is made at all (ranks below are conditional on the ones above).

`share` is the control group's share on a channel it holds, 0 elsewhere. A policy without
holdouts (share 0, rate 0: the default) leaves the block as it is, bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from nbo.control import in_control
from serving.decision import DIVERSITY, REASON_INDEX, BlockResult
from serving.draws import uniform
from serving.policy import ContactPolicy

#: The counter of the no-offer draw in a decision seed's stream (the selection uses ranks 0..k-1).
NO_OFFER_DRAW = 1000
CONTROL = REASON_INDEX["control_group"]
EXPLORE = REASON_INDEX["explore_no_offer"]


#: A decision's suppression reasons -> the `no_offers` table's reason (anything else: "policy").
NO_OFFER_REASONS_BY_SUPPRESSION = {"control_group": "control", "explore_no_offer": "explore"}


def no_offer_reason(reasons: Sequence[str]) -> str:
    """The `no_offers` reason of a decision that made no contact, from its suppression reasons:
    `control` or `explore` when a holdout emptied it, else `policy` (nothing to offer). Its
    probability is the decision's `slate_propensity` (`p_none` of `hold_out`)."""
    return next((NO_OFFER_REASONS_BY_SUPPRESSION[r] for r in reasons if r in NO_OFFER_REASONS_BY_SUPPRESSION), "policy")


def control_rows(policy: ContactPolicy, customer_ids: Sequence[str], channel: str) -> np.ndarray:
    """Bool per customer: in the control group held out of `channel`."""
    group = policy.control_group
    if not group.holds(channel):
        return np.zeros(len(customer_ids), dtype=bool)
    return in_control(customer_ids, group.share, group.salt)


def hold_out(
    result: BlockResult, policy: ContactPolicy, customer_ids: Sequence[str], channel: str, seeds: np.ndarray
) -> BlockResult:
    """The block after the control group and the randomised no-offer (module docstring).

    `seeds`: the decision seed of each row (`draws.decision_seed`). Reads and records nothing.
    """
    n = len(customer_ids)
    rate = policy.arbitration.exploration.no_offer_rate
    share = policy.control_group.share if policy.control_group.holds(channel) else 0.0
    has_offer = result.picks[:, 0] >= 0 if result.picks.shape[1] else np.zeros(n, dtype=bool)
    p_none = np.where(has_offer, share + (1.0 - share) * rate, 1.0)
    if not policy.holds_out:
        return dataclasses.replace(result, p_none=p_none, held=np.zeros(n, dtype=np.int8))
    control = control_rows(policy, customer_ids, channel)
    explore = np.zeros(n, dtype=bool)
    if rate > 0.0 and n:
        explore = ~control & has_offer & (uniform(np.asarray(seeds, dtype=np.uint64), NO_OFFER_DRAW) < rate)
    held = np.where(control, CONTROL, np.where(explore, EXPLORE, 0)).astype(np.int8)
    picks, propensity, explored, reason = (result.picks.copy(), result.propensity.copy(), result.explored.copy(),
                                           result.reason.copy())
    emptied = held > 0
    if emptied.any():
        # Candidates the arbiter left open (chosen, eligible, or left out by diversity) take the holdout's reason.
        open_cells = (reason == 0) | (reason == DIVERSITY)
        reason = np.where(emptied[:, None] & open_cells, held[:, None], reason).astype(np.int8)
        picks[emptied] = -1
        propensity[emptied] = 0.0
        explored[emptied] = False
    kept = has_offer & ~emptied
    if picks.shape[1]:
        propensity[kept, 0] = propensity[kept, 0] * ((1.0 - share) * (1.0 - rate))
    return dataclasses.replace(result, picks=picks, propensity=propensity, explored=explored, reason=reason,
                               p_none=p_none, held=held)

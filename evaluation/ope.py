"""Off-policy estimators: the value a target policy would have had on decisions logged by another.

For logged decision i the logging policy chose action a_i with probability mu_i (`propensity`)
and we observed reward r_i. The target policy would choose a_i with probability pi_i; w_i =
pi_i / mu_i. Per decision (the unit of every estimate):

    IPS    = mean(w_i r_i)
    SNIPS  = sum(w_i r_i) / sum(w_i)
    DR     = mean( sum_a pi(a|x_i) q(x_i, a)  +  w_i (r_i - q(x_i, a_i)) )

where q is a reward model (for nbo: the candidate's own propensity model, q = p_accept x value -
cost for the expected-value reward, q = p_accept for the acceptance reward). "No offer" is an
action too: when the target policy would make no offer its reward is 0, so it contributes only
through the direct term.

Confidence intervals are CLT intervals on the per-decision terms (for SNIPS the delta method
on the ratio); `bootstrap_interval` is there for a check. Diagnostics that say when a number must
not be trusted: the effective sample size (sum w)^2 / sum w^2, the largest weight's share of the
total, and how many logged decisions the target policy could have made at all (w > 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z_95 = 1.959963984540054
#: An estimate is flagged as too uncertain when any of these holds.
MIN_MATCHES = 200  # decisions with w > 0
MIN_ESS = 100.0  # effective sample size of the weights
MAX_WEIGHT_SHARE = 0.05  # largest weight / sum of weights


@dataclass(frozen=True)
class Estimate:
    """A value per decision with its 95 % confidence interval."""

    name: str
    value: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Diagnostics:
    n: int  # logged decisions
    matches: int  # decisions the target policy could have made (w > 0)
    ess: float  # effective sample size (sum w)^2 / sum w^2
    max_weight: float
    max_weight_share: float  # largest weight / sum of weights
    mean_weight: float  # ~1 when the weights are right (support and propensities)

    def warnings(self) -> list[str]:
        """Plain reasons why an estimate on these weights should not decide anything."""
        out = []
        if self.matches < MIN_MATCHES:
            out.append(f"only {self.matches} logged decisions match what the target policy would do "
                       f"(need {MIN_MATCHES})")
        if self.ess < MIN_ESS:
            out.append(f"effective sample size {self.ess:.0f} < {MIN_ESS:.0f}")
        if self.max_weight_share > MAX_WEIGHT_SHARE:
            out.append(f"one decision carries {self.max_weight_share:.0%} of the total weight "
                       f"(max weight {self.max_weight:.1f})")
        return out


def _check(pi: np.ndarray, mu: np.ndarray, reward: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pi, mu, reward = (np.asarray(a, dtype=float) for a in (pi, mu, reward))
    if not (pi.shape == mu.shape == reward.shape) or pi.ndim != 1:
        raise ValueError("pi, mu and reward must be 1-d arrays of equal length")
    if len(mu) and not ((mu > 0) & (mu <= 1)).all():
        raise ValueError("logging propensities must be in (0, 1]")
    if len(pi) and not ((pi >= 0) & (pi <= 1)).all():
        raise ValueError("target probabilities must be in [0, 1]")
    return pi, mu, reward


def mean_interval(name: str, terms: np.ndarray) -> Estimate:
    n = len(terms)
    if n == 0:
        return Estimate(name, float("nan"), float("nan"), float("nan"))
    mean = float(terms.mean())
    se = float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return Estimate(name, mean, mean - Z_95 * se, mean + Z_95 * se)


def weights(pi: np.ndarray, mu: np.ndarray) -> np.ndarray:
    return np.asarray(pi, dtype=float) / np.asarray(mu, dtype=float)


def ips(pi: np.ndarray, mu: np.ndarray, reward: np.ndarray) -> Estimate:
    """Inverse propensity scoring: unbiased when mu > 0 wherever pi > 0."""
    pi, mu, reward = _check(pi, mu, reward)
    return mean_interval("ips", pi / mu * reward)


def snips(pi: np.ndarray, mu: np.ndarray, reward: np.ndarray, coverage: np.ndarray | None = None) -> Estimate:
    """Self-normalised IPS: sum(w r) / sum(w); a little biased, much less variable.

    `coverage` (per decision: the target's probability of making any offer, 1 - P(no offer))
    handles the "no offer" action, whose reward (0) is known and never logged: E[w] is then
    mean(coverage), not 1, so the ratio is scaled by it. Default: the target always makes an offer.
    """
    pi, mu, reward = _check(pi, mu, reward)
    w = pi / mu
    n, total = len(w), float(w.sum())
    scale = 1.0 if coverage is None else float(np.mean(coverage))
    if n == 0 or total <= 0:
        return Estimate("snips", 0.0 if n and scale == 0 else float("nan"), float("nan"), float("nan"))
    value = float((w * reward).sum() / total)
    # delta method: se of the ratio = sqrt(sum (w (r - value))^2) / sum(w)
    resid = w * (reward - value)
    se = float(np.sqrt((resid**2).sum()) / total) if n > 1 else float("inf")
    return Estimate("snips", scale * value, scale * (value - Z_95 * se), scale * (value + Z_95 * se))


def doubly_robust(pi: np.ndarray, mu: np.ndarray, reward: np.ndarray, q_logged: np.ndarray,
                  direct: np.ndarray) -> Estimate:
    """Doubly robust: `direct` = sum_a pi(a|x) q(x, a) per decision (the reward model's value of
    the target policy), corrected by w (r - q(x, a_logged)). Unbiased if either the weights or
    the reward model are right."""
    pi, mu, reward = _check(pi, mu, reward)
    q_logged, direct = np.asarray(q_logged, dtype=float), np.asarray(direct, dtype=float)
    if q_logged.shape != pi.shape or direct.shape != pi.shape:
        raise ValueError("q_logged and direct must have one value per decision")
    return mean_interval("dr", direct + pi / mu * (reward - q_logged))


def diagnostics(pi: np.ndarray, mu: np.ndarray) -> Diagnostics:
    w = weights(pi, mu)
    total, sq = float(w.sum()), float((w**2).sum())
    return Diagnostics(
        n=len(w),
        matches=int((w > 0).sum()),
        ess=total**2 / sq if sq > 0 else 0.0,
        max_weight=float(w.max()) if len(w) else 0.0,
        max_weight_share=float(w.max() / total) if total > 0 else 1.0,
        mean_weight=float(w.mean()) if len(w) else float("nan"),
    )


def bootstrap_interval(terms_fn, n: int, reps: int = 500, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap of `terms_fn(index array) -> estimate` over decisions (a cross-check
    of the CLT intervals; resampling decisions, not customers)."""
    rng = np.random.default_rng(seed)
    values = np.array([terms_fn(rng.integers(0, n, n)) for _ in range(reps)])
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


@dataclass(frozen=True)
class IncrementalEstimates:
    """What a target policy adds over making no contact, per logged decision (issue 21).

    `policy`: the target's value on the categories it would offer, `none`: what no contact earns
    on the same categories, `ips` = policy - none, `dr` (with a reward model) the doubly robust one.
    """

    policy: Estimate
    none: Estimate
    ips: Estimate
    dr: Estimate | None
    #: Self-normalised IPS: each part's weights normalised to their known mean (module of `incremental_value`).
    snips: Estimate | None = None
    #: DR with the baseline only (no contact's mean outcome, delta = 0): IPS with a control variate.
    dr_baseline: Estimate | None = None
    #: Checks of the weights: with right propensities the contact rows' weights pi(a_i)/mu_i
    #: average the target's P(contact) (`coverage`, the mean of sum_a pi) and the no-contact rows'
    #: 1/mu_i average 1 (over all decisions, 0 on the other rows).
    contact_weight_mean: float = float("nan")
    none_weight_mean: float = float("nan")
    coverage: float = float("nan")


def incremental_value(pi: np.ndarray, logged: np.ndarray, mu: np.ndarray, reward: np.ndarray, outcome_none: np.ndarray,
                      baseline: np.ndarray | None = None, delta: np.ndarray | None = None) -> IncrementalEstimates:
    """Incremental value per decision of a target policy against no contact, on a randomised log.

    `pi` (n, m): the target's probability of making each offer at each logged decision (the rest,
    1 - sum, is "no contact"); `logged` (n,): the offer the log made (column of `pi`) or -1 for a
    logged "no contact"; `mu` (n,): the logged action's propensity (of the offer, or of making
    none); `reward` (n,): the outcome of a logged contact (the margin of the offer's category in
    the window - incentive given - contact cost; ignored on "no contact" rows); `outcome_none`
    (n, m): on a "no contact" row, the outcome each offer's reward would count without its contact
    (the margin of the offer's category in the window; ignored on contact rows). Then

        incremental = E[ sum_a pi(a|x) (Y_a(a) - Y_a(none)) ]
        IPS terms   = [contact a_i] pi(a_i)/mu_i r_i  -  [none] 1/mu_i sum_a pi(a) Y0_ia

    DR with a reward model: `baseline` (n, m) the expected outcome without contact and `delta`
    (n, m) the expected incremental value of each offer (for the uplift policy: its own ev):

        DR terms = sum_a pi(a) delta_a + [contact] w (r - baseline_a - delta_a)
                   - [none] 1/mu sum_a pi(a) (Y0_a - baseline_a)

    unbiased when the propensities are right, whatever the reward model (it only lowers the
    variance). `dr_baseline`: the same with delta = 0 (the baseline alone; a reward model that
    claims nothing about the offers, so the target's own optimism cannot enter). Intervals as
    `mean_interval`.

    SNIPS normalises each part by the known mean of its weights: E[w] over the decisions is the
    target's P(contact), mean(sum_a pi), and E[1/mu over "no contact" rows] is 1, so

        SNIPS = mean(sum_a pi) sum(w r) / sum(w)  -  sum(v g) / sum(v),   v = [none]/mu, g = sum_a pi Y0_a

    (a little biased, consistent; its interval by the delta method on the two ratios and the mean).
    """
    pi = np.asarray(pi, dtype=float)
    logged = np.asarray(logged, dtype=np.int64)
    n = len(logged)
    if pi.ndim != 2 or pi.shape[0] != n:
        raise ValueError("pi must be (decisions, offers)")
    _, mu, reward = _check(np.zeros(n), mu, reward)
    y0 = np.asarray(outcome_none, dtype=float)
    if y0.shape != pi.shape:
        raise ValueError("outcome_none must have the shape of pi")
    if ((logged < -1) | (logged >= pi.shape[1])).any():
        raise ValueError("logged actions must be -1 (no contact) or a column of pi")
    treated = logged >= 0
    rows = np.arange(n)
    w = np.where(treated, pi[rows, np.maximum(logged, 0)] / mu, 0.0)
    inv_none = np.where(treated, 0.0, 1.0 / mu)
    r = np.where(treated, reward, 0.0)
    y0 = np.where(treated[:, None], 0.0, y0)
    policy_terms = w * r
    none_terms = inv_none * (pi * y0).sum(axis=1)
    dr = dr_baseline = None
    if delta is not None or baseline is not None:
        b = np.zeros_like(pi) if baseline is None else np.asarray(baseline, dtype=float)
        if b.shape != pi.shape:
            raise ValueError("baseline and delta must have the shape of pi")
        at = np.maximum(logged, 0)
        none_b = inv_none * (pi * np.where(treated[:, None], 0.0, y0 - b)).sum(axis=1)  # both DRs' no-contact part
        if delta is not None:
            d = np.asarray(delta, dtype=float)
            if d.shape != pi.shape:
                raise ValueError("baseline and delta must have the shape of pi")
            dr = mean_interval("dr", (pi * d).sum(axis=1) + w * (r - b[rows, at] - d[rows, at]) - none_b)
        if baseline is not None:
            dr_baseline = mean_interval("dr_baseline", w * (r - b[rows, at]) - none_b)
    return IncrementalEstimates(mean_interval("policy", policy_terms), mean_interval("none", none_terms),
                                mean_interval("ips", policy_terms - none_terms), dr,
                                _incremental_snips(w, r, pi.sum(axis=1), inv_none, (pi * y0).sum(axis=1)), dr_baseline,
                                float(w.mean()) if n else float("nan"), float(inv_none.mean()) if n else float("nan"),
                                float(pi.sum(axis=1).mean()) if n else float("nan"))


def _incremental_snips(w: np.ndarray, r: np.ndarray, coverage: np.ndarray, v: np.ndarray, g: np.ndarray) -> Estimate:
    """SNIPS of `incremental_value` (its docstring) with a delta-method interval: the influence of
    decision i is c w_i (r_i - P) / mean(w) + (coverage_i - c) P - v_i (g_i - N) / mean(v)."""
    n = len(w)
    sw, sv = float(w.sum()), float(v.sum())
    if n == 0 or sv <= 0:
        return Estimate("snips", float("nan"), float("nan"), float("nan"))
    c = float(coverage.mean())
    part = float((w * r).sum() / sw) if sw > 0 else 0.0
    none = float((v * g).sum() / sv)
    value = c * part - none
    influence = (c * w * (r - part) / (sw / n) if sw > 0 else 0.0) + (coverage - c) * part - v * (g - none) / (sv / n)
    se = float(np.std(influence, ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return Estimate("snips", value, value - Z_95 * se, value + Z_95 * se)

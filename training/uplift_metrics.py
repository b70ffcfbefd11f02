"""Qini and uplift curves: does a score put first the rows a contact changes most?

All functions take plain arrays: a score (higher = contact first), the arm (1 contacted, 0 not)
and an outcome (a conversion 0/1, or a value in currency units) of rows of a randomised log.
Rows are sorted by score, best first (ties in a seeded random order, so a constant score is the
random targeting it is). At each cut (the top fraction phi of rows):

    qini(phi)   = R_T(phi) - R_C(phi) x N_T(phi) / N_C(phi)
    uplift(phi) = (R_T(phi) / N_T(phi) - R_C(phi) / N_C(phi)) x (N_T(phi) + N_C(phi))

R_T, R_C: summed outcomes of treated / control rows in the cut; N_T, N_C their counts. Qini(phi)
is the outcome the contacts of the cut added; uplift(phi) what contacting all of it would add.
`qini_coefficient`: the area between the Qini curve and the straight line of random targeting
(0 for random, higher is better), divided by the number of treated rows (so it reads as outcome
per treated row); `auuc`: the mean of uplift(phi) over the cuts, per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure


@dataclass(frozen=True)
class QiniCurve:
    fraction: np.ndarray  # top fraction of rows, increasing
    qini: np.ndarray  # outcome added by the cut's contacts
    uplift: np.ndarray  # outcome added if the whole cut were contacted
    n_treated: int
    n: int

    @property
    def coefficient(self) -> float:
        """Area between the Qini curve and random targeting, per treated row."""
        random = self.fraction * self.qini[-1]
        return float(np.trapezoid(self.qini - random, self.fraction) / max(self.n_treated, 1))

    @property
    def auuc(self) -> float:
        """Mean of the uplift curve over the cuts, per row."""
        return float(np.trapezoid(self.uplift, self.fraction) / max(self.n, 1))


def qini_curve(score: np.ndarray, treatment: np.ndarray, outcome: np.ndarray, bins: int = 100,
               seed: int = 0) -> QiniCurve:
    """The Qini and uplift curves of `score` on `bins` cuts (module docstring)."""
    score = np.asarray(score, dtype=np.float64)
    t = np.asarray(treatment).astype(bool)
    y = np.asarray(outcome, dtype=np.float64)
    n = len(score)
    if not (len(t) == len(y) == n):
        raise ValueError("score, treatment and outcome differ in length")
    if n == 0 or t.all() or not t.any():
        raise ValueError("a Qini curve needs treated and control rows")
    tiebreak = np.random.default_rng(np.random.SeedSequence([seed, 7919])).random(n)  # not a stream of the caller's seed
    order = np.lexsort((tiebreak, -score))
    t, y = t[order], y[order]
    n_t, n_c = np.cumsum(t), np.cumsum(~t)
    r_t, r_c = np.cumsum(np.where(t, y, 0.0)), np.cumsum(np.where(t, 0.0, y))
    cuts = np.unique(np.ceil(np.linspace(0, n, bins + 1)[1:]).astype(np.int64)) - 1
    nt, nc, rt, rc = n_t[cuts], n_c[cuts], r_t[cuts], r_c[cuts]
    with np.errstate(divide="ignore", invalid="ignore"):
        qini = np.where(nc > 0, rt - rc * nt / nc, rt)
        uplift = np.where((nc > 0) & (nt > 0), (rt / np.maximum(nt, 1) - rc / np.maximum(nc, 1)) * (nt + nc), 0.0)
    fraction = np.r_[0.0, (cuts + 1) / n]
    return QiniCurve(fraction, np.r_[0.0, qini], np.r_[0.0, uplift], int(t.sum()), n)


def qini_figure(curves: dict[str, QiniCurve], what: str = "conversions") -> Figure:
    """The Qini curves of several scores on one chart, with random targeting."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, c in curves.items():
        ax.plot(c.fraction, c.qini, label=f"{name} (Qini {c.coefficient:.4f})")
    last = next(iter(curves.values()))
    ax.plot([0, 1], [0, last.qini[-1]], "k--", label="random")
    ax.set_xlabel("share of rows contacted, best score first")
    ax.set_ylabel(f"incremental {what}")
    ax.set_title(f"Qini curve ({what}), held-out decisions")
    ax.legend(fontsize=7)
    return fig

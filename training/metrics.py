"""Metrics and charts for binary scores: what a data scientist needs to trust a model.

All functions take plain arrays (label in {0, 1}, score in [0, 1]) so the same code evaluates the
LightGBM models, the baselines and the simulator's true probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

_EPS = 1e-6


@dataclass(frozen=True)
class BinaryMetrics:
    """Ranking, probability and targeting quality of one score on one labelled set."""

    n: int
    positives: int
    auc: float
    pr_auc: float
    log_loss: float
    brier: float
    lift_top_decile: float
    capture_top_decile: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in self.__dict__.items()}


def binary_metrics(y: np.ndarray, p: np.ndarray, rank: np.ndarray | None = None) -> BinaryMetrics:
    """AUC, PR-AUC, log loss, Brier, and lift/capture in the top 10% of scores.

    `rank` (default `p`) is the score the ranking metrics use: a model's raw score, when `p` are
    out-of-fold calibrated probabilities whose fold-wise maps would blur the ranking. Undefined
    values (a set with a single class) are NaN rather than an exception: per-segment reports
    often have such segments.
    """
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    r = p if rank is None else np.asarray(rank, dtype=float)
    n, pos = len(y), int(y.sum())
    both = 0 < pos < n
    lift, capture = top_decile(y, r)
    return BinaryMetrics(
        n=n,
        positives=pos,
        auc=float(roc_auc_score(y, r)) if both else float("nan"),
        pr_auc=float(average_precision_score(y, r)) if both else float("nan"),
        log_loss=float(log_loss(y, p, labels=[0, 1])) if n else float("nan"),
        brier=float(brier_score_loss(y, p)) if n else float("nan"),
        lift_top_decile=lift,
        capture_top_decile=capture,
    )


def top_decile(y: np.ndarray, p: np.ndarray, share: float = 0.1) -> tuple[float, float]:
    """(lift, capture) of the top `share` of scores: how much better than random targeting."""
    n = len(y)
    if n == 0 or y.sum() == 0:
        return float("nan"), float("nan")
    k = max(1, int(round(n * share)))
    top = np.argsort(-p, kind="stable")[:k]
    rate_top = y[top].mean()
    return float(rate_top / y.mean()), float(y[top].sum() / y.sum())


def cumulative_gains_chart(y: np.ndarray, scores: dict[str, np.ndarray], title: str) -> Figure:
    """Share of positives captured vs share of population targeted, one line per score."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    y = np.asarray(y, dtype=float)
    x = np.arange(1, len(y) + 1) / max(len(y), 1)
    for name, p in scores.items():
        order = np.argsort(-np.asarray(p), kind="stable")
        ax.plot(x, np.cumsum(y[order]) / max(y.sum(), 1), label=name)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="random")
    ax.set(xlabel="share targeted (highest score first)", ylabel="share of positives captured", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def calibration_chart(y: np.ndarray, scores: dict[str, np.ndarray], title: str, bins: int = 10) -> Figure:
    """Reliability curve: mean predicted vs observed rate in quantile bins of the score."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    y = np.asarray(y, dtype=float)
    top = 0.0
    for name, p in scores.items():
        pred, obs = reliability(y, np.asarray(p, dtype=float), bins)
        ax.plot(pred, obs, "o-", ms=3, label=name)
        top = max(top, float(np.nanmax(pred, initial=0)), float(np.nanmax(obs, initial=0)))
    top = min(1.0, top * 1.05 + 1e-3)
    ax.plot([0, top], [0, top], "k--", lw=0.8, label="perfect")
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title=title, xlim=(0, top), ylim=(0, top))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean prediction and observed rate per quantile bin (equal-count bins)."""
    if len(y) == 0:
        return np.array([]), np.array([])
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, min(bins, len(y)))
    pred = np.array([p[g].mean() for g in groups])
    obs = np.array([y[g].mean() for g in groups])
    return pred, obs


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over quantile bins (mean |predicted - observed|, weighted)."""
    pred, obs = reliability(np.asarray(y, float), np.asarray(p, float), bins)
    return float(np.mean(np.abs(pred - obs))) if len(pred) else float("nan")


def importance_chart(names: list[str], gain: np.ndarray, shap_abs: np.ndarray, title: str, top: int = 20) -> Figure:
    """Gain importance next to mean |SHAP| (from LightGBM's pred_contrib), top features only."""
    order = np.argsort(-shap_abs)[:top][::-1]
    fig = Figure(figsize=(10, 0.3 * len(order) + 1.5))
    axes = fig.subplots(1, 2, sharey=True)
    labels = [names[i] for i in order]
    axes[0].barh(labels, gain[order] / max(gain.sum(), 1e-12))
    axes[0].set(title="gain (share)")
    axes[1].barh(labels, shap_abs[order])
    axes[1].set(title="mean |SHAP| (log-odds)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig

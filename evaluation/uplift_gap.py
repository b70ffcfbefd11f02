"""Where the uplift policy loses to the oracle (issue 21): the gap taken apart on the simulator's truth.

Two instruments:

- **hybrid policies** in the closed loop (`hybrid_scorer`): the uplift arbiter with the TRUE
  P(accept) times the model's incremental share (`uplift_true_accept`), or the model's P(accept)
  times the TRUE incremental share (`uplift_true_share`). With the oracle (TRUE P(accept) and true
  share) and the uplift policy (both from the model) they split the gap into what the acceptance
  estimate and what the cannibalisation estimate cost.
- **one-step decisions** (`GapRecorder`, `one_step`): on sampled days of a closed-loop run, every
  opportunity's model inputs and TRUE effects are kept; any scorer is then asked offline which
  offer (or none) it would pick with no caps, and the true incremental value of its pick is set
  against the oracle's pick on the same opportunity. Losses are sorted by kind (a contact that does
  not pay, a paying contact missed, the wrong offer, the wrong incentive variant: costlier or
  cheaper than the oracle's) and by segment (price sensitivity, organic intent).

Values are currency units per opportunity or summed over the recorded opportunities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from evaluation.uplift_loop import oracle_scorer
from simulator import DayView

HYBRIDS: tuple[str, ...] = ("uplift_true_accept", "uplift_true_share")


def _share(tau: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.divide(tau, p, out=np.zeros_like(tau, dtype=np.float64), where=p > 1e-12)


def mix(name: str, model: tuple[np.ndarray, np.ndarray], truth: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(p, tau) of the hybrid `name` from the model's and the truth's (p, tau)."""
    (p_m, tau_m), (p_t, tau_t) = model, truth
    if name == "uplift_true_accept":
        return p_t, np.clip(p_t * _share(tau_m, p_m), -1.0, 1.0)
    if name == "uplift_true_share":
        return p_m, np.clip(p_m * _share(tau_t, p_t), -1.0, 1.0)
    raise ValueError(f"unknown hybrid {name!r}; use one of {', '.join(HYBRIDS)}")


def hybrid_scorer(name: str, model_score: Callable, view_truth: Callable = oracle_scorer) -> Callable:  # type: ignore[type-arg]
    """A scorer for `ArbiterPolicy`: the model's rule inputs, (p, tau) mixed by `mix`."""

    def score(view: DayView, opp: pd.DataFrame):  # type: ignore[no-untyped-def]
        p_m, inputs, tau_m = model_score(view, opp)
        p_t, _, tau_t = view_truth(view, opp)
        p, tau = mix(name, (p_m, tau_m), (p_t, tau_t))
        return p, inputs, tau

    return score


@dataclass
class GapRecorder:
    """Wraps a closed-loop scorer; every `every` days keeps, per opportunity, the uplift model's
    inputs of every offer and the TRUE p, tau, q (organic) and eligibility, plus the customer's
    (latent) price sensitivity. Returns the wrapped scorer's answer unchanged."""

    scorer: Callable  # type: ignore[type-arg]
    inputs: Callable  # type: ignore[type-arg]  # model_inputs(world, sim)
    price_sensitivity: np.ndarray
    every: int = 7
    days: list[dict[str, np.ndarray]] = field(default_factory=list)

    def __call__(self, view: DayView, opp: pd.DataFrame):  # type: ignore[no-untyped-def]
        out = self.scorer(view, opp)
        if view.day % self.every == 0 and len(opp):
            c, ch = opp["customer"].to_numpy(), opp["channel"].to_numpy()
            n_o = view.offers.n
            p_t, _, tau_t = oracle_scorer(view, opp)
            eff = view.effect(np.repeat(c, n_o), np.tile(np.arange(n_o), len(c)), np.repeat(ch, n_o))
            _, X_up, _ = self.inputs(view, opp)
            self.days.append({"day": np.full(len(c), view.day), "customer": c, "channel": ch,
                              "X": X_up.astype(np.float32), "p": p_t, "tau": tau_t,
                              "q": eff.p_organic.reshape(len(c), n_o),
                              "eligible": view.eligible(c, ch), "price_sensitivity": self.price_sensitivity[c]})
        return out

    def frame(self) -> dict[str, np.ndarray]:
        """The recorded days stacked: per opportunity (n) or per opportunity and offer (n, m)."""
        return {k: np.concatenate([d[k] for d in self.days]) for k in self.days[0]}


def one_step(rec: dict[str, np.ndarray], p: np.ndarray, tau: np.ndarray, catalogue) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """Per recorded opportunity: the pick of the scorer (p, tau) and of the oracle with no caps
    (argmax of tau x base - p x incentive - cost among the eligible offers, no contact when
    nothing is worth 0 or more), the true incremental value of each pick and the kind of loss."""
    base, inc, cost = catalogue.base_value, catalogue.incentive_cost, catalogue.cost
    ok = rec["eligible"]
    ev_t = rec["tau"] * base - rec["p"] * inc - cost
    ev_m = tau * base - p * inc - cost

    def pick(ev: np.ndarray) -> np.ndarray:
        e = np.where(ok, ev, -np.inf)
        best = e.argmax(1)
        return np.where(e[np.arange(len(e)), best] >= 0.0, best, -1)

    a, o = pick(ev_m), pick(ev_t)
    rows = np.arange(len(a))
    val_a = np.where(a >= 0, ev_t[rows, np.maximum(a, 0)], 0.0)
    val_o = np.where(o >= 0, ev_t[rows, np.maximum(o, 0)], 0.0)
    grp = catalogue.base
    kind = np.select(
        [(a < 0) & (o < 0), (a >= 0) & (o < 0), (a < 0) & (o >= 0),
         (a >= 0) & (o >= 0) & (a == o),
         (a >= 0) & (o >= 0) & (grp[np.maximum(a, 0)] == grp[np.maximum(o, 0)]) & (inc[np.maximum(a, 0)] > inc[np.maximum(o, 0)]),
         (a >= 0) & (o >= 0) & (grp[np.maximum(a, 0)] == grp[np.maximum(o, 0)])],
        ["both none", "contact that does not pay", "missed contact", "same pick",
         "costlier variant", "cheaper variant"], default="other offer")
    q_row = np.where(ok, rec["q"], np.nan)
    return pd.DataFrame({
        "day": rec["day"], "channel": rec["channel"], "price_sensitivity": rec["price_sensitivity"],
        "organic_intent": np.nanmean(np.where(np.isfinite(q_row), q_row, np.nan), axis=1),
        "pick": a, "oracle_pick": o, "value": val_a, "oracle_value": val_o, "loss": val_o - val_a, "kind": kind,
        "pick_incentive": np.where(a >= 0, inc[np.maximum(a, 0)], np.nan),
        "oracle_incentive": np.where(o >= 0, inc[np.maximum(o, 0)], np.nan),
        "model_ev": np.where(a >= 0, ev_m[rows, np.maximum(a, 0)], 0.0),
    })


def summary(steps: pd.DataFrame) -> dict[str, object]:
    """Share of the oracle's one-step value kept, contacts, and the loss by kind and segment."""
    total = float(steps["oracle_value"].sum())
    by_kind = steps.groupby("kind")["loss"].agg(["count", "sum"])
    by_kind["share_of_gap"] = by_kind["sum"] / max(float(steps["loss"].sum()), 1e-12)
    seg = steps.assign(
        price=pd.qcut(steps["price_sensitivity"], 3, labels=["low", "mid", "high"]),
        intent=pd.qcut(steps["organic_intent"].rank(method="first"), 3, labels=["low", "mid", "high"]),
    )
    by_price = seg.groupby("price", observed=True).agg(oracle=("oracle_value", "sum"), value=("value", "sum"),
                                                       loss=("loss", "sum"))
    by_intent = seg.groupby("intent", observed=True).agg(oracle=("oracle_value", "sum"), value=("value", "sum"),
                                                         loss=("loss", "sum"))
    return {
        "opportunities": len(steps), "share_of_oracle": float(steps["value"].sum()) / total if total else float("nan"),
        "contacts": int((steps["pick"] >= 0).sum()), "oracle_contacts": int((steps["oracle_pick"] >= 0).sum()),
        "incentive_picks": int((steps["pick_incentive"] > 0).sum()),
        "oracle_incentive_picks": int((steps["oracle_incentive"] > 0).sum()),
        "by_kind": by_kind, "by_price": by_price, "by_intent": by_intent,
    }

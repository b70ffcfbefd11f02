"""Off-policy evaluation of a candidate propensity model + contact policy on logged decisions.

Each logged contact (`contacts` row with a final outcome) is one decision: a customer, a channel,
a moment, the offer the logging policy chose and the probability it chose it with. For each one we
ask the ranking code what the target policy (model + `ContactPolicy`) would have done:

1. point-in-time features: the customer's features from a snapshot at midnight of the decision
   day (`build_customer_features`), candidate features with the decision's own context
   (`build_exposure_features`, as in training), scored by the model;
2. the rules: `serving.ranking.Arbiter.arbitrate_block` on the one decision, with the caps and
   cooldowns reconstructed from the logged contacts and declines before the decision (a
   `MemoryContactStore` replaying the log, read through a `ContactDesk`) and the consents as of
   the decision (`ConsentBook`);
3. the exploration probabilities of the arbiter at rank 1 (`target_probabilities`), so an
   offer a rule forbids gets probability 0 and "no offer" gets what is left.

Simplifications (docs/evaluation.md): the cap state is the LOGGED one (what the logging policy
sent), not what the target policy would have sent (`caps="target"`: the contact-level caps of
the target's own contacts on the logged decisions, the offer it makes still chosen on the logged
history); one offer per decision (k = 1); the retention term of the arbiter is off
(churn_probability 0); decisions the logging policy did not log (no contact) are not evaluated:
values are per logged decision. A log with a `no_offers` table (every decision logged, issue 21)
is evaluated whole: a logged "no contact" is the none action, with its propensity, reward 0 and
the target's probability of making no contact. The decisions of the universal control group's
members are left out: the group is drawn once per customer, not per decision (`logged_decisions`).
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from features import FEATURE_SET, build_customer_features, customer_feature_names
from nbo.control import in_control
from nbo.data import Dataset
from nbo.errors import NboError
from serving.contact_store.base import ContactRecord, decision_refusal
from serving.contact_store.consent import ConsentBook
from serving.holdout import control_rows
from serving.policy import ContactPolicy, ControlGroup
from serving.catalogue import compile_offer_rules
from serving.ranking import Arbiter
from serving.reservation import ContactDesk
from models.registry import OPE_TAG
from evaluation.ope import (Diagnostics, Estimate, IncrementalEstimates, diagnostics, doubly_robust, incremental_value,
                            ips, mean_interval, snips)
from evaluation.policy_sim import MemoryContactStore, opportunity_scores, rule_inputs
from evaluation.sim_policies import opportunity_rows
from features.incentives import incentive_columns

log = logging.getLogger(__name__)

ESTIMATORS = ("ips", "snips", "dr")
REWARDS = ("acceptance", "value")


# ----------------------------------------------------------------------------- target policy
def target_probabilities(desk: ContactDesk, offers: pd.DataFrame, p_row: np.ndarray,
                         customer_id: str, channel: str, now, features, consents,
                         uplift_row: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """P(offer) at rank 1 for every offer (catalogue order) and the probability of "no offer".

    The arbiter's block for this one decision (consent, quiet hours, caps, validity, channel,
    eligibility, per-offer caps, cooldowns and the minimum expected value, with the contact
    history the desk reads from the replayed log), then the selection's rank-1 probabilities
    P(o) = (1 - e)[o greedy] + e q(o) over the offers left (`Arbiter.first_rank_probabilities`,
    docs/policy.md). The arbiter's own recorded propensity of its pick is checked against them.
    `uplift_row`: the incremental conversion of every offer (the `uplift` objective).
    """
    arbiter = desk.arbiter
    ids = offers["offer_id"].tolist()
    may = arbiter.may_contact(customer_id, channel, now, consents)
    block = arbiter.arbitrate_block(
        [customer_id], channel, now, np.asarray(p_row, dtype=np.float64).reshape(1, len(ids)),
        columns=arbiter.columns_of(ids), rule_masks=arbiter.rule_masks(features, channel, now), k=1,
        draws=arbiter.draws_for(0), consented=arbiter.consent_mask([customer_id], channel, now, consents),
        histories={customer_id: desk.history(customer_id, now)} if may else {},
        uplift=None if uplift_row is None else np.asarray(uplift_row, dtype=np.float64).reshape(1, len(ids)),
    )
    probs = arbiter.first_rank_probabilities(block, 0)
    if not probs.any():
        return probs, 1.0
    j = int(block.picks[0, 0])
    if not math.isclose(probs[j], block.propensity[0, 0], rel_tol=1e-9, abs_tol=1e-12):
        raise NboError(f"internal: arbiter propensity {block.propensity[0, 0]} != reconstructed {probs[j]}")
    # The target's own holdouts (serving.holdout), given the customer: its control group is a
    # share of customers drawn once by hashed id, so a member makes no contact on the group's
    # channels (probability 1) and anyone else is held out by the no-offer draw alone.
    policy = arbiter.policy
    if not policy.holds_out:
        return probs, 0.0
    if control_rows(policy, [customer_id], channel)[0]:
        return np.zeros_like(probs), 1.0
    rate = policy.arbitration.exploration.no_offer_rate
    return probs * (1.0 - rate), rate


# ----------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class PolicyEstimates:
    label: str
    estimates: dict[str, dict[str, Estimate]]  # reward -> estimator -> estimate
    diagnostics: Diagnostics
    offer_rate: float  # mean probability that the target makes an offer at a logged decision
    pi_logged: np.ndarray = field(repr=False)  # target probability of each logged action
    mu: np.ndarray = field(repr=False)
    #: What the target adds over no contact (a log with `no_offers`, evaluation.ope.incremental_value).
    incremental: IncrementalEstimates | None = None
    incremental_window_days: int = 7
    #: The target's probability of making a contact at each logged decision.
    contact_probability: np.ndarray | None = field(default=None, repr=False)

    def warnings(self) -> list[str]:
        return self.diagnostics.warnings()

    @property
    def decisive(self) -> bool:
        return not self.warnings()


@dataclass(frozen=True)
class Evaluation:
    n_decisions: int
    since: pd.Timestamp
    until: pd.Timestamp
    logged: dict[str, Estimate]  # reward -> observed mean
    candidate: PolicyEstimates
    baseline: PolicyEstimates | None
    #: Control-group members whose decisions were left out (`logged_decisions`).
    control_customers: int = 0

    def gate(self) -> tuple[bool, str]:
        """Does the candidate's DR lower bound (expected value) beat the baseline's DR estimate?"""
        cand = self.candidate.estimates["value"]["dr"]
        if not self.candidate.decisive:
            return False, "candidate estimate too uncertain: " + "; ".join(self.candidate.warnings())
        if self.baseline is None:
            return True, "no baseline to beat"
        base = self.baseline.estimates["value"]["dr"]
        ok = cand.low > base.value
        return ok, (f"candidate DR value lower bound {cand.low:.4f} {'>' if ok else '<='} "
                    f"baseline DR value {base.value:.4f} per decision")

    def metrics(self) -> dict[str, float]:
        out = {"decisions": float(self.n_decisions)}
        for reward, est in self.logged.items():
            out[f"logged_{reward}"] = est.value
        for tag, pe in (("candidate", self.candidate), ("baseline", self.baseline)):
            if pe is None:
                continue
            for reward, by in pe.estimates.items():
                for name, est in by.items():
                    out[f"{tag}_{reward}_{name}"] = est.value
                    out[f"{tag}_{reward}_{name}_low"] = est.low
                    out[f"{tag}_{reward}_{name}_high"] = est.high
            if pe.incremental is not None:
                for name in ("policy", "none", "ips", "snips", "dr", "dr_baseline"):
                    est = getattr(pe.incremental, name)
                    if est is not None:
                        out[f"{tag}_incremental_{name}"] = est.value
                        out[f"{tag}_incremental_{name}_low"], out[f"{tag}_incremental_{name}_high"] = est.low, est.high
            d = pe.diagnostics
            out.update({f"{tag}_ess": d.ess, f"{tag}_matches": float(d.matches), f"{tag}_max_weight": d.max_weight,
                        f"{tag}_max_weight_share": d.max_weight_share, f"{tag}_offer_rate": pe.offer_rate})
        if self.control_customers:
            out["control_customers_left_out"] = float(self.control_customers)
        return {k: v for k, v in out.items() if np.isfinite(v)}

    def figures(self) -> dict[str, Figure]:
        fig = Figure(figsize=(9, 3.5))
        axes = fig.subplots(1, 2)
        for ax, reward in zip(axes, REWARDS, strict=True):
            labels, vals, lows, highs = [], [], [], []
            rows = [("logged", {"observed": self.logged[reward]})]
            rows.append((self.candidate.label, self.candidate.estimates[reward]))
            if self.baseline is not None:
                rows.append((self.baseline.label, self.baseline.estimates[reward]))
            for who, by in rows:
                for name, est in by.items():
                    labels.append(f"{who}\n{name}")
                    vals.append(est.value)
                    lows.append(est.value - est.low)
                    highs.append(est.high - est.value)
            x = np.arange(len(vals))
            ax.errorbar(x, vals, yerr=[lows, highs], fmt="o", capsize=4)
            ax.set_xticks(x, labels, fontsize=6, rotation=45, ha="right")
            ax.set(title=f"{reward} per decision (95 % CI)")
        fig.tight_layout()
        w = Figure(figsize=(5, 3.5))
        ax = w.subplots()
        weights = self.candidate.pi_logged / self.candidate.mu
        ax.hist(weights[weights > 0], bins=40, log=True)
        ax.set(title=f"importance weights of {self.candidate.label} (w > 0)", xlabel="pi / mu")
        w.tight_layout()
        return {"ope_estimates.png": fig, "ope_weights.png": w}

    def markdown(self, figure_prefix: str = "") -> str:
        lines = [f"# Off-policy evaluation: {self.candidate.label}", "",
                 f"{self.n_decisions:,} logged decisions from {self.since} to {self.until} "
                 "(values per logged decision; value = offer value x acceptance - contact cost, currency units).", ""]
        if self.control_customers:
            lines += [f"The decisions of the {self.control_customers:,} control-group customers are left out (a "
                      "per-customer experiment: `nbo lift`); the others' propensities are taken given they are "
                      "outside the group.", ""]
        ok, reason = self.gate()
        lines += [f"**Gate** (candidate DR lower bound > baseline DR): {'PASS' if ok else 'FAIL'} - {reason}", ""]
        lines += ["| policy | estimator | acceptance | 95 % CI | value | 95 % CI |", "|---|---|---|---|---|---|"]
        a, v = self.logged["acceptance"], self.logged["value"]
        lines.append(f"| logged | observed | {a.value:.4f} | [{a.low:.4f}, {a.high:.4f}] | {v.value:.4f} | "
                     f"[{v.low:.4f}, {v.high:.4f}] |")
        for pe in (self.candidate, self.baseline):
            if pe is None:
                continue
            for name in ESTIMATORS:
                a, v = pe.estimates["acceptance"][name], pe.estimates["value"][name]
                lines.append(f"| {pe.label} | {name} | {a.value:.4f} | [{a.low:.4f}, {a.high:.4f}] | "
                             f"{v.value:.4f} | [{v.low:.4f}, {v.high:.4f}] |")
        lines.append("")
        for pe in (self.candidate, self.baseline):
            if pe is None:
                continue
            d = pe.diagnostics
            lines.append(f"- {pe.label}: makes an offer at {pe.offer_rate:.1%} of the logged decisions; "
                         f"{d.matches:,} logged actions it could have taken; ESS {d.ess:,.0f}; max weight "
                         f"{d.max_weight:.1f} ({d.max_weight_share:.1%} of the total); mean weight {d.mean_weight:.3f}.")
            for warning in pe.warnings():
                lines.append(f"  - **TOO UNCERTAIN TO DECIDE**: {warning}")
            if pe.incremental is not None:
                inc = pe.incremental
                lines.append(f"  - incremental value over no contact per decision (window {pe.incremental_window_days} days): "
                             + "; ".join(f"{e.name} {e.value:.4f} [{e.low:.4f}, {e.high:.4f}]"
                                         for e in (inc.ips, inc.snips, inc.dr, inc.dr_baseline) if e is not None)
                             + f" (the policy's {inc.policy.value:.4f} - no contact's {inc.none.value:.4f}).")
        lines += ["", CARRY_OVER_NOTE, "",
                  f"![estimates]({figure_prefix}ope_estimates.png)", f"![weights]({figure_prefix}ope_weights.png)", ""]
        return "\n".join(lines)


#: What per-decision estimates cannot see, said in every report. Measured: in the default simulated
#: world, where customers tire of an offer repeated, IPS valued a policy that makes each customer
#: its best offer 70 % of the time 9.8 % above what it earned in closed loop (median of 4 seeds,
#: benchmarks/bench_ope.py; docs/evaluation.md).
CARRY_OVER_NOTE = ("**Scope:** each logged decision is valued on its own. The estimates do not see what the "
                   "candidate's own choices do to later decisions (contact fatigue, customers tiring of an offer "
                   "made again, churn); compare policies in closed loop for that (`nbo simulate-policies`, "
                   "docs/evaluation.md).")


def _epoch(ts: pd.Series) -> np.ndarray:
    return pd.to_datetime(ts).to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9


def replay_store(contacts: pd.DataFrame, offers: pd.DataFrame, until: pd.Timestamp, horizon_days: int) -> MemoryContactStore:
    """The contact store as the logged contacts and declines before `until` make it."""
    store = MemoryContactStore(horizon_days=horizon_days)
    category = dict(zip(offers["offer_id"], offers["category"], strict=True))
    rows = contacts[contacts["ts"] < until].sort_values("ts", kind="stable")
    t = _epoch(rows["ts"])
    for cid, group in pd.Series(np.arange(len(rows))).groupby(rows["customer_id"].to_numpy()):
        idx = group.to_numpy()
        store.add_contacts(cid, [ContactRecord(str(d), str(o), category.get(o, ""), str(ch), float(ts))
                                 for d, o, ch, ts in zip(rows["decision_id"].to_numpy()[idx], rows["offer_id"].to_numpy()[idx],
                                                         rows["channel"].to_numpy()[idx], t[idx], strict=True)])
    declined = rows[(rows["outcome"] == "declined") & rows["outcome_ts"].notna()]
    store.add_declines(declined["customer_id"].tolist(), declined["offer_id"].tolist(),
                       [category.get(o, "") for o in declined["offer_id"]], _epoch(declined["outcome_ts"]).tolist())
    return store


def logged_decisions(data: Dataset, since: pd.Timestamp | None, until: pd.Timestamp | None,
                     control: ControlGroup | None = None) -> pd.DataFrame:
    """Contacts with a final outcome in [since, until), and the decisions that made no contact
    (`no_offers`: `offer_id` empty, rewards 0, `propensity` that of making none, `reason`), in
    time order, with their rewards.

    `control`: the logging policy's control group. Its members are drawn once per customer (by
    hashed id), not per decision, so their decisions are no per-decision experiment (they are
    `nbo lift`'s): every decision of a member is left out (`attrs["control_customers"]`: how
    many members had one), and the logged propensities of the others, which the contract writes
    over the group's draw too, are taken given the customer is outside it (`outside_control`)."""
    c = data.contacts
    until = until if until is not None else c["ts"].max() + pd.Timedelta(seconds=1)
    since = since if since is not None else until - pd.Timedelta(days=28)
    rows = c[(c["ts"] >= since) & (c["ts"] < until) & (c["outcome"] != "pending")]
    none = data.no_offers
    none = none[(none["ts"] >= since) & (none["ts"] < until)]
    if len(none):
        rows = pd.concat([rows, none[["decision_id", "customer_id", "channel", "ts", "reason", "propensity"]]],
                         ignore_index=True)
    rows = rows.sort_values(["ts", "decision_id"] if len(none) else "ts", kind="stable")
    members = 0
    if control is not None and control.share > 0.0:
        rows, members = outside_control(rows, control)
    offers = data.offers.set_index("offer_id")
    rows = rows.reset_index(drop=True)
    accepted = (rows["outcome"] == "accepted").to_numpy(float)
    made = rows["offer_id"].notna().to_numpy()
    value = np.where(made, offers["value"].reindex(rows["offer_id"]).to_numpy(float), 0.0)
    cost = np.where(made, offers["cost"].reindex(rows["offer_id"]).to_numpy(float), 0.0)
    rows["r_acceptance"] = accepted
    rows["r_value"] = accepted * value - cost
    rows.attrs["since"], rows.attrs["until"], rows.attrs["control_customers"] = since, until, members
    return rows


def outside_control(rows: pd.DataFrame, control: ControlGroup) -> tuple[pd.DataFrame, int]:
    """(`rows` without the decisions of the control group's members, how many members had one),
    the propensities of the rest on the group's channels given the customer is outside it: an
    offer's (1 - share)(1 - rate) P(offer) / (1 - share), a randomised no-offer's (`explore`)
    share + (1 - share) rate -> rate; a `policy` no-contact (nothing to offer) stays 1.
    A `control` row left over means `control` is not the group the log was made with: an error."""
    ids = rows["customer_id"].astype(str)
    unique = ids.unique()
    member = dict(zip(unique, in_control(unique.tolist(), control.share, control.salt), strict=True))
    inside = ids.map(member).to_numpy(dtype=bool)
    out = rows[~inside].copy()
    if "reason" in out and (out["reason"] == "control").any():
        raise NboError("a decision is logged as the control group's for a customer outside the policy's "
                       "[control_group] (share, salt): evaluate with the control group the log was made with")
    held = out["channel"].isin(control.channels).to_numpy()
    made = out["offer_id"].notna().to_numpy()
    explore = (out["reason"] == "explore").to_numpy() if "reason" in out else np.zeros(len(out), dtype=bool)
    share, p = control.share, out["propensity"].to_numpy(float)
    out["propensity"] = np.where(held & made, p / (1.0 - share),
                                 np.where(held & explore, (p - share) / (1.0 - share), p))
    if ((out["propensity"] <= 0) | (out["propensity"] > 1 + 1e-9)).any():
        raise NboError("logged propensities do not fit the policy's [control_group] share: evaluate with the "
                       "control group the log was made with")
    out["propensity"] = out["propensity"].clip(upper=1.0)
    return out, int(len(set(ids[inside])))


def category_purchases(rows: pd.DataFrame, events: pd.DataFrame, categories: list[str], window_days: int) -> np.ndarray:
    """(rows, categories): how many purchases of each category the row's customer makes in
    (ts, ts + window] (an acceptance's purchase included: the outcome both arms share)."""
    n, k = len(rows), len(categories)
    buys = events.loc[events["type"] == "purchase", ["customer_id", "category", "ts"]]
    keyed = pd.DataFrame({"row": np.arange(n), "customer_id": rows["customer_id"].to_numpy(), "ts": rows["ts"].to_numpy()})
    both = keyed.merge(buys.rename(columns={"ts": "buy_ts"}), on="customer_id", how="inner")
    hit = both[(both["buy_ts"] > both["ts"]) & (both["buy_ts"] <= both["ts"] + pd.Timedelta(days=window_days))]
    code = pd.Index(categories).get_indexer(hit["category"])
    ok = code >= 0
    flat = hit["row"].to_numpy(np.int64)[ok] * k + code[ok]
    return np.bincount(flat, minlength=n * k).reshape(n, k).astype(np.float64)


def _uplift_scores(uplift, data: Dataset, feats: pd.DataFrame, part: pd.DataFrame, day, vocabulary):
    """(P(accept) of the uplift model's acceptance model or None, tau) of every offer at each decision,
    as `evaluation.uplift_loop` and serving read them (offer_code NaN, the incentive columns)."""
    rows = opportunity_rows(data, feats, part["customer_id"].to_numpy(dtype=object), part["channel"].to_numpy(dtype=object),
                            part["ts"].reset_index(drop=True), day, vocabulary=vocabulary)
    n, m = len(part), len(data.offers)
    extra = incentive_columns(data.offers.reset_index(drop=True)).astype(np.float32)
    cand = list(FEATURE_SET.candidate_features)
    X = np.hstack([rows[cand].assign(offer_code=np.nan).to_numpy(np.float32, na_value=np.nan), np.tile(extra, (n, 1))])
    p = uplift.predict_accept(X).reshape(n, m) if getattr(uplift, "gives_acceptance", False) else None
    return p, uplift.predict_uplift(X).reshape(n, m)


def _score_target(label: str, model, data: Dataset, rows: pd.DataFrame, policy: ContactPolicy, progress: bool,
                  uplift=None, window_days: int = 7, caps: str = "logged") -> PolicyEstimates:
    offers = data.offers.reset_index(drop=True)
    ids = offers["offer_id"].tolist()
    pos = {o: i for i, o in enumerate(ids)}
    horizon = max(policy.longest_window_days, 1)
    # caps "target": the target's own contacts on the logged decisions so far decide where it has a
    # decision at all (`_TargetCaps`); its offer is chosen on the log's history either way.
    own = _TargetCaps(offers, replay_store(data.contacts, offers, rows.attrs["since"], horizon)) if caps == "target" else None
    store = replay_store(data.contacts, offers, rows.attrs["until"], horizon)
    desk = ContactDesk(Arbiter(policy, offers, compile_offer_rules(offers, customer_feature_names())), store)
    book = ConsentBook(data.consents)
    value, cost = offers["value"].to_numpy(float), offers["cost"].to_numpy(float)
    n = len(rows)
    pi_logged, none = np.zeros(n), np.zeros(n)
    q_acc, q_val, d_acc, d_val = (np.zeros(n) for _ in range(4))
    pi_all = np.zeros((n, len(ids)))  # the target's probability of every offer at every decision
    p_all, tau_all = np.zeros((n, len(ids))), None if uplift is None else np.zeros((n, len(ids)))
    days = rows["ts"].dt.normalize()
    for day, part in tqdm(rows.groupby(days, sort=True), desc=f"ope {label}", unit="day", disable=not progress, leave=False):
        idx = part.index.to_numpy()
        feats = build_customer_features(data, day, customer_ids=part["customer_id"].unique())
        p = opportunity_scores(model, data, feats, part["customer_id"].to_numpy(dtype=object),
                               part["channel"].to_numpy(dtype=object), part["ts"].reset_index(drop=True), day)
        tau = None
        if uplift is not None:
            p_up, tau = _uplift_scores(uplift, data, feats, part, day, getattr(model, "vocabulary", None))
            p = p if p_up is None else p_up  # the uplift objective charges incentives at its own acceptance
            tau_all[idx] = tau
        p_all[idx] = p
        inputs = rule_inputs(feats)
        for k, (i, cid, ch, ts, oid) in enumerate(zip(idx, part["customer_id"], part["channel"], part["ts"],
                                                        part["offer_id"], strict=True)):
            if own is not None and not own.open(cid, ch, ts, policy):  # its own caps leave it no decision here
                probs, p_none = np.zeros(len(ids)), 1.0
            else:
                probs, p_none = target_probabilities(desk, offers, p[k], cid, ch, ts.to_pydatetime(),
                                                     inputs.get(cid), book, None if tau is None else tau[k])
            pi_all[i] = probs
            none[i] = p_none
            if own is not None:
                own.follow(cid, ch, ts, probs, rows.at[i, "decision_id"])
            d_acc[i], d_val[i] = float(probs @ p[k]), float(probs @ (p[k] * value - cost))
            if pd.isna(oid):  # a logged "no contact": the target's probability of none; q = 0
                pi_logged[i] = p_none
                continue
            a = pos[oid]
            pi_logged[i] = probs[a]
            q_acc[i], q_val[i] = p[k, a], p[k, a] * value[a] - cost[a]
    mu = rows["propensity"].to_numpy(float)
    # Without logged "no contact" decisions the none action is never in the log: SNIPS scales by
    # the target's offer rate. With them (a log of every decision) the weights cover it.
    coverage = None if rows["offer_id"].isna().any() else 1.0 - none
    estimates = {}
    for reward, q, direct in (("acceptance", q_acc, d_acc), ("value", q_val, d_val)):
        r = rows[f"r_{reward}"].to_numpy(float)
        estimates[reward] = {"ips": ips(pi_logged, mu, r), "snips": snips(pi_logged, mu, r, coverage),
                             "dr": doubly_robust(pi_logged, mu, r, q, direct)}
    incremental = None
    if rows["offer_id"].isna().any():  # a log of every decision: what the target adds over no contact
        incremental = _incremental(data, offers, rows, mu, pi_all, p_all, tau_all, window_days)
    return PolicyEstimates(label, estimates, diagnostics(pi_logged, mu), float((1.0 - none).mean()), pi_logged, mu,
                           incremental, window_days, 1.0 - none)


#: Where the target's own cap state is taken from (`evaluate(caps=)`).
CAP_STATES = ("logged", "target")


class _TargetCaps:
    """The target's own contacts along the logged decisions, for `evaluate(caps="target")`.

    Holdouts (a control group, randomised no-offers) leave the logging policy's contact-level
    caps (per channel, outbound) open more often than the target's would be, so the log holds
    more decisions than the target would get. At each logged decision, in time order, the
    target's most likely action (a contact when its P(contact) is at least 1/2) is recorded as its
    own contact, after the log's contacts before the period; a decision its own contact-level
    caps close is none for it (probability 1). Which offer it makes where it decides is still read
    on the log's history (offer caps, cooldowns): there the logging policy could make the same
    offers, so the weights keep their support."""

    def __init__(self, offers: pd.DataFrame, store: MemoryContactStore) -> None:
        self.store = store  # the history before the first decision: the log's
        self.ids = offers["offer_id"].tolist()
        self.categories = offers["category"].astype(str).tolist()

    def open(self, customer_id: str, channel: str, ts: pd.Timestamp, policy: ContactPolicy) -> bool:
        """No contact-level cap of the target's own history forbids a contact at `ts`."""
        return decision_refusal(self.store.history(customer_id, pd.Timestamp(ts).value / 1e9), channel, policy) is None

    def follow(self, customer_id: str, channel: str, ts: pd.Timestamp, probs: np.ndarray, decision_id: str) -> None:
        """Record the target's contact at this decision if it most likely makes one."""
        if float(probs.sum()) < 0.5:
            return
        j = int(np.argmax(probs))
        self.store.add_contacts(customer_id, [ContactRecord(str(decision_id), self.ids[j], self.categories[j],
                                                            str(channel), pd.Timestamp(ts).value / 1e9)])


def _incremental(data: Dataset, offers: pd.DataFrame, rows: pd.DataFrame, mu: np.ndarray, pi: np.ndarray,
                 p: np.ndarray, tau: np.ndarray | None, window_days: int) -> IncrementalEstimates:
    """`incremental_value` on the logged decisions: the outcome of an offer is the margin of its
    category's purchases in the window (base value per purchase), less the incentive given on an
    acceptance and the contact cost; the reward model is the target's own ev (tau x base - p x
    incentive - cost; without an uplift model p x value - cost) over a baseline of each offer's
    mean no-contact outcome."""
    categories = sorted(offers["category"].astype(str).unique().tolist())
    cat = pd.Index(categories).get_indexer(offers["category"].astype(str))
    extra = incentive_columns(offers)
    incentive, base, cost = extra[:, 0], extra[:, 1], offers["cost"].to_numpy(float)
    bought = category_purchases(rows, data.events, categories, window_days)[:, cat]  # (n, offers)
    y0 = bought * base
    pos = {o: j for j, o in enumerate(offers["offer_id"])}
    logged = np.array([-1 if pd.isna(o) else pos[o] for o in rows["offer_id"]], dtype=np.int64)
    at = np.maximum(logged, 0)
    accepted = (rows["outcome"] == "accepted").to_numpy(float)
    reward = y0[np.arange(len(rows)), at] - incentive[at] * accepted - cost[at]
    none = logged < 0
    baseline = np.tile(y0[none].mean(axis=0) if none.any() else np.zeros(len(base)), (len(rows), 1))
    value = offers["value"].to_numpy(float)
    delta = p * value - cost if tau is None else tau * base - p * incentive - cost
    return incremental_value(pi, logged, mu, reward, y0, baseline, delta)


def evaluate(data: Dataset, candidate, policy: ContactPolicy, baseline=None, since: pd.Timestamp | None = None,
             until: pd.Timestamp | None = None, progress: bool = False, uplift=None,
             window_days: int = 7, caps: str = "logged", control: ControlGroup | None = None) -> Evaluation:
    """OPE of `candidate` (a `LoadedModel` or a fitted `CalibratedBooster`) and optionally
    `baseline` under `policy` on the decisions logged in [since, until) (default: the last 28
    days of the contacts table). `uplift` (a `LoadedModel` or a fitted `UpliftBooster`): the
    candidate arbitrates by it (`policy`'s objective should be `uplift`). On a log with `no_offers`
    each policy's incremental value over no contact is estimated too (purchases within
    `window_days` after each decision).

    `control`: the control group the log was made with (default `policy.control_group`); its
    members' decisions are left out (`logged_decisions`). `caps`: the contact-level cap state
    each target is valued in, `logged` (the history the log made) or `target` (its own contacts
    on the logged decisions before, `_TargetCaps`: a decision its own caps close is none with
    probability 1, so the sum over the log counts only the decisions the target would get)."""
    if caps not in CAP_STATES:
        raise ValueError(f"unknown cap state {caps!r}; use one of {', '.join(CAP_STATES)}")
    rows = logged_decisions(data, since, until, policy.control_group if control is None else control)
    if rows.empty:
        raise NboError("no logged decisions with a final outcome in the evaluation period")
    if (rows["propensity"].isna() | (rows["propensity"] <= 0)).any():
        raise NboError("some logged contacts have no propensity: they cannot be evaluated off-policy")

    def unwrap(m):
        return (getattr(m, "label", "candidate"), getattr(m, "model", m))

    label, model = unwrap(candidate)
    up = None if uplift is None else getattr(uplift, "model", uplift)
    cand = _score_target(label, model, data, rows, policy, progress, up, window_days, caps)
    base = None
    if baseline is not None:
        blabel, bmodel = unwrap(baseline)
        base = _score_target(blabel if blabel != label else f"{blabel} (baseline)", bmodel, data, rows, policy, progress,
                             up, window_days, caps)
    logged = {reward: mean_interval("observed", rows[f"r_{reward}"].to_numpy(float)) for reward in REWARDS}
    return Evaluation(len(rows), rows.attrs["since"], rows.attrs["until"], logged, cand, base,
                      rows.attrs["control_customers"])


def write_report(evaluation: Evaluation, out: Path) -> Path:
    """`out` (Markdown) with its PNG figures next to it (`<stem>_ope_*.png`)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{out.stem}_"
    for name, fig in evaluation.figures().items():
        fig.savefig(out.parent / f"{prefix}{name}", dpi=110)
    out.write_text(evaluation.markdown(prefix))
    return out


def log_evaluation(evaluation: Evaluation, candidate_version: str | None, baseline_version: str | None) -> str:
    """One MLflow run (metrics, report, figures) tagged with the versions compared; returns its id."""
    with mlflow.start_run(run_name=f"ope-{evaluation.candidate.label}") as run:
        ok, reason = evaluation.gate()
        mlflow.set_tags({OPE_TAG: "true", f"{OPE_TAG}.candidate": candidate_version or "",
                         f"{OPE_TAG}.baseline": baseline_version or "", f"{OPE_TAG}.gate": str(ok).lower(),
                         f"{OPE_TAG}.uncertain": str(not evaluation.candidate.decisive).lower(),
                         f"{OPE_TAG}.reason": reason[:4000]})
        mlflow.log_params({"since": str(evaluation.since), "until": str(evaluation.until)})
        mlflow.log_metrics(evaluation.metrics())
        for name, fig in evaluation.figures().items():
            mlflow.log_figure(fig, f"ope/{name}")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.md"
            path.write_text(evaluation.markdown("ope/"))
            mlflow.log_artifact(str(path), "ope")
    return run.info.run_id

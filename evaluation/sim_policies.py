"""The policies a closed-loop simulation compares, each plugged into the simulator day by day.

- `random`: the simulator's logging policy (per-customer contact intensity, offer uniform among
  the eligible ones);
- `popular`: the same contact opportunities, always the eligible offer accepted most often in
  the training log;
- `nbo` under a rule set (`evaluation.rule_sets`): nbo's ranking (`serving.ranking.Arbiter`,
  model scores) with the contact policy's caps, cooldowns, quiet hours and consent, or part of them;
- `oracle` under a rule set: the same arbitration, but with the TRUE acceptance probabilities
  (`DayView.p_accept`) and no exploration: the ceiling of what a better model could do.

The nbo policies (and the oracle) get one outbound opportunity per signed-up customer and day, on
a channel drawn like the logging policy's among the consented ones, plus a banner slot in half of
the web/app sessions; the arbiter decides whether to use it and with which offer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from evaluation.memory_store import MemoryContactStore
from evaluation.refit import TrainedWorld
from evaluation.rule_sets import RULE_SETS, greedy
from features import build_customer_features, build_exposure_features, customer_feature_names, prepare_offers
from models.calibrated import CalibratedBooster
from nbo.data import Dataset
from nbo.vocab import CONTACT_CHANNELS, LIFECYCLE_STAGES, NO_OFFER_REASONS
from serving.contact_store.base import decision_refusal, to_epoch
from serving.policy import ContactPolicy
from serving.catalogue import compile_offer_rules
from serving.holdout import control_rows, no_offer_reason
from serving.ranking import Arbiter
from serving.reservation import ContactDesk
from simulator import Contacts, DayView, Simulator
from simulator.config import OUT, OUTBOUND_CODES
from simulator.io import dataset
from simulator.policies import NoOffers, contact_slots
from simulator.world import DAY

POLICY_NAMES: tuple[str, ...] = ("random", "popular", "nbo_uncapped", "nbo", "oracle")
#: Not in the default comparison: the oracle without caps, for what caps are worth with perfect knowledge.
TRUTH_UNCAPPED = "oracle_uncapped"
#: Every policy `make_policy` knows: random, popular, and nbo / oracle under each rule set.
ALL_POLICY_NAMES: tuple[str, ...] = ("random", "popular", *(f"{scorer}{rules}" for scorer in ("nbo", "oracle")
                                                           for rules in RULE_SETS))


def opportunity_scores(
    model: CalibratedBooster,
    data: Dataset,
    customer_features: pd.DataFrame,
    customer_ids: np.ndarray,
    channels: np.ndarray,
    ts: pd.Series,
    as_of: pd.Timestamp,
) -> np.ndarray:
    """Calibrated p_accept of every offer (columns, catalogue order) at each opportunity (rows).

    Candidate features come from `build_exposure_features`, the function training uses: the
    customer's features as of `as_of` and the opportunity's own context (channel, hour, weekday).
    """
    rows = opportunity_rows(data, customer_features, customer_ids, channels, ts, as_of,
                            vocabulary=getattr(model, "vocabulary", None))
    m, n_o = len(customer_ids), len(data.offers)
    if rows is None:
        return np.zeros((0, n_o))
    X = rows[list(model.feature_names_in_)].to_numpy(np.float32, na_value=np.nan)
    if getattr(model, "is_choice", False):  # a softmax over the offers of each opportunity
        return model.predict_proba_positive(X, np.repeat(np.arange(m), n_o)).reshape(m, n_o)
    return model.predict_proba_positive(X).reshape(m, n_o)


def opportunity_rows(
    data: Dataset,
    customer_features: pd.DataFrame,
    customer_ids: np.ndarray,
    channels: np.ndarray,
    ts: pd.Series,
    as_of: pd.Timestamp,
    vocabulary: object | None = None,
) -> pd.DataFrame | None:
    """The candidate rows (`build_exposure_features`) of every offer at each opportunity,
    opportunity-major, catalogue order within one; None without opportunities. `vocabulary`:
    the propensity model's offer codes (`prepare_offers`)."""
    offer_ids = data.offers["offer_id"].to_numpy(dtype=object)
    m, n_o = len(customer_ids), len(offer_ids)
    if m == 0:
        return None
    exposures = pd.DataFrame({
        "customer_id": pd.array(np.repeat(np.asarray(customer_ids, dtype=object), n_o), dtype="str"),
        "offer_id": pd.array(np.tile(offer_ids, m), dtype="str"),
        "channel": pd.array(np.repeat(np.asarray(channels, dtype=object), n_o), dtype="str"),
        "ts": np.repeat(pd.to_datetime(ts).to_numpy(dtype="datetime64[ns]"), n_o),
    })
    # The model's offer codes (`offer_code`); no decision-time attributes in a simulated world.
    offers = prepare_offers(data.offers, vocabulary=vocabulary)
    return build_exposure_features(customer_features, offers, data.contacts, exposures, as_of)


def rule_inputs(features: pd.DataFrame) -> dict[str, dict[str, object]]:
    """Per customer, the values the eligibility rules read (customer feature names only)."""
    names = [c for c in customer_feature_names() if c in features.columns]
    return {cid: row for cid, row in zip(features.index, features[names].to_dict("records"), strict=True)}


# ----------------------------------------------------------------------------- policies
@dataclass
class ArbiterPolicy:
    """A closed-loop policy that asks `serving.ranking.Arbiter` at each opportunity.

    `scorer(view, opportunities) -> (p matrix, rule inputs per customer id)`, or with a third
    item, the incremental conversion matrix the `uplift` objective arbitrates by. Contacts the
    arbiter makes are reserved in an in-memory store; the day's declines are fed back after the step.
    """

    name: str
    policy: ContactPolicy
    offers: pd.DataFrame
    scorer: Callable[[DayView, pd.DataFrame], tuple]  # (p, inputs) or (p, inputs, tau)
    intensity: np.ndarray
    banner_rate: float
    seed: int
    #: Leave out, before scoring, the opportunities the contact policy refuses whatever the offer
    #: (no consent, quiet hours, a channel or outbound cap reached at the opportunity's time): the
    #: arbiter would make no contact there. The same decisions; the random stream of the others
    #: moves, so it is off where a recorded loop must replay (tests/test_golden.py).
    skip_refused: bool = False
    #: Log the decisions that made no contact (the simulator's `no_offers`: reason and P(no
    #: contact), as the service logs them) and apply the policy's holdouts (its control group and
    #: no-offer exploration, as `serving.holdout`, drawn from their own stream), so the log of a
    #: randomised policy is an experiment.
    log_no_offers: bool = False
    store: MemoryContactStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = MemoryContactStore(horizon_days=max(self.policy.longest_window_days, 1))
        rules = compile_offer_rules(self.offers, customer_feature_names())
        self.desk = ContactDesk(Arbiter(self.policy, self.offers, rules), self.store)
        self.rng = np.random.default_rng(self.seed)
        self._slot_rng = np.random.default_rng(self.seed + 1)
        self._holdout_rng = np.random.default_rng(self.seed + 2)
        self._offer_ids = self.offers["offer_id"].tolist()
        self._offer_pos = {o: i for i, o in enumerate(self._offer_ids)}
        self._category = dict(zip(self.offers["offer_id"], self.offers["category"], strict=True))

    def opportunities(self, view: DayView) -> pd.DataFrame:
        """One outbound opportunity per signed-up customer (channel drawn like the logging
        policy's) and a banner slot in a share `banner_rate` of sessions, in time order."""
        ones = np.ones(len(self.intensity))
        slots = contact_slots(view, ones * 50.0, self.banner_rate, self._slot_rng)  # Poisson(50) -> capped at 3
        frame = pd.DataFrame({"customer": slots.customer, "channel": slots.channel, "ts": slots.ts})
        outbound = frame["channel"].isin(OUTBOUND_CODES)
        frame = pd.concat([frame[outbound].drop_duplicates("customer"), frame[~outbound]])
        return frame.sort_values("ts", kind="stable").reset_index(drop=True)

    def open_opportunities(self, view: DayView, opp: pd.DataFrame) -> np.ndarray:
        """Bool per opportunity: the contact policy may make some contact there (consent, quiet
        hours, the caps of the decision, as the history stands at the start of the day)."""
        consented = view.allowed_channels(opp["customer"].to_numpy())
        out = np.zeros(len(opp), dtype=bool)
        for i, (c, ch, ts) in enumerate(opp.itertuples(index=False, name=None)):
            if not consented[i, ch]:
                continue
            channel = CONTACT_CHANNELS[ch]
            now = (view.date + pd.Timedelta(seconds=int(ts - view.day * DAY))).to_pydatetime()
            if self.policy.quiet_hours.is_quiet(channel, now):
                continue
            out[i] = decision_refusal(self.store.history(view.customer_ids[c], now), channel, self.policy) is None
        return out

    def __call__(self, view: DayView) -> Contacts:
        opp = self.opportunities(view)
        if self.skip_refused and not opp.empty:
            opp = opp[self.open_opportunities(view, opp)].reset_index(drop=True)
        if opp.empty:
            return Contacts.empty()
        scores = self.scorer(view, opp)
        p, inputs = scores[0], scores[1]
        tau = scores[2] if len(scores) > 2 else None
        ids = view.customer_ids
        picked_c, picked_o, picked_ch, picked_p, picked_ts = [], [], [], [], []
        none_c, none_ch, none_ts, none_reason, none_p = [], [], [], [], []
        consented = view.allowed_channels(opp["customer"].to_numpy())
        for i, (c, ch, ts) in enumerate(opp.itertuples(index=False, name=None)):
            cid, channel = ids[c], CONTACT_CHANNELS[ch]
            now = (view.date + pd.Timedelta(seconds=int(ts - view.day * DAY))).to_pydatetime()
            consents = {name: bool(consented[i, j]) for j, name in enumerate(CONTACT_CHANNELS)}
            decision = self.desk.decide(
                cid, channel, now, dict(zip(self._offer_ids, p[i].tolist(), strict=True)),
                features=inputs.get(cid), k=1, rng=self.rng, consents=consents,
                decision_id=f"{self.name}-{view.day}-{i}",
                uplift=None if tau is None else dict(zip(self._offer_ids, tau[i].tolist(), strict=True)),
                reserve=not self.log_no_offers,
            )
            if self.log_no_offers:
                held, kept = self._hold_out(cid, channel, bool(decision.offers))
                if held is None:
                    decision = self.desk.reserve(decision)
                if held is not None or not decision.offers:
                    none_c.append(c)
                    none_ch.append(ch)
                    none_ts.append(ts)
                    reason = held or no_offer_reason([s.reason for s in decision.suppressed])
                    none_reason.append(NO_OFFER_REASONS.index(reason))
                    none_p.append(1.0 - kept if held is not None and decision.offers else 1.0)
                    continue
            for shown in decision.offers:
                picked_p.append(shown.propensity * (kept if self.log_no_offers else 1.0))
                picked_c.append(c)
                picked_o.append(self._offer_pos[shown.offer_id])
                picked_ch.append(ch)
                picked_ts.append(ts)
        no_offers = None
        if self.log_no_offers:
            no_offers = NoOffers(np.array(none_c, dtype=np.int64), np.array(none_ch, dtype=np.int64),
                                 np.array(none_ts, dtype=np.int64), np.array(none_reason, dtype=np.int64),
                                 np.array(none_p, dtype=float))
        return Contacts(np.array(picked_c, dtype=np.int64), np.array(picked_o, dtype=np.int64),
                        np.array(picked_ch, dtype=np.int64), np.array(picked_p, dtype=float),
                        np.array(picked_ts, dtype=np.int64), no_offers=no_offers)

    def _hold_out(self, customer_id: str, channel: str, has_offer: bool) -> tuple[str | None, float]:
        """(`control` / `explore` / None, P(an offer is made) when the arbiter has one): the
        control group (`serving.holdout.control_rows`) and the no-offer draw of `serving.holdout`."""
        share = self.policy.control_group.share if self.policy.control_group.holds(channel) else 0.0
        rate = self.policy.arbitration.exploration.no_offer_rate
        kept = (1.0 - share) * (1.0 - rate)
        if control_rows(self.policy, [customer_id], channel)[0]:
            return "control", kept
        if has_offer and rate > 0.0 and self._holdout_rng.random() < rate:
            return "explore", kept
        return None, kept

    def observe(self, sim: Simulator, first: int) -> None:
        """Feed the declines of the contacts logged from position `first` on to the store."""
        contacts = sim.contact_log()
        sl = slice(first, None)
        declined = contacts.outcome[sl] == OUT["declined"]
        if not declined.any():
            return
        cust = contacts.customer[sl][declined]
        offer = contacts.offer[sl][declined]
        start = to_epoch(pd.Timestamp(sim.config.start).to_pydatetime())
        ts = start + contacts.outcome_ts[sl][declined].astype(float)
        offer_ids = [self._offer_ids[o] for o in offer]
        self.store.add_declines([sim.customer_ids[c] for c in cust], offer_ids,
                                [self._category[o] for o in offer_ids], ts.tolist())


class PopularPolicy:
    """The logging policy's contact opportunities, always with the most popular eligible offer
    (most acceptances in the training log; ties: catalogue order). Deterministic: propensity 1."""

    def __init__(self, popularity: np.ndarray, intensity: np.ndarray, banner_rate: float, seed) -> None:
        self.popularity = np.asarray(popularity, dtype=float)
        self.intensity = intensity
        self.banner_rate = banner_rate
        self.rng = np.random.default_rng(seed)

    def __call__(self, view: DayView) -> Contacts:
        slots = contact_slots(view, self.intensity, self.banner_rate, self.rng)
        ok = view.eligible(slots.customer, slots.channel)
        score = np.where(ok, self.popularity[None, :], -np.inf)
        keep = ok.any(1)
        best = score.argmax(1)
        return Contacts(slots.customer[keep], best[keep], slots.channel[keep], np.ones(int(keep.sum())),
                        slots.ts[keep])


def nbo_scorer(model: Callable[[], CalibratedBooster], sim: Simulator):
    """Scores from the current model on features computed, as of midnight, from the history so far."""

    def score(view: DayView, opp: pd.DataFrame) -> tuple[np.ndarray, Mapping[str, Mapping[str, object]]]:
        data = dataset(sim)  # the contract tables of what has been simulated so far
        ids = np.asarray(view.customer_ids, dtype=object)[opp["customer"].to_numpy()]
        feats = build_customer_features(data, pd.Timestamp(view.date), customer_ids=np.unique(ids))
        ts = pd.Series(pd.Timestamp(view.date) + pd.to_timedelta(opp["ts"].to_numpy() - view.day * DAY, unit="s"))
        p = opportunity_scores(model(), data, feats, ids, np.array(CONTACT_CHANNELS, dtype=object)[opp["channel"]],
                               ts, pd.Timestamp(view.date))
        return p, rule_inputs(feats)
    return score


def truth_scorer(view: DayView, opp: pd.DataFrame) -> tuple[np.ndarray, Mapping[str, Mapping[str, object]]]:
    n_o = view.offers.n
    c = opp["customer"].to_numpy()
    rows = np.repeat(c, n_o)
    p = view.p_accept(rows, np.tile(np.arange(n_o), len(c)), np.repeat(opp["channel"].to_numpy(), n_o))
    uniq = np.unique(c)
    inputs = {view.customer_ids[i]: {"tenure_days": float(t), "lifecycle": LIFECYCLE_STAGES[lc]}
              for i, t, lc in zip(uniq, view.tenure_days(uniq), view.lifecycle(uniq), strict=True)}
    return p.reshape(len(c), n_o), inputs


def make_policy(name: str, sim: Simulator, policy: ContactPolicy, trained: TrainedWorld, seed: int,
                model: Callable[[], CalibratedBooster] | None = None):
    """The policy `name` plugged into `sim`; `model` gives the nbo policies their current model
    (default: the logging run's)."""
    model = model or (lambda: trained.model)
    offers = sim.catalogue.to_frame(sim.config)
    intensity, banner = sim.population.contact_intensity, sim.config.banner_rate
    if name == "random":
        return sim.default_policy()
    if name == "popular":
        return PopularPolicy(trained.popularity, intensity, banner, seed)
    scorer, rules = split_name(name)
    if scorer == "nbo":
        return ArbiterPolicy(name, RULE_SETS[rules](policy), offers, nbo_scorer(model, sim), intensity, banner, seed)
    return ArbiterPolicy(name, greedy(RULE_SETS[rules](policy)), offers, truth_scorer, intensity, banner, seed)


def learns_from_log(name: str) -> bool:
    """Whether policy `name` needs a `TrainedWorld` (a model or the logging run's popularity)."""
    return name.startswith("nbo") or name == "popular"


def split_name(name: str) -> tuple[str, str]:
    """("nbo" or "oracle", rule-set suffix) of an arbiter policy's name; ValueError if unknown."""
    for scorer in ("nbo", "oracle"):
        if name.startswith(scorer) and name[len(scorer):] in RULE_SETS:
            return scorer, name[len(scorer):]
    raise ValueError(f"unknown policy {name!r}; use one of {', '.join(ALL_POLICY_NAMES)}")

"""Closed-loop simulation of contact policies: each policy plugged into the simulator, day by day.

Every policy runs on a fresh `Simulator(config, seed)` (same customers, same catalogue, same start
state). What differs is who is contacted, on which channel and with which offer; the simulator's
truth then decides acceptance, fatigue, opt-outs and churn. Policies (see docs/evaluation.md):

- `random`: the simulator's logging policy (per-customer contact intensity, offer uniform among
  the eligible ones);
- `popular`: the same contact opportunities, always the eligible offer accepted most often in
  the training log;
- `nbo_uncapped`: nbo's ranking (`serving.ranking.Arbiter`, model scores) with no caps, no
  cooldowns, no per-offer cap;
- `nbo`: the same ranking with the contact policy's caps, cooldowns, quiet hours and consent;
- `oracle`: the same arbitration and caps as `nbo`, but with the TRUE acceptance probabilities
  (`DayView.p_accept`) and no exploration: the ceiling of what a better model could do.

The nbo policies (and the oracle) get one outbound opportunity per signed-up customer and day, on
a channel drawn like the logging policy's among the consented ones, plus a banner slot in half of
the web/app sessions; the arbiter decides whether to use it and with which offer.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features import FEATURE_SET, build_customer_features, build_exposure_features, customer_feature_names
from nbo.data import Dataset
from nbo.errors import NboError
from simulator import Contacts, DayView, SimConfig, Simulator
from simulator.config import CH, OUT
from simulator.io import dataset
from simulator.policies import contact_slots
from simulator.world import DAY
from nbo.vocab import CONTACT_CHANNELS, LIFECYCLE_STAGES
from serving.contact_store.base import (
    ContactHistory,
    ContactRecord,
    ContactStore,
    ReserveResult,
    split_offers,
    to_epoch,
)
from serving.policy import Cap, ContactPolicy, Cooldown, OutboundCap
from serving.catalogue import compile_offer_rules
from serving.ranking import Arbiter
from serving.reservation import ContactDesk
from training.datasets import propensity_set, time_split
from models.calibrated import CalibratedBooster

log = logging.getLogger(__name__)

POLICY_NAMES: tuple[str, ...] = ("random", "popular", "nbo_uncapped", "nbo", "oracle")
#: Not in the default comparison: the oracle without caps, for what caps are worth with perfect knowledge.
TRUTH_UNCAPPED = "oracle_uncapped"
#: A cap that never binds (how the rule sets below drop a cap).
_UNLIMITED = 10**9
#: Days of future value credited to a customer still active at the end (see `long_term_value`).
FUTURE_DAYS = 365
#: Window (days, at the end of the run) over which a policy's steady value rate is measured.
RATE_WINDOW_DAYS = 90
#: Days between refits of the nbo policies' model on their own log (`Refitter`; 0 = never). Over a
#: simulated year, monthly refits took nbo from 77.9-88.4 % of the oracle's long-term value
#: (5 seeds, median 81.3 %) to 78.5-94.0 % (7 seeds, median 82.4 %; docs/evaluation.md).
DEFAULT_REFIT_DAYS = 30


# ----------------------------------------------------------------------------- contact store
class MemoryContactStore(ContactStore):
    """An in-process contact store (one simulation, one thread) with the shared cap logic.

    Contacts are added by `check_and_reserve` (closed loop) or `add_contacts` (replaying a log);
    declines by `add_declines`, each at the moment it is observed: `history(now)` only sees
    contacts and declines strictly before `now`.
    """

    def __init__(self, horizon_days: int = 90) -> None:
        self.horizon_days = horizon_days
        self._contacts: dict[str, list[ContactRecord]] = defaultdict(list)
        self._declines: dict[str, list[tuple[float, str, str]]] = defaultdict(list)

    def add_contacts(self, customer_id: str, records: list[ContactRecord]) -> None:
        self._contacts[customer_id].extend(records)

    def add_declines(self, customer_ids, offer_ids, categories, ts_epoch) -> None:
        for c, o, k, t in zip(customer_ids, offer_ids, categories, ts_epoch, strict=True):
            self._declines[c].append((float(t), o, k))

    def history(self, customer_id: str, now: datetime | float) -> ContactHistory:
        t = now if isinstance(now, float) else to_epoch(now)
        since = t - self.horizon_days * 86_400.0
        rows = self._contacts.get(customer_id, ())
        recent = tuple(r for r in rows if since < r.ts < t)
        if len(recent) < len(rows) and rows and rows[0].ts <= since:  # forget what left the horizon
            self._contacts[customer_id] = [r for r in rows if r.ts > since]
        last_offer: dict[str, float] = {}
        last_cat: dict[str, float] = {}
        for ts, offer, cat in self._declines.get(customer_id, ()):
            if ts < t:
                if ts > last_offer.get(offer, -1.0):
                    last_offer[offer] = ts
                if ts > last_cat.get(cat, -1.0):
                    last_cat[cat] = ts
        return ContactHistory(customer_id, t, recent, last_offer, last_cat)

    def check_and_reserve(self, customer_id, channel, offers, now, policy, decision_id, propensities,
                          model_versions=None) -> ReserveResult:
        history = self.history(customer_id, now)
        ok, refused = split_offers(history, channel, offers, policy)
        t = to_epoch(now)
        self._contacts[customer_id].extend(ContactRecord(decision_id, o.offer_id, o.category, channel, t) for o in ok)
        return ReserveResult(decision_id, tuple(ok), tuple(refused))

    def record_outcome(self, decision_id: str, offer_id: str, outcome: str, ts: datetime) -> bool:
        return False  # outcomes come from the simulator's log (add_declines)

    def forget(self, customer_id: str) -> int:
        n = len(self._contacts.pop(customer_id, []))
        self._declines.pop(customer_id, None)
        return n

    def export(self, customer_id: str) -> dict[str, list[dict[str, object]]]:
        return {"decisions": [], "contacts": [r.__dict__ for r in self._contacts.get(customer_id, [])]}


def without_repeat_rules(policy: ContactPolicy) -> ContactPolicy:
    """The same policy without its repeat rules: no per-offer cap and no decline cooldowns, so the
    best offer may be made again and again. Its fatigue caps (per channel and outbound), consent,
    quiet hours, eligibility and arbitration are unchanged."""
    return policy.model_copy(update={"offer_cap": Cap(max=_UNLIMITED, days=1),
                                     "cooldown": Cooldown(offer_days=0, category_days=0)})


def without_fatigue_caps(policy: ContactPolicy) -> ContactPolicy:
    """The same policy without its fatigue caps (per channel and outbound): a customer may be
    contacted at every opportunity. Repeat rules, consent, quiet hours, eligibility and
    arbitration are unchanged."""
    return policy.model_copy(update={"caps": {}, "outbound": OutboundCap(max=_UNLIMITED, days=1)})


def uncapped(policy: ContactPolicy) -> ContactPolicy:
    """The same policy without its fatigue caps and without its repeat rules (consent, quiet
    hours, eligibility and arbitration unchanged)."""
    return without_fatigue_caps(without_repeat_rules(policy))


def greedy(policy: ContactPolicy) -> ContactPolicy:
    """The same policy without exploration."""
    arb = policy.arbitration
    return policy.model_copy(update={"arbitration": arb.model_copy(
        update={"exploration": arb.exploration.model_copy(update={"rate": 0.0})})})


#: The contact policy a closed-loop policy runs under, by the suffix of its name: the whole policy,
#: its fatigue caps alone, its repeat rules alone, or neither. Running the oracle under each tells
#: a marketer what each family of rules is worth in a world (docs/evaluation.md).
RULE_SETS: dict[str, Callable[[ContactPolicy], ContactPolicy]] = {
    "": lambda policy: policy,
    "_fatigue_caps": without_repeat_rules,
    "_repeat_rules": without_fatigue_caps,
    "_uncapped": uncapped,
}
#: Every policy `make_policy` knows: random, popular, and nbo / oracle under each rule set.
ALL_POLICY_NAMES: tuple[str, ...] = ("random", "popular", *(f"{scorer}{rules}" for scorer in ("nbo", "oracle")
                                                           for rules in RULE_SETS))


# ----------------------------------------------------------------------------- scoring
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
    offer_ids = data.offers["offer_id"].to_numpy(dtype=object)
    m, n_o = len(customer_ids), len(offer_ids)
    if m == 0:
        return np.zeros((0, n_o))
    exposures = pd.DataFrame({
        "customer_id": pd.array(np.repeat(np.asarray(customer_ids, dtype=object), n_o), dtype="str"),
        "offer_id": pd.array(np.tile(offer_ids, m), dtype="str"),
        "channel": pd.array(np.repeat(np.asarray(channels, dtype=object), n_o), dtype="str"),
        "ts": np.repeat(pd.to_datetime(ts).to_numpy(dtype="datetime64[ns]"), n_o),
    })
    rows = build_exposure_features(customer_features, data.offers, data.contacts, exposures, as_of)
    X = rows[list(model.feature_names_in_)].to_numpy(np.float32, na_value=np.nan)
    return model.predict_proba_positive(X).reshape(m, n_o)


def rule_inputs(features: pd.DataFrame) -> dict[str, dict[str, object]]:
    """Per customer, the values the eligibility rules read (customer feature names only)."""
    names = [c for c in customer_feature_names() if c in features.columns]
    return {cid: row for cid, row in zip(features.index, features[names].to_dict("records"), strict=True)}


# ----------------------------------------------------------------------------- policies
@dataclass
class ArbiterPolicy:
    """A closed-loop policy that asks `serving.ranking.Arbiter` at each opportunity.

    `scorer(view, opportunities) -> (p matrix, rule inputs per customer id)`. Contacts the arbiter
    makes are reserved in an in-memory store; the day's declines are fed back after the step.
    """

    name: str
    policy: ContactPolicy
    offers: pd.DataFrame
    scorer: Callable[[DayView, pd.DataFrame], tuple[np.ndarray, Mapping[str, Mapping[str, object]]]]
    intensity: np.ndarray
    banner_rate: float
    seed: int
    store: MemoryContactStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = MemoryContactStore(horizon_days=max(self.policy.longest_window_days, 1))
        rules = compile_offer_rules(self.offers, customer_feature_names())
        self.desk = ContactDesk(Arbiter(self.policy, self.offers, rules), self.store)
        self.rng = np.random.default_rng(self.seed)
        self._slot_rng = np.random.default_rng(self.seed + 1)
        self._offer_ids = self.offers["offer_id"].tolist()
        self._offer_pos = {o: i for i, o in enumerate(self._offer_ids)}
        self._category = dict(zip(self.offers["offer_id"], self.offers["category"], strict=True))

    def opportunities(self, view: DayView) -> pd.DataFrame:
        """One outbound opportunity per signed-up customer (channel drawn like the logging
        policy's) and a banner slot in a share `banner_rate` of sessions, in time order."""
        ones = np.ones(len(self.intensity))
        slots = contact_slots(view, ones * 50.0, self.banner_rate, self._slot_rng)  # Poisson(50) -> capped at 3
        frame = pd.DataFrame({"customer": slots.customer, "channel": slots.channel, "ts": slots.ts})
        outbound = frame["channel"] > CH["app"]
        frame = pd.concat([frame[outbound].drop_duplicates("customer"), frame[~outbound]])
        return frame.sort_values("ts", kind="stable").reset_index(drop=True)

    def __call__(self, view: DayView) -> Contacts:
        opp = self.opportunities(view)
        if opp.empty:
            return Contacts.empty()
        p, inputs = self.scorer(view, opp)
        ids = view.customer_ids
        picked_c, picked_o, picked_ch, picked_p, picked_ts = [], [], [], [], []
        consented = view.allowed_channels(opp["customer"].to_numpy())
        for i, (c, ch, ts) in enumerate(opp.itertuples(index=False, name=None)):
            cid, channel = ids[c], CONTACT_CHANNELS[ch]
            now = (view.date + pd.Timedelta(seconds=int(ts - view.day * DAY))).to_pydatetime()
            consents = {name: bool(consented[i, j]) for j, name in enumerate(CONTACT_CHANNELS)}
            decision = self.desk.decide(
                cid, channel, now, dict(zip(self._offer_ids, p[i].tolist(), strict=True)),
                features=inputs.get(cid), k=1, rng=self.rng, consents=consents,
                decision_id=f"{self.name}-{view.day}-{i}",
            )
            for shown in decision.offers:
                picked_c.append(c)
                picked_o.append(self._offer_pos[shown.offer_id])
                picked_ch.append(ch)
                picked_p.append(shown.propensity)
                picked_ts.append(ts)
        return Contacts(np.array(picked_c, dtype=np.int64), np.array(picked_o, dtype=np.int64),
                        np.array(picked_ch, dtype=np.int64), np.array(picked_p, dtype=float),
                        np.array(picked_ts, dtype=np.int64))

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


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainedWorld:
    """What the nbo policies learn before the evaluation period, from a logging-policy run."""

    model: CalibratedBooster
    popularity: np.ndarray  # acceptances per offer (catalogue order) in the training log
    train_rows: int
    valid_auc: float
    X: np.ndarray  # the logging run's exposure rows (training and validation), for refits
    y: np.ndarray
    num_boost_round: int = 200
    seed: int = 0


def train_on_logging_run(config: SimConfig, seed: int, days: int, num_boost_round: int = 200) -> TrainedWorld:
    """Simulate `days` days of the logging policy on the same world configuration with another
    seed, and fit the propensity model the way `training.train.fit_and_log` does (point-in-time
    exposure rows, time split, calibrated LightGBM) without MLflow."""
    from training.metrics import binary_metrics

    sim = Simulator(config.model_copy(update={"days": days}), seed=seed)
    sim.run()
    data = dataset(sim)
    as_of = pd.Timestamp(config.start) + pd.Timedelta(days=days)
    full = propensity_set(data, as_of, window_days=7, progress=False)
    valid = time_split(full.meta["ts"], 0.2)
    train, val = full.split(~valid), full.split(valid)
    model = CalibratedBooster(feature_names=full.feature_names, params={"seed": seed},
                              num_boost_round=num_boost_round).fit(train.X, train.y, val.X, val.y)
    auc = binary_metrics(val.y, model.predict_proba_positive(val.X)).auc
    accepted = data.contacts[data.contacts["outcome"] == "accepted"]["offer_id"].value_counts()
    popularity = accepted.reindex(data.offers["offer_id"]).fillna(0).to_numpy(float)
    log.info("trained on %d exposures (%s), validation AUC %.3f", len(train), FEATURE_SET.version, auc)
    return TrainedWorld(model, popularity, len(train), float(auc), full.X, full.y, num_boost_round, seed)


# ----------------------------------------------------------------------------- running
@dataclass(frozen=True)
class PolicyRun:
    """One policy's closed-loop result. Currency units; counts of customers and contacts.

    A customer is worth the offers they accept *and* what they buy on their own (at the world's
    `organic_margin`): churn loses both. `long_term_value` counts both; `offer_long_term_value` is
    the offers' part alone, and `organic_long_term_amount` the purchase amounts behind the other
    part (before the margin), so any margin's verdict can be recomputed: the value is linear in it.
    """

    name: str
    contacts: int
    accepted: int
    value: float  # accepted offers' value minus contact costs
    churned: int
    active_end: int
    long_term_value: float  # offer_long_term_value + organic_margin * organic_long_term_amount
    daily: pd.DataFrame
    refits: int = 0  # times the policy's model was refitted on its own log
    organic_value: float = 0.0  # margin on the purchases no offer prompted, within the period
    organic_amount: float = 0.0  # their amounts, before the margin
    offer_long_term_value: float = 0.0
    organic_long_term_amount: float = 0.0

    def row(self) -> dict[str, float | int]:
        return {"contacts": self.contacts, "accepted": self.accepted, "value": round(self.value, 2),
                "organic_value": round(self.organic_value, 2), "churned": self.churned,
                "active_end": self.active_end, "offer_long_term_value": round(self.offer_long_term_value, 2),
                "long_term_value": round(self.long_term_value, 2)}

    def value_after(self, days: int) -> float:
        """Net value of the offers over the first `days` days (the whole run if shorter): who
        leads in the first weeks."""
        return float(self.daily["net_value_cum"].iloc[min(days, len(self.daily)) - 1])

    def headline(self, first_days: int) -> dict[str, float | int]:
        """The figures the thesis is read from: contacts, customers kept, value within the period
        (offers, and with the margin on own purchases), after `first_days`, and long-term value."""
        return {"contacts": self.contacts, "active_end": self.active_end, "value": self.value,
                "value_with_organic": self.value + self.organic_value, "first_days": self.value_after(first_days),
                "long_term_value": self.long_term_value}


def long_term_value(daily: pd.DataFrame, future_days: int = FUTURE_DAYS, window: int = RATE_WINDOW_DAYS,
                    organic_margin: float = 0.0) -> float:
    """Net value earned + what the customers still active at the end are worth over one more
    `future_days`, at the policy's own steady state over the last `window` days: its net value per
    active customer-day, and its churn hazard per active customer-day. Churned customers are worth
    nothing more: that is the value lost with them.

    Net value is the offers' value minus contact costs, plus `organic_margin` times the amounts of
    the purchases no offer prompted (`organic_amount`; 0 counts the offers alone): a customer who
    churns stops buying altogether, and a measure that ignores those purchases would value a
    customer kept at only the offers they accept.

    The expected active customer-days of the extra period are `active_end * (1 - exp(-h F)) / h`
    (constant hazard `h`, `F = future_days`; `active_end * F` when nobody churns). Crediting the
    extra period *without* its churn (what this function did before) overstates a policy that
    keeps losing customers: it counted a year of its contact rate but none of its churn.
    """
    earned = daily["value"] - daily["cost"]
    if organic_margin:
        earned = earned + organic_margin * daily["organic_amount"]
    net = float(earned.sum())
    tail = daily.tail(window)
    customer_days = float(tail["active"].sum())
    rate = float(earned.tail(window).sum()) / customer_days if customer_days else 0.0
    hazard = float(tail["churned_today"].sum()) / customer_days if customer_days else 0.0
    active_end = int(daily["active"].iloc[-1] - daily["churned_today"].iloc[-1])
    return net + active_end * rate * expected_active_days(hazard, future_days)


def break_even_margin(capped: PolicyRun, uncapped: PolicyRun, within_period: bool = False) -> float:
    """The organic margin above which `capped` is worth more than `uncapped`: in long-term value,
    or (`within_period`) in what both earned within the period. 0 if it already is on offers
    alone; inf if keeping customers never makes up for it (both values are linear in the margin)."""
    if within_period:
        gap, kept = uncapped.value - capped.value, capped.organic_amount - uncapped.organic_amount
    else:
        gap = uncapped.offer_long_term_value - capped.offer_long_term_value
        kept = capped.organic_long_term_amount - uncapped.organic_long_term_amount
    if gap <= 0:
        return 0.0
    return gap / kept if kept > 0 else float("inf")


def expected_active_days(hazard: float, days: int) -> float:
    """Expected days a customer stays active over the next `days` under a constant daily churn
    `hazard` (the integral of exp(-hazard t) over [0, days])."""
    if hazard <= 1e-12:
        return float(days)
    return float(-np.expm1(-hazard * days) / hazard)


class Refitter:
    """The nbo policies' propensity model as a deployed nbo keeps it: refitted every `every_days`
    days on the logging run's rows plus the exposures the policy logged itself whose acceptance
    window has closed (early stopping and calibration on the latest 20 % of the policy's own
    rows, the period nearest to serving). `every_days = 0`: the logging run's model all along.

    Rows are built once, when their window closes (`propensity_set(after=...)`), and kept: a
    refit costs the new period's rows and one fit, not the whole history again.
    """

    def __init__(self, trained: TrainedWorld, every_days: int = 0, window_days: int = 7,
                 min_rows: int = 1000, min_positives: int = 20) -> None:
        if every_days < 0:
            raise ValueError("every_days must be >= 0")
        self.trained = trained
        self.model = trained.model
        self.every_days = every_days
        self.window_days = window_days
        self.min_rows = min_rows
        self.min_positives = min_positives
        self.refitted_on: list[int] = []  # days simulated at each refit
        self._after: pd.Timestamp | None = None
        self._X: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._ts: list[np.ndarray] = []

    def __call__(self) -> CalibratedBooster:
        return self.model

    @property
    def refits(self) -> int:
        return len(self.refitted_on)

    def after_day(self, sim: Simulator, days_done: int) -> None:
        """Refit when `days_done` days have been simulated and a period has ended."""
        if not self.every_days or days_done % self.every_days:
            return
        as_of = pd.Timestamp(sim.config.start) + pd.Timedelta(days=days_done)
        try:
            new = propensity_set(dataset(sim), as_of, self.window_days, progress=False, after=self._after)
        except NboError:  # no window closed yet
            return
        self._after = as_of - pd.Timedelta(days=self.window_days)
        self._X.append(new.X)
        self._y.append(new.y)
        self._ts.append(new.meta["ts"].to_numpy())
        y_own = np.concatenate(self._y)
        if len(y_own) < self.min_rows or y_own.sum() < self.min_positives:  # too little to validate on
            return
        X_own, ts_own = np.concatenate(self._X), pd.Series(np.concatenate(self._ts))
        valid = time_split(ts_own, 0.2)
        if len(np.unique(y_own[valid])) < 2:
            return
        base = self.trained
        self.model = CalibratedBooster(
            feature_names=list(base.model.feature_names_in_), params={"seed": base.seed},
            num_boost_round=base.num_boost_round,
        ).fit(np.concatenate([base.X, X_own[~valid]]), np.concatenate([base.y, y_own[~valid]]),
              X_own[valid], y_own[valid])
        self.refitted_on.append(days_done)
        log.info("refit %d at %s on %d rows (%d own)", self.refits, as_of.date(), len(base.y) + int((~valid).sum()),
                 len(y_own))


def _nbo_scorer(model: Callable[[], CalibratedBooster], sim: Simulator):
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


def _truth_scorer(view: DayView, opp: pd.DataFrame) -> tuple[np.ndarray, Mapping[str, Mapping[str, object]]]:
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
    scorer, rules = _split_name(name)
    if scorer == "nbo":
        return ArbiterPolicy(name, RULE_SETS[rules](policy), offers, _nbo_scorer(model, sim), intensity, banner, seed)
    return ArbiterPolicy(name, greedy(RULE_SETS[rules](policy)), offers, _truth_scorer, intensity, banner, seed)


def _learns_from_log(name: str) -> bool:
    """Whether policy `name` needs a `TrainedWorld` (a model or the logging run's popularity)."""
    return name.startswith("nbo") or name == "popular"


def _split_name(name: str) -> tuple[str, str]:
    """("nbo" or "oracle", rule-set suffix) of an arbiter policy's name; ValueError if unknown."""
    for scorer in ("nbo", "oracle"):
        if name.startswith(scorer) and name[len(scorer):] in RULE_SETS:
            return scorer, name[len(scorer):]
    raise ValueError(f"unknown policy {name!r}; use one of {', '.join(ALL_POLICY_NAMES)}")


def run_policy(name: str, config: SimConfig, seed: int, policy: ContactPolicy, trained: TrainedWorld | None,
               progress: bool = False, refit_days: int = DEFAULT_REFIT_DAYS) -> PolicyRun:
    """Run one policy over the whole period of `config` on the world of `seed`; the nbo policies
    refit their model every `refit_days` days on their own log (0: never, see `Refitter`). Only
    the truth-based policies and `random` run without a `trained` world."""
    from tqdm.auto import tqdm

    learns = name.startswith("nbo")
    if trained is None and _learns_from_log(name):
        raise ValueError(f"policy {name!r} learns from a logging run: pass a TrainedWorld")
    sim = Simulator(config, seed=seed)
    refitter = Refitter(trained, refit_days) if learns else None
    chosen = make_policy(name, sim, policy, trained, seed, model=refitter)
    first = 0
    for day in tqdm(range(config.days), desc=name, unit="day", disable=not progress, leave=False):
        sim.step(chosen)
        if isinstance(chosen, ArbiterPolicy):
            chosen.observe(sim, first)
        first += sim.results[-1].contacts
        if refitter is not None and day + 1 < config.days:  # a model fitted after the last day would score nothing
            refitter.after_day(sim, day + 1)
    return summarise(name, sim.daily(), config.organic_margin, refitter.refits if refitter is not None else 0)


def summarise(name: str, daily: pd.DataFrame, organic_margin: float, refits: int = 0) -> PolicyRun:
    """A policy's `PolicyRun` from its daily series (`Simulator.daily()`)."""
    daily = daily.copy()
    daily["net_value_cum"] = (daily["value"] - daily["cost"]).cumsum()
    daily["organic_value_cum"] = (organic_margin * daily["organic_amount"]).cumsum()
    daily["customer_value_cum"] = daily["net_value_cum"] + daily["organic_value_cum"]
    daily["active_end_of_day"] = daily["active"] - daily["churned_today"]
    offer_ltv = long_term_value(daily)
    return PolicyRun(
        name=name,
        contacts=int(daily["contacts"].sum()),
        accepted=int(daily["accepted"].sum()),
        value=float((daily["value"] - daily["cost"]).sum()),
        churned=int(daily["churned_total"].iloc[-1]),
        active_end=int(daily["active_end_of_day"].iloc[-1]),
        long_term_value=long_term_value(daily, organic_margin=organic_margin),
        daily=daily,
        refits=refits,
        organic_value=float(organic_margin * daily["organic_amount"].sum()),
        organic_amount=float(daily["organic_amount"].sum()),
        offer_long_term_value=offer_ltv,
        organic_long_term_amount=long_term_value(daily, organic_margin=1.0) - offer_ltv,
    )


def compare_policies(config: SimConfig, seed: int, policy: ContactPolicy, names: tuple[str, ...] | list[str] = POLICY_NAMES,
                     train_days: int = 180, num_boost_round: int = 200, progress: bool = False,
                     trained: TrainedWorld | None = None, refit_days: int = DEFAULT_REFIT_DAYS,
                     ) -> tuple[list[PolicyRun], TrainedWorld | None]:
    """Train once on a logging-policy run (seed + 1, `train_days` days), then run every policy on
    the world of `seed` for `config.days` days (the nbo policies refitting every `refit_days`).
    Policies that need no model (random and the oracles) run without training: `None` then."""
    if trained is None and any(_learns_from_log(name) for name in names):
        trained = train_on_logging_run(config, seed + 1, train_days, num_boost_round)
    runs = [run_policy(name, config, seed, policy, trained, progress, refit_days) for name in names]
    return runs, trained


def thesis_map(config: SimConfig, seed: int, policy: ContactPolicy, accept_fatigue: tuple[float, ...],
               churn_fatigue: tuple[float, ...], first_days: int = 28, progress: bool = False,
               capped: str = "oracle") -> pd.DataFrame:
    """What caps are worth with perfect knowledge, across worlds that punish over-contact more or
    less: for each (`accept_fatigue`, `churn_fatigue`) the oracle with and without the policy's
    caps on the same customers. One row per world: value within the period and after
    `first_days` (offers alone, and with the margin on customers' own purchases), long-term
    value, customers kept, and the organic margins above which the capped oracle is worth more in
    the long run and within the period (`break_even_margin`). No model is involved: this is the world's economics, the
    bound on what any capped policy can show in it. `capped` is the oracle under another rule set,
    e.g. `oracle_fatigue_caps` for the fatigue caps without the repeat rules."""
    if _split_name(capped)[0] != "oracle" or capped == TRUTH_UNCAPPED:
        raise ValueError(f"capped must be an oracle under some of the policy's rules, not {capped!r}")
    rows = []
    cells = [(a, c) for a in accept_fatigue for c in churn_fatigue]
    from tqdm.auto import tqdm

    for a, c in tqdm(cells, desc="worlds", disable=not progress, leave=False):
        world = config.model_copy(update={"accept_fatigue": a, "churn_fatigue": c})
        kept, free = (run_policy(n, world, seed, policy, None) for n in (capped, TRUTH_UNCAPPED))
        row = {"accept_fatigue": a, "churn_fatigue": c, "capped_policy": capped}
        for tag, r in (("capped", kept), ("uncapped", free)):
            row |= {f"{tag}_{key}": value for key, value in r.headline(first_days).items()}
        row["break_even_margin"] = break_even_margin(kept, free)
        row["break_even_margin_period"] = break_even_margin(kept, free, within_period=True)
        row["capped_wins_year"] = row["capped_value_with_organic"] > row["uncapped_value_with_organic"]
        row["capped_wins_long_term"] = kept.long_term_value > free.long_term_value
        row["uncapped_wins_first_days"] = row["uncapped_first_days"] > row["capped_first_days"]
        rows.append(row)
    return pd.DataFrame(rows)


def plot_thesis_map(frame: pd.DataFrame, path) -> object:
    """Heatmaps of the break-even organic margin over the (accept_fatigue, churn_fatigue) grid, in
    long-term value and within the period: below a cell's number the uncapped oracle is worth
    more, above it the capped one ("never": not even at a margin of 1)."""
    from pathlib import Path

    panels = [("break_even_margin", "long-term value")]
    if "break_even_margin_period" in frame:
        panels.append(("break_even_margin_period", "value within the period"))
    fig = Figure(figsize=(5.2 * len(panels), 4.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, (column, title) in zip(axes, panels, strict=True):
        grid = frame.pivot(index="accept_fatigue", columns="churn_fatigue", values=column)
        im = ax.imshow(grid.clip(upper=1.0).to_numpy(), origin="lower", cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(grid.columns)), [f"{c:g}" for c in grid.columns])
        ax.set_yticks(range(len(grid.index)), [f"{a:g}" for a in grid.index])
        for i in range(len(grid.index)):
            for j in range(len(grid.columns)):
                v = grid.iat[i, j]
                ax.text(j, i, "never" if not np.isfinite(v) or v > 1 else f"{v:.2f}", ha="center", va="center",
                        fontsize=9)
        ax.set(xlabel="churn_fatigue (churn hazard x per unit of fatigue)", title=f"caps pay off above this margin:\n{title}")
    axes[0].set_ylabel("accept_fatigue (logit per unit of fatigue)")
    capped = frame["capped_policy"].iloc[0] if "capped_policy" in frame else "oracle"
    fig.colorbar(im, ax=list(axes), label=f"break-even organic margin ({capped} vs {TRUTH_UNCAPPED})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def table(runs: list[PolicyRun]) -> pd.DataFrame:
    return pd.DataFrame({r.name: r.row() for r in runs}).T


def plot_runs(runs: list[PolicyRun], directory) -> list:
    """Cumulative net value and active customers over time, one line per policy (PNG files)."""
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for column, title, fname in (("net_value_cum", "cumulative net value of offers (currency units)", "cumulative_value.png"),
                                 ("customer_value_cum", "cumulative net value incl. margin on customers' own purchases",
                                  "cumulative_customer_value.png"),
                                 ("active_end_of_day", "active customers", "active_customers.png")):
        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
        for r in runs:
            ax.plot(r.daily["day"], r.daily[column], label=r.name)
        ax.set(title=title, xlabel="day")
        ax.legend()
        fig.tight_layout()
        path = directory / fname
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths

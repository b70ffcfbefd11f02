"""Closed loop by incremental value (issue 21 item 6): who gains what over a simulated period in a
world with cannibalisation and incentive variants.

Five policies on the same world (`Simulator(config, seed)`: same customers, catalogue and start):

- `uplift`: nbo's arbiter with `arbitration.objective = "uplift"`: tau and p_accept from the
  uplift model (`models.uplift.UpliftBooster`, `share` learner: its acceptance model times the
  incremental share), fitted on a randomised logging run (`train_uplift_world`), as serving does;
- `response`: the same arbiter and propensity model with the `response` objective (p x value);
- `random`: the simulator's logging policy (uniform over eligible offers and variants);
- `no_contact`: never contacts anyone;
- `oracle`: the `uplift` arbiter with the TRUE effects (`DayView.effect`) and no exploration: the
  incremental conversion that makes the arbiter's value equal the true incremental value.

`uplift`, `response` and `oracle` share the arbiter's contact opportunities, caps, cooldowns and
consent (`evaluation.sim_policies.ArbiterPolicy`) and differ only in what an offer is worth.
The models are fitted once, on a logging run of another world of the same configuration (seed +
1) with a control group and no-offer exploration; they are not refitted during the period.

Figures per run (`UpliftRun`): incremental value (the simulator's books: the incremental margin
of the acceptances - incentives given - contact costs, currency units), contacts, offers sent with
an incentive and discounts given (accepted incentive variants), incentive cost, and the margin on
customers' own purchases (what fatigue and churn take away shows there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from evaluation.rule_sets import greedy
from evaluation.sim_policies import ArbiterPolicy, opportunity_rows, rule_inputs, truth_scorer
from features import FEATURE_SET, build_customer_features
from features.incentives import incentive_columns
from models.calibrated import CalibratedBooster
from models.uplift import UpliftBooster
from nbo.control import in_control
from nbo.data import Dataset
from nbo.vocab import CONTACT_CHANNELS
from serving.policy import ContactPolicy
from simulator import DayView, SimConfig, Simulator
from simulator.config import OUT
from simulator.io import dataset
from simulator.policies import no_contact
from simulator.world import DAY

UPLIFT_LOOP_POLICIES: tuple[str, ...] = ("uplift", "response", "random", "no_contact", "oracle")


@dataclass(frozen=True)
class UpliftWorld:
    """The models the `uplift` and `response` policies use, fitted on a randomised logging run."""

    propensity: CalibratedBooster
    uplift: UpliftBooster
    propensity_rows: int
    uplift_rows: int
    uplift_metrics: dict[str, float]


@dataclass(frozen=True)
class UpliftRun:
    """What one policy did over the period (currency units for values)."""

    name: str
    incremental_value: float
    contacts: int
    accepted: int
    accepted_anyway: int
    incentive_offers: int  # contacts made with an incentive variant
    discounts_given: int  # accepted incentive variants
    incentive_cost: float
    organic_margin: float  # margin on customers' own purchases (organic_margin x amount)
    active_end: int

    def row(self) -> dict[str, float | int | str]:
        return asdict(self)


def train_uplift_world(config: SimConfig, seed: int, days: int, num_boost_round: int = 200,
                       control_share: float = 0.1, no_offer_rate: float = 0.1,
                       customers: int | None = None, keep_sets: list | None = None) -> UpliftWorld:  # type: ignore[type-arg]
    """Simulate `days` days of the logging policy with a control group and no-offer exploration
    on the world of `seed` (`customers`: its size, default the config's), fit the propensity model
    (as `evaluation.refit.train_on_logging_run`) and the uplift model (as
    `training.uplift.fit_uplift`) on its log, without MLflow. `keep_sets`: a list the uplift
    model's training and held-out sets are appended to (studies refit other learners on them)."""
    from training.datasets import propensity_set, time_split
    from training.uplift import UpliftConfig, fit_uplift

    logging_config = config.model_copy(update={"days": days, "control_share": control_share,
                                               "no_offer_rate": no_offer_rate,
                                               "customers": customers or config.customers})
    sim = Simulator(logging_config, seed=seed)
    sim.run()
    data = dataset(sim)
    as_of = pd.Timestamp(config.start) + pd.Timedelta(days=days)
    full = propensity_set(data, as_of, window_days=7, progress=False)
    valid = time_split(full.meta["ts"], 0.2)
    train, val = full.split(~valid), full.split(valid)
    propensity = CalibratedBooster(feature_names=full.feature_names, params={"seed": seed}, num_boost_round=num_boost_round,
                                   attributes=full.attributes, offer_vocabulary=full.vocabulary).fit(
        train.X, train.y, val.X, val.y)
    uplift, metrics, _, _, up_train, up_valid = fit_uplift(
        data, UpliftConfig(as_of=as_of, num_boost_round=num_boost_round, seed=seed), progress=False)
    if keep_sets is not None:
        keep_sets.extend([up_train, up_valid])
    return UpliftWorld(propensity, uplift, len(train), int(metrics["train_rows"]), metrics)


def model_inputs(world: UpliftWorld, sim: Simulator):  # type: ignore[no-untyped-def]
    """`inputs(view, opp) -> (propensity X, uplift X, rule inputs)` of every (opportunity, offer),
    offers in catalogue order within each opportunity, from features as of midnight."""
    offers = sim.catalogue.to_frame(sim.config)
    extra = incentive_columns(offers).astype(np.float32)
    prop_names = list(world.propensity.feature_names_in_)
    cand = list(FEATURE_SET.candidate_features)

    def inputs(view: DayView, opp: pd.DataFrame):  # type: ignore[no-untyped-def]
        data = dataset(sim)
        ids = np.asarray(view.customer_ids, dtype=object)[opp["customer"].to_numpy()]
        feats = build_customer_features(data, pd.Timestamp(view.date), customer_ids=np.unique(ids))
        ts = pd.Series(pd.Timestamp(view.date) + pd.to_timedelta(opp["ts"].to_numpy() - view.day * DAY, unit="s"))
        rows = opportunity_rows(data, feats, ids, np.array(CONTACT_CHANNELS, dtype=object)[opp["channel"]], ts,
                                pd.Timestamp(view.date), vocabulary=getattr(world.propensity, "vocabulary", None))
        n = len(ids)
        X_prop = rows[prop_names].to_numpy(np.float32, na_value=np.nan)
        # The uplift model is fitted without an offer vocabulary: it reads offer_code as NaN (serving.scoring).
        X_up = np.hstack([rows[cand].assign(offer_code=np.nan).to_numpy(np.float32, na_value=np.nan),
                          np.tile(extra, (n, 1))])
        return X_prop, X_up, rule_inputs(feats)

    return inputs


def model_scorer(world: UpliftWorld, sim: Simulator, with_uplift: bool):  # type: ignore[no-untyped-def]
    """p_accept (and tau) of every offer at each opportunity, from features as of midnight."""
    m = sim.catalogue.n
    inputs_of = model_inputs(world, sim)

    def score(view: DayView, opp: pd.DataFrame):  # type: ignore[no-untyped-def]
        X, X_up, inputs = inputs_of(view, opp)
        n = len(opp)
        if getattr(world.propensity, "is_choice", False):  # a softmax over the offers of each opportunity
            p = world.propensity.predict_proba_positive(X, np.repeat(np.arange(n), m)).reshape(n, m)
        else:
            p = world.propensity.predict_proba_positive(X).reshape(n, m)
        if not with_uplift:
            return p, inputs
        if getattr(world.uplift, "gives_acceptance", False):  # the incentive at the uplift model's acceptance (serving.pipeline)
            p = world.uplift.predict_accept(X_up).reshape(n, m)
        return p, inputs, world.uplift.predict_uplift(X_up).reshape(n, m)

    return score


def oracle_scorer(view: DayView, opp: pd.DataFrame):  # type: ignore[no-untyped-def]
    """The TRUE P(accept) and the incremental conversion that makes the uplift arbiter's value
    tau x base - p x incentive - cost the true incremental value (`simulator.truth.incremental_effect`):
    tau = (1 - q) p_new + q p_anyway x anyway_value_share, in [0, 1]."""
    _, inputs = truth_scorer(view, opp)
    n_o = view.offers.n
    c = opp["customer"].to_numpy()
    offers = np.tile(np.arange(n_o), len(c))
    effect = view.effect(np.repeat(c, n_o), offers, np.repeat(opp["channel"].to_numpy(), n_o))
    cat = view.offers
    p = effect.p_accept
    base = np.maximum(cat.base_value[offers], 1e-9)
    tau = np.clip((effect.incremental_value + p * cat.incentive_cost[offers] + cat.cost[offers]) / base, -1.0, 1.0)
    return p.reshape(len(c), n_o), inputs, tau.reshape(len(c), n_o)


def uplift_policy(name: str, sim: Simulator, policy: ContactPolicy, world: UpliftWorld | None, seed: int,
                  wrap: Callable | None = None):  # type: ignore[no-untyped-def,type-arg]
    """The policy `name` (`UPLIFT_LOOP_POLICIES`) plugged into `sim`; `policy` is the contact
    policy the arbiter policies share (its objective is set here). `wrap(sim, scorer) -> scorer`
    replaces an arbiter policy's scorer (`evaluation.uplift_gap`: hybrids, recording)."""
    if name == "random":
        return sim.default_policy()
    if name == "no_contact":
        return no_contact
    offers = sim.catalogue.to_frame(sim.config)
    intensity, banner = sim.population.contact_intensity, sim.config.banner_rate
    by = {"uplift": "uplift", "oracle": "uplift", "response": "response"}
    if name not in by:
        raise ValueError(f"unknown policy {name!r}; use one of {', '.join(UPLIFT_LOOP_POLICIES)}")
    chosen = policy.model_copy(update={"arbitration": policy.arbitration.model_copy(update={"objective": by[name]})})
    if name == "oracle":
        return ArbiterPolicy(name, greedy(chosen), offers, (wrap or _same)(sim, oracle_scorer), intensity, banner, seed,
                             skip_refused=True)
    if world is None:
        raise ValueError(f"policy {name!r} needs the models of a logging run (train_uplift_world)")
    return ArbiterPolicy(name, chosen, offers, (wrap or _same)(sim, model_scorer(world, sim, name == "uplift")), intensity,
                         banner, seed, skip_refused=True)


def _same(sim: Simulator, scorer: Callable) -> Callable:  # type: ignore[type-arg]
    return scorer


def run_uplift_policy(name: str, config: SimConfig, seed: int, policy: ContactPolicy,
                      world: UpliftWorld | None, wrap: Callable | None = None,  # type: ignore[type-arg]
                      label: str | None = None) -> UpliftRun:
    """Run one policy over `config.days` days of the world of `seed` and keep the books
    (`wrap`: see `uplift_policy`; `label`: the run's name, default `name`)."""
    sim = Simulator(config, seed=seed)
    chosen = uplift_policy(name, sim, policy, world, seed, wrap)
    first = 0
    for _ in range(config.days):
        sim.step(chosen)
        if isinstance(chosen, ArbiterPolicy):
            chosen.observe(sim, first)
        first += sim.results[-1].contacts
    daily = pd.DataFrame([r.__dict__ for r in sim.results])
    log = sim.contact_log()
    with_incentive = sim.catalogue.incentive_cost[log.offer.astype(np.int64)] > 0
    accepted = log.outcome == OUT["accepted"]
    return UpliftRun(
        name=label or name,
        incremental_value=float(daily["incremental_value"].sum()),
        contacts=int(daily["contacts"].sum()),
        accepted=int(daily["accepted"].sum()),
        accepted_anyway=int(daily["accepted_anyway"].sum()),
        incentive_offers=int(with_incentive.sum()),
        discounts_given=int((with_incentive & accepted).sum()),
        incentive_cost=float(daily["incentive_cost"].sum()),
        organic_margin=float(daily["organic_amount"].sum() * config.organic_margin),
        active_end=int(daily["active"].iloc[-1] - daily["churned_today"].iloc[-1]) if len(daily) else 0,
    )


def compare_uplift_policies(config: SimConfig, seed: int, policy: ContactPolicy,
                            names: tuple[str, ...] = UPLIFT_LOOP_POLICIES, train_days: int = 180,
                            num_boost_round: int = 200,
                            train_customers: int | None = None) -> tuple[list[UpliftRun], UpliftWorld | None]:
    """Fit the models on a logging run of the world of seed + 1 (`train_days` days,
    `train_customers` customers, default the config's), then run every policy on the world of
    `seed`. `config` must have cannibalisation and incentives on."""
    needs = any(n in ("uplift", "response") for n in names)
    world = (train_uplift_world(config, seed + 1, train_days, num_boost_round, customers=train_customers)
             if needs else None)
    return [run_uplift_policy(n, config, seed, policy, world) for n in names], world


#: The logging policies of the OPE check (`logging_policy`).
OPE_LOGGERS: tuple[str, ...] = ("uniform", "epsilon", "softmax")


@dataclass(frozen=True)
class UpliftOpe:
    """OPE of the `uplift` policy's incremental value on a randomised log of the same world,
    scaled to the log's decisions (currency units over the period), next to nothing else:
    the caller compares it with the closed-loop truth (`UpliftRun.incremental_value`).
    Estimators: `evaluation.ope.incremental_value` (IPS, SNIPS, DR with the uplift model's own ev
    as reward model, DR with the no-contact baseline only)."""

    decisions: int  # logged decisions (contacts and no-contact decisions)
    ips: float  # IPS per decision x decisions
    ips_low: float
    ips_high: float
    dr: float  # DR per decision x decisions
    dr_low: float
    dr_high: float
    ess: float
    matches: int
    snips: float = float("nan")
    snips_low: float = float("nan")
    snips_high: float = float("nan")
    dr_baseline: float = float("nan")
    dr_baseline_low: float = float("nan")
    dr_baseline_high: float = float("nan")
    logger: str = "uniform"
    epsilon: float = 1.0  # the logger's exploration rate
    contacts: int = 0  # logged contacts (the rest of `decisions` made none)
    target_contacts: float = float("nan")  # the target's expected contacts on the logged decisions (scaled)
    caps: str = "logged"  # the target's cap state: the log's or its own (`evaluate(caps=)`)
    control_customers: int = 0  # control-group members left out (their decisions are not in `decisions`)
    #: Weight checks (`IncrementalEstimates`): the contact rows' mean weight should be about the
    #: target's mean P(contact) (`coverage`), the no-contact rows' mean 1/mu about 1.
    contact_weight_mean: float = float("nan")
    coverage: float = float("nan")
    none_weight_mean: float = float("nan")

    def row(self) -> dict[str, float | int | str]:
        return asdict(self)

    def estimates(self) -> dict[str, tuple[float, float, float]]:
        """Estimator -> (value, low, high), scaled."""
        return {name: (getattr(self, name), getattr(self, f"{name}_low"), getattr(self, f"{name}_high"))
                for name in ("ips", "snips", "dr", "dr_baseline")}


def logging_policy(policy: ContactPolicy, control_share: float = 0.1, no_offer_rate: float = 0.1,
                   logger: str = "uniform", epsilon: float = 0.1, temperature: float = 1.0) -> ContactPolicy:
    """The randomised logging policy of the OPE check: the same contact rules, a control group and
    no-offer exploration (`serving.holdout`), and `logger`:

    - `uniform`: every eligible offer equally likely (exploration rate 1, flat scores);
    - `epsilon`: the production uplift policy exploring: its greedy pick with probability
      1 - `epsilon`, else uniform over the offers it may make (`serving.selection`, epsilon_greedy);
    - `softmax`: the same, the exploring share drawn with weights exp(ev / `temperature`).

    The exploring loggers only ever contact with an offer whose ev pays (>= min_expected_value),
    as the target does: where the target makes no contact, so do they."""
    if logger not in OPE_LOGGERS:
        raise ValueError(f"unknown OPE logger {logger!r}; use one of {', '.join(OPE_LOGGERS)}")
    arb = policy.arbitration
    if logger == "uniform":
        update = {"rate": 1.0, "method": "epsilon_greedy", "no_offer_rate": no_offer_rate}
        objective = "response"
    else:
        update = {"rate": epsilon, "method": "epsilon_greedy" if logger == "epsilon" else "softmax",
                  "temperature": temperature, "no_offer_rate": no_offer_rate}
        objective = "uplift"
    exploration = arb.exploration.model_copy(update=update)
    return policy.model_copy(update={
        "arbitration": arb.model_copy(update={"objective": objective, "exploration": exploration}),
        "control_group": policy.control_group.model_copy(update={"share": control_share}),
    })


def ope_log(config: SimConfig, seed: int, policy: ContactPolicy, world: UpliftWorld, control_share: float = 0.1,
            no_offer_rate: float = 0.1, customers: int | None = None, logger: str = "uniform", epsilon: float = 0.1,
            temperature: float = 1.0) -> tuple[Dataset, ContactPolicy]:
    """(the log, the logging policy): `config.days` days of the world of `seed` (`customers`
    customers, default the config's) logged by the randomised `logging_policy` on the closed
    loop's own contact opportunities (`ArbiterPolicy`, every decision logged with its
    propensity, "no contact" included). The exploring loggers score with the same models as the
    target (`model_scorer`)."""
    sim = Simulator(config.model_copy(update={"customers": customers or config.customers}), seed=seed)
    offers = sim.catalogue.to_frame(config)
    m = len(offers)

    def flat_scorer(view: DayView, opp: pd.DataFrame):  # type: ignore[no-untyped-def]
        _, inputs = truth_scorer(view, opp)
        return np.ones((len(opp), m)), inputs

    scorer = flat_scorer if logger == "uniform" else model_scorer(world, sim, with_uplift=True)
    logging = logging_policy(policy, control_share, no_offer_rate, logger, epsilon, temperature)
    logger_policy = ArbiterPolicy("logging", logging, offers, scorer, sim.population.contact_intensity,
                                  config.banner_rate, seed + 7, skip_refused=True, log_no_offers=True)
    first = 0
    for _ in range(config.days):
        sim.step(logger_policy)
        logger_policy.observe(sim, first)
        first += sim.results[-1].contacts
    return dataset(sim), logging


def uplift_ope(config: SimConfig, seed: int, policy: ContactPolicy, world: UpliftWorld,
               window_days: int = 1, control_share: float = 0.1, no_offer_rate: float = 0.1,
               customers: int | None = None, logger: str = "uniform", epsilon: float = 0.1,
               temperature: float = 1.0, caps: str = "target", exclude_control: bool = True,
               log: tuple[Dataset, ContactPolicy] | None = None) -> UpliftOpe:
    """Log `config.days` days of the world of `seed` with the randomised `logging_policy`
    (`ope_log`; or take `log`, what `ope_log` returned), then estimate off-policy the incremental
    value of the `uplift` policy (`evaluation.evaluate.evaluate` with the uplift model) on that
    log, summed over its decisions. `logger`, `epsilon`, `temperature`: see `logging_policy`.
    `window_days`: the purchase window of the outcome (the simulator's acceptances buy the same
    day; a shorter window carries less organic noise).

    Two things make the sum the target's (docs/evaluation.md, issue 21):
    - `exclude_control`: the control group is drawn per customer, so its members' decisions are
      left out (their propensities are not per decision) and the sum over the others is scaled
      to all customers (x customers / customers outside the group); the no-contact arm is the
      randomised no-offer draw;
    - `caps="target"`: the target is valued on its own cap state along each customer's logged
      decisions (its own contacts so far), so the decisions the holdouts left open but its own
      caps would close count 0 (`caps="logged"`: the log's cap state, as `nbo evaluate`).
    `customers`: the logging run's size (default the config's); the totals are scaled to the
    config's customers."""
    from evaluation.evaluate import evaluate, logged_decisions

    logged_customers = customers or config.customers
    data, logging = log if log is not None else ope_log(config, seed, policy, world, control_share, no_offer_rate,
                                                        customers, logger, epsilon, temperature)
    target = policy.model_copy(update={"arbitration": policy.arbitration.model_copy(update={"objective": "uplift"})})
    start = pd.Timestamp(config.start)
    until = start + pd.Timedelta(days=config.days)
    group = logging.control_group if exclude_control else logging.control_group.model_copy(update={"share": 0.0})
    result = evaluate(data, world.propensity, target, since=start, until=until, uplift=world.uplift,
                      window_days=window_days, caps=caps, control=group)
    inc, n = result.candidate.incremental, result.n_decisions
    members = int(in_control(data.customers["customer_id"].astype(str).tolist(), group.share, group.salt).sum())
    scale = n * config.customers / (logged_customers - members)
    if inc is None or inc.dr is None or inc.snips is None or inc.dr_baseline is None:
        raise ValueError("the logging run logged no decision without contact")
    d = result.candidate.diagnostics
    contacts = int(logged_decisions(data, start, until, group)["offer_id"].notna().sum())
    return UpliftOpe(n, inc.ips.value * scale, inc.ips.low * scale, inc.ips.high * scale, inc.dr.value * scale,
                     inc.dr.low * scale, inc.dr.high * scale, d.ess, d.matches,
                     inc.snips.value * scale, inc.snips.low * scale, inc.snips.high * scale,
                     inc.dr_baseline.value * scale, inc.dr_baseline.low * scale, inc.dr_baseline.high * scale,
                     logger, 1.0 if logger == "uniform" else epsilon, contacts,
                     result.candidate.offer_rate * scale, caps, members, inc.contact_weight_mean, inc.coverage,
                     inc.none_weight_mean)

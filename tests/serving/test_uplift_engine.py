"""Decisions by incremental value through the decision engine (issue 21 item 4): the uplift
champion is loaded when the policy's objective is `uplift`, its scores reach the arbiter, online
(`DecisionEngine.decide`, what `/recommend` calls) and batch (`nbo score`) give the same answers,
and a missing uplift champion is one clear error at start-up.

The world: cannibalisation, incentive variants, a universal control group and no-offer
exploration, so the log is randomised and the uplift model can be fitted on it."""

from __future__ import annotations

import dataclasses
import functools
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from features import CANDIDATE_FEATURES, Context, candidate_matrix
from features.incentives import INCENTIVE_FEATURES, with_incentives
from nbo.errors import NboError
from serving.engine import DecisionEngine
from serving.pipeline import CustomerBlock
from serving.reasons import BEST_INCREMENTAL
from serving.settings import EngineSettings

START = date(2025, 1, 1)
DAYS = 100
AS_OF = pd.Timestamp(START) + pd.Timedelta(days=DAYS)
NOW = (AS_OF + pd.Timedelta(hours=10)).to_pydatetime()
UPLIFT_POLICY = """
[arbitration]
objective = "uplift"
max_per_category = 99
fatigue_cost = { email = 0.02 }
[arbitration.exploration]
rate = 0.0
"""
runner = CliRunner()


@dataclasses.dataclass(frozen=True)
class World:
    data: Path
    features: Path
    tracking_uri: str
    empty_tracking_uri: str  # a registry without any model

    def settings(self, store: Path, policy: Path, tracking_uri: str | None = None) -> EngineSettings:
        return EngineSettings(data_dir=self.data, features_path=self.features, store=str(store), policy_path=policy,
                              tracking_uri=tracking_uri or self.tracking_uri, compile_models=False)


@functools.cache
def _build(root: Path) -> World:
    from features import build_customer_features, write_materialised
    from models.tracking import MODEL_NAMES, UPLIFT_MODEL, resolve_tracking
    from nbo.data import load_dataset
    from simulator import SimConfig, Simulator, write_simulation
    from simulator.config import DEFAULT_INCENTIVES
    from training.registry import promote, promote_uplift
    from training.train import TrainConfig, fit_and_log
    from training.uplift import UpliftConfig, fit_and_log_uplift

    config = SimConfig(customers=800, days=DAYS, start=START, cannibalisation=True, incentives=DEFAULT_INCENTIVES,
                       control_share=0.1, no_offer_rate=0.1)
    sim = Simulator(config, seed=3)
    sim.run()
    write_simulation(sim, root / "data")
    data = load_dataset(root / "data")
    tracking = resolve_tracking(f"sqlite:///{root / 'mlflow.db'}")
    client = tracking.activate()
    for which in ("propensity", "churn"):
        fit_and_log(which, data, TrainConfig(as_of=AS_OF, num_boost_round=30, horizon_days=30, churn_step_days=15),
                    tracking, progress=False)
        promote(client, MODEL_NAMES[which], force=True)
    fit_and_log_uplift(data, UpliftConfig(as_of=AS_OF, num_boost_round=30), tracking, progress=False)
    promote_uplift(client, UPLIFT_MODEL, force=True)
    empty = resolve_tracking(f"sqlite:///{root / 'empty.db'}")
    uris = [tracking.uri, empty.uri]
    write_materialised(build_customer_features(data, AS_OF), root / "features.parquet", AS_OF)
    return World(root / "data", root / "features.parquet", *uris)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = Path(tmp_path_factory.getbasetemp()) / "nbo-uplift-world"
    base.mkdir(exist_ok=True)
    return _build(base)


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "uplift.toml"
    path.write_text(UPLIFT_POLICY)
    return path


def _incremental_value(engine: DecisionEngine, cid: str, offer_id: str, tau: float, p: float, channel: str) -> float:
    """The uplift formula of serving.ranking, from the offers table (lever 1: the policy sets none)."""
    row = engine.offers.set_index("offer_id").loc[offer_id]
    incentive = float(row["incentive_cost"]) if pd.notna(row["incentive_cost"]) else 0.0
    fatigue = engine.policy.arbitration.fatigue_cost.get(channel, 0.0)
    ev = tau * (row["value"] + incentive) - p * incentive - row["cost"] - fatigue
    pos = int(engine.positions([cid])[0])
    if row["kind"] == "retention" and pos >= 0:  # the relationship kept, counted on the customers the contact changes
        ev += engine.models.churn_probability[pos] * engine.features["spend_365d"].iloc[pos] * tau
    return ev


def test_online_decisions_are_worth_their_incremental_value(world: World, policy: Path, tmp_path: Path) -> None:
    engine = DecisionEngine.from_settings(world.settings(tmp_path / "c.db", policy))
    models = engine.models
    assert models is not None and models.uplift is not None
    assert models.versions["uplift"].startswith("nbo-uplift/")
    offered = 0
    for cid in engine.features.index[:60]:
        ctx = Context(channel="email")
        d = engine.decide(cid, "email", ctx, NOW, k=3, reserve=False)
        assert d.model_versions == models.versions
        # tau recomputed here from the registered estimator on the features package's candidate rows
        X = candidate_matrix(engine.scorer.numeric.loc[[cid]], engine.offers, engine.scorer.live_contacts([cid]), ctx,
                             pd.Timestamp(NOW))
        X = with_incentives(X.astype(np.float32), engine.offers, np.arange(len(engine.offers)))
        names = [*CANDIDATE_FEATURES, *INCENTIVE_FEATURES]
        X = X[:, [names.index(n) for n in models.uplift.feature_names]]
        tau = dict(zip(engine.offer_ids, models.uplift.model.predict_uplift(X), strict=True))
        # the incentive is charged at the uplift model's own acceptance (the `share` learner's)
        accept = dict(zip(engine.offer_ids, models.uplift.model.predict_accept(X), strict=True))
        for o in d.offers:
            assert o.p_accept == pytest.approx(accept[o.offer_id], rel=1e-9)
            expected = _incremental_value(engine, cid, o.offer_id, tau[o.offer_id], o.p_accept, "email")
            assert o.expected_value == pytest.approx(expected, rel=1e-9, abs=1e-12)
            assert o.expected_value >= engine.policy.arbitration.min_expected_value
            assert BEST_INCREMENTAL in o.reasons
        offered += bool(d.offers)
        # every offer that reached the value step and pays less than nothing was left out
        reasons = {s.offer_id: s.reason for s in d.suppressed}
        for oid, why in reasons.items():
            if why == "min_value":
                p = accept[oid]
                assert _incremental_value(engine, cid, oid, tau[oid], p, "email") < engine.policy.arbitration.min_expected_value
    assert 0 < offered < 60  # some customers are worth a contact, some are not
    engine.close()


def test_unknown_customer_is_valued_by_the_mean_incremental_share(world: World, policy: Path, tmp_path: Path) -> None:
    """A customer without features gets the popularity fallback as acceptance and tau = fallback x
    the uplift model's mean incremental share measured on the log: decidable, not left out."""
    engine = DecisionEngine.from_settings(world.settings(tmp_path / "c.db", policy))
    share = engine.models.uplift.model.mean_share_
    assert 0.0 < share <= 1.0
    d = engine.decide("c-never-seen", "web", None, NOW, k=3, reserve=False)
    assert d.fallback
    assert "invalid_score" not in {s.reason for s in d.suppressed}
    popularity = dict(zip(engine.offer_ids, engine.scorer.popularity, strict=True))
    valued = [(o.offer_id, o.expected_value) for o in d.offers]
    valued += [(s.offer_id, None) for s in d.suppressed if s.reason == "min_value"]
    assert valued  # every offer on the channel reached the value step
    for oid, ev in valued:
        expected = _incremental_value(engine, "c-never-seen", oid, popularity[oid] * share, popularity[oid], "web")
        if ev is None:
            assert expected < engine.policy.arbitration.min_expected_value
        else:
            assert ev == pytest.approx(expected, rel=1e-9, abs=1e-12)
    engine.close()


def test_online_and_batch_agree(world: World, policy: Path, tmp_path: Path) -> None:
    """`nbo score` (chunks of 37) and `decide` (one row) give the same offers, values and propensities."""
    engine = DecisionEngine.from_settings(world.settings(tmp_path / "online.db", policy))
    sample = engine.features.index[:90].tolist()
    listing = tmp_path / "ids.csv"
    pd.DataFrame({"customer_id": sample}).to_csv(listing, index=False)
    out = tmp_path / "batch.parquet"
    result = runner.invoke(app, ["score", "--data", str(world.data), "--features", str(world.features),
                                 "--tracking-uri", world.tracking_uri, "--as-of", NOW.isoformat(), "--channel", "email",
                                 "--out", str(out), "--store", str(tmp_path / "batch.db"), "--policy", str(policy),
                                 "--customers", str(listing), "--chunk-size", "37", "--k", "3", "--dry-run",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    batch = pd.read_parquet(out).sort_values(["customer_id", "rank"]).reset_index(drop=True)
    rows = [(cid, o.offer_id, o.rank, o.p_accept, o.expected_value, o.propensity)
            for cid in sample for o in engine.decide(cid, "email", None, NOW, k=3, reserve=False).offers]
    online = pd.DataFrame(rows, columns=["customer_id", "offer_id", "rank", "p_accept", "expected_value", "propensity"])
    online = online.sort_values(["customer_id", "rank"]).reset_index(drop=True)
    assert len(online) > 5
    pd.testing.assert_frame_equal(batch[online.columns], online, check_dtype=False, check_exact=True)
    # The block (a batch chunk) carries the incremental conversions it arbitrated.
    block = engine.decide_block(CustomerBlock(sample[:5]), "email", NOW, None, k=3)
    assert block.uplift is not None and np.isfinite(block.uplift).all()
    engine.close()


def test_no_uplift_champion_is_one_clear_error_at_start(world: World, policy: Path, tmp_path: Path) -> None:
    with pytest.raises(NboError, match="arbitration.objective = 'uplift'.*nbo-uplift has no @champion"):
        DecisionEngine.from_settings(world.settings(tmp_path / "c.db", policy, world.empty_tracking_uri))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(app, ["score", "--data", str(world.data), "--features", str(world.features),
                                 "--tracking-uri", world.empty_tracking_uri, "--as-of", NOW.isoformat(),
                                 "--channel", "email", "--out", str(tmp_path / "o.parquet"),
                                 "--store", str(tmp_path / "s.db"), "--policy", str(policy), "--dry-run", "--no-progress"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nbo train --model uplift" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_response_objective_loads_no_uplift_model(world: World, tmp_path: Path) -> None:
    engine = DecisionEngine.from_settings(world.settings(tmp_path / "c.db", None))
    assert engine.models is not None and engine.models.uplift is None and "uplift" not in engine.models.versions
    engine.close()

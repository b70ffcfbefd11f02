"""The uplift model end to end: a randomised simulated log with cannibalisation and incentives,
a real SQLite MLflow store, the registry and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from models.registry import load_model
from models.tracking import CHAMPION, UPLIFT_MODEL, resolve_tracking, version_by_alias
from nbo.data import load_dataset
from nbo.errors import NboError
from simulator import SimConfig, Simulator, write_simulation
from simulator.config import DEFAULT_INCENTIVES
from training.registry import promote_uplift
from training.uplift import UpliftConfig, fit_and_log_uplift
from training.uplift_set import acceptance_span_days, uplift_set

DAYS = 120
START = pd.Timestamp("2025-01-01")
AS_OF = START + pd.Timedelta(days=DAYS)
runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "data"
    config = SimConfig(customers=1500, days=DAYS, start=START.date(), cannibalisation=True,
                       incentives=DEFAULT_INCENTIVES, control_share=0.1, no_offer_rate=0.1)
    sim = Simulator(config, seed=5)
    sim.run()
    write_simulation(sim, out)
    return out


def test_the_set_holds_both_arms_point_in_time(world: Path) -> None:
    data = load_dataset(world)
    s = uplift_set(data, AS_OF, progress=False)
    control = s.treatment == 0
    randomised = data.no_offers["reason"].isin(["control", "explore"])
    window_closed = data.no_offers["ts"] + pd.Timedelta(days=7) <= AS_OF
    n_categories = data.offers["category"].nunique()
    assert control.sum() == (randomised & window_closed).sum() * n_categories  # one row per category
    assert s.accepted[control].sum() == 0
    assert (s.meta["ts"] + pd.Timedelta(days=7) <= AS_OF).all()
    # A contact adds purchases of the offer's category on average; control rows buy only organically.
    assert s.y[~control].mean() > s.y[control].mean()
    incentive = s.meta["incentive_cost"] > 0
    assert incentive.any() and (s.X[:, s.feature_names.index("offer_incentive_cost")] > 0).sum() == incentive.sum()
    # The simulator's acceptances arrive on the day of the contact: the span is one day, and its
    # purchases are the window's first day's (never more than the window's).
    assert s.span_days == 1
    assert (s.prompt_purchases <= s.purchases).all() and s.prompt_purchases.sum() < s.purchases.sum()
    half = s.split(np.arange(len(s)) % 2 == 0)
    np.testing.assert_array_equal(half.prompt_purchases, s.prompt_purchases[::2])
    assert half.span_days == 1
    # The lift a contact brings shows within the span as within the window (same sign, same size).
    lift = {name: out[~control].mean() - out[control].mean() for name, out in (("span", s.prompt_purchases),
                                                                           ("window", s.purchases))}
    assert lift["span"] > 0 and abs(lift["span"] - lift["window"]) < 0.5 * lift["window"], lift


def _contacts(delays_days: list[float | None], outcome: str = "accepted") -> pd.DataFrame:
    ts = pd.Series(START + pd.to_timedelta(np.arange(len(delays_days)), unit="h"))
    delay = pd.to_timedelta(pd.Series([np.nan if d is None else d for d in delays_days], dtype="float64"), unit="D")
    return pd.DataFrame({"ts": ts, "outcome": outcome, "outcome_ts": ts + delay})


def test_acceptance_span_days() -> None:
    assert acceptance_span_days(_contacts([0.1, 0.2, 0.6]), 7) == 1  # at least one day
    assert acceptance_span_days(_contacts([0.1] * 97 + [2.5] * 3), 7) == 3  # 3 % late: the 99th percentile, rounded up
    assert acceptance_span_days(_contacts([0.1] * 200 + [6.5]), 7) == 1  # one late acceptance in 201
    assert acceptance_span_days(_contacts([5.5] * 10), 3) == 3  # an acceptance after the window is not one
    assert acceptance_span_days(_contacts([None, None]), 7) == 7  # no time: the whole window
    assert acceptance_span_days(_contacts([0.5], outcome="declined"), 7) == 7  # no acceptance
    assert acceptance_span_days(_contacts([]), 7) == 7
    assert acceptance_span_days(_contacts([-1.0, 9.0]), 7) == 7  # an outcome before its contact is ignored
    with pytest.raises(ValueError, match="window_days must be positive"):
        acceptance_span_days(_contacts([0.5]), 0)


def test_train_register_promote_load(world: Path, tmp_path: Path) -> None:
    tracking = resolve_tracking(None, workdir=tmp_path)
    client = tracking.activate()
    result = fit_and_log_uplift(load_dataset(world), UpliftConfig(as_of=AS_OF, num_boost_round=100), tracking,
                                data_dir=world, progress=False)
    m = result.metrics
    assert m["qini_uplift"] > m["qini_random"]
    assert m["value_qini_uplift"] > m["value_qini_random"]
    assert m["truth_corr_uplift"] > 0.3 and m["truth_rows"] > 1000
    assert abs(m["mean_uplift"] - m["mean_true_uplift"]) < 0.02
    assert "qini (value)" in result.summary()
    promoted = promote_uplift(client, UPLIFT_MODEL)
    assert promoted.promoted == (m["value_qini_uplift"] > max(m["value_qini_response"], m["value_qini_random"]))
    if not promoted.promoted:
        assert promote_uplift(client, UPLIFT_MODEL, force=True).promoted
    assert version_by_alias(client, UPLIFT_MODEL, CHAMPION) == result.version
    loaded = load_model(client, kind="uplift")
    assert loaded.feature_names[-3:] == ["offer_incentive_cost", "offer_base_value", "offer_incentive_share"]
    X = np.zeros((2, len(loaded.feature_names)), dtype=np.float32)
    assert loaded.model.predict_uplift(X).shape == (2,)
    assert loaded.label == f"{UPLIFT_MODEL}/{result.version}"
    # one loader for every kind: the wrong kind, or an unknown one, is one clear error
    with pytest.raises(NboError, match="is not an nbo model"):
        load_model(client, UPLIFT_MODEL, kind="propensity")
    with pytest.raises(ValueError, match="unknown model kind"):
        load_model(client, UPLIFT_MODEL, kind="churn")


def test_cli_refuses_a_log_without_decisions_without_contact(tmp_path: Path) -> None:
    out = tmp_path / "plain"
    sim = Simulator(SimConfig(customers=200, days=30, start=START.date()), seed=1)
    sim.run()
    write_simulation(sim, out)
    res = runner.invoke(app, ["train", "--data", str(out), "--as-of", "2025-01-31", "--model", "uplift",
                              "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}"])
    assert res.exit_code == 2, res.output
    assert "randomised decisions without contact" in res.output
    assert not (tmp_path / "mlartifacts").exists()

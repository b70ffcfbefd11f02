"""Churn trains on a purchases-only export (customers with id and signup, events; no offers,
contacts or consents) through the same path as the CLI: load, fit_and_log, registry, predict."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from features import FEATURE_SET, build_customer_features
from nbo.data import load_dataset
from nbo.errors import NboError
from models.tracking import CHALLENGER, CHURN_MODEL, resolve_tracking, version_by_alias
from training.train import TrainConfig, fit_and_log

from tests.nbo.minimal_export import START, write_minimal_export

AS_OF = START + pd.Timedelta(days=480)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_minimal_export(tmp_path_factory.mktemp("export") / "data", customers=600, days=480, seed=3)


def test_churn_trains_and_predicts_on_a_minimal_export(export: Path, tmp_path: Path) -> None:
    data = load_dataset(export)
    assert set(data.absent_tables) == {"consents", "offers", "contacts", "no_offers"}
    tracking = resolve_tracking(None, workdir=tmp_path / "ml")
    client = tracking.activate()
    result = fit_and_log("churn", data, TrainConfig(as_of=AS_OF, num_boost_round=60), tracking, progress=False)
    assert version_by_alias(client, CHURN_MODEL, CHALLENGER) == result.version
    m = result.report.metrics
    # Customers who stop buying are learnable from recency and frequency alone.
    assert m["auc"] > 0.7, m

    model = mlflow.pyfunc.load_model(f"models:/{CHURN_MODEL}/{result.version}")
    frame = build_customer_features(data, AS_OF)
    p = model.predict(frame[list(FEATURE_SET.customer_features)].astype("float32"))  # the signature's type
    assert len(p) == len(data.customers) and np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    # Who bought within the last 30 days is less likely to churn than who has not bought for 200.
    recent = frame["recency_days"].to_numpy() < 30
    gone = (frame["recency_days"].to_numpy() > 200) & (frame["recency_days"].to_numpy() < 9999)
    assert recent.sum() > 20 and gone.sum() > 20
    assert p[recent].mean() < p[gone].mean()


def test_propensity_says_what_is_missing(export: Path, tmp_path: Path) -> None:
    tracking = resolve_tracking(None, workdir=tmp_path / "ml")
    tracking.activate()
    with pytest.raises(NboError, match="contacts table is empty"):
        fit_and_log("propensity", load_dataset(export), TrainConfig(as_of=AS_OF), tracking, progress=False)


def test_cli_trains_and_predicts_churn_on_a_minimal_export(export: Path, tmp_path: Path) -> None:
    """`nbo validate`, `nbo train --model churn` and `nbo predict --model churn` on customers +
    events only (issue 20's "done when")."""
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ok = runner.invoke(app, ["validate", "--data", str(export)])
    assert ok.exit_code == 0, ok.output
    assert "contacts         absent  (optional)" in ok.stdout  # not "0 rows ok"
    assert "note: no contacts table:" in ok.stdout
    trained = runner.invoke(app, ["train", "--data", str(export), "--as-of", str(AS_OF.date()), "--model", "churn",
                                  "--tracking-uri", uri])
    assert trained.exit_code == 0, trained.output
    out = tmp_path / "churn.parquet"
    scored = runner.invoke(app, ["predict", "--model", "churn", "--data", str(export), "--as-of", str(AS_OF.date()),
                                 "--out", str(out), "--alias", "challenger", "--tracking-uri", uri])
    assert scored.exit_code == 0, scored.output
    frame = pd.read_parquet(out)
    assert len(frame) == 600
    assert frame["churn_probability"].between(0, 1).all() and frame["churn_probability"].nunique() > 1

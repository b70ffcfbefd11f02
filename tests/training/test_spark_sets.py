"""`nbo train --engine spark` (issue 24 goal 5): the propensity and churn training sets built by
Spark over buckets of customers equal the pandas builders' sets, row for row and value for value
(so the same models are fitted), with decision-time attributes and `max_rows` decided over the
whole log."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from nbo.data import load_dataset
from training.datasets import TrainingSet, churn_set, propensity_set

AS_OF = pd.Timestamp("2025-06-20")
runner = CliRunner()


def _java() -> bool:
    return shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME"))


pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(not _java(), reason="Java not found (install a JRE 17 or set JAVA_HOME); Spark test skipped"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("pyspark", reason="pyspark not installed; Spark test skipped")
    root = tmp_path_factory.mktemp("spark-sets")
    result = runner.invoke(app, ["simulate", "--customers", "160", "--days", "200", "--seed", "11",
                                 "--start", "2025-01-01", "--out", str(root / "data")])
    assert result.exit_code == 0, result.output
    # A decision-time attribute logged for a few exposures only: the whole log decides it is used.
    contacts = pd.read_parquet(root / "data" / "contacts.parquet")
    contacts["attr_price"] = np.where(np.arange(len(contacts)) % 97 == 5, 9.5, np.nan)
    contacts.to_parquet(root / "data" / "contacts.parquet", index=False)
    return root / "data"


def _same(spark: TrainingSet, pandas: TrainingSet) -> None:
    assert spark.feature_names == pandas.feature_names
    assert spark.attributes == pandas.attributes and spark.vocabulary == pandas.vocabulary
    assert spark.X.dtype == pandas.X.dtype == np.float32
    np.testing.assert_array_equal(spark.X, pandas.X)
    np.testing.assert_array_equal(spark.y, pandas.y)
    pd.testing.assert_frame_equal(spark.meta.astype(object), pandas.meta.astype(object))


def test_spark_training_sets_equal_the_pandas_ones(world: Path) -> None:
    from features.spark import spark_buckets
    from training.spark_sets import spark_churn_set, spark_propensity_set

    data = load_dataset(world)
    buckets = spark_buckets(world, "local[2]", None, "nbo-train-test")
    propensity = propensity_set(data, AS_OF, progress=False)
    assert "price" in propensity.attributes and len(propensity) > 1000
    _same(spark_propensity_set(world, AS_OF, buckets=buckets), propensity)
    # The most recent rows only: chosen over the whole log (an attribute logged earlier is not used).
    recent = propensity_set(data, AS_OF, max_rows=300, progress=False)
    _same(spark_propensity_set(world, AS_OF, max_rows=300, buckets=buckets), recent)
    _same(spark_churn_set(world, AS_OF, horizon_days=60, snapshots=3, buckets=buckets),
          churn_set(data, AS_OF, horizon_days=60, snapshots=3, progress=False))


def test_bad_engine_options_exit_2(world: Path, tmp_path: Path) -> None:
    for args, message in ((["--engine", "dask"], "--engine 'dask' is not pandas or spark"),
                          (["--master", "local[2]"], "--master and --remote are for --engine spark")):
        result = runner.invoke(app, ["train", "--data", str(world), "--as-of", str(AS_OF.date()),
                                     "--tracking-uri", f"sqlite:///{tmp_path}/m.db", *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (tmp_path / "m.db").exists()


def test_nbo_train_with_the_spark_engine(world: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = runner.invoke(app, ["train", "--data", str(world), "--as-of", str(AS_OF.date()), "--model", "churn",
                                 "--horizon-days", "60", "--engine", "spark", "--master", "local[2]",
                                 "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(search_all_experiments=True)
    assert (runs["params.training_set_engine"] == "spark").any()

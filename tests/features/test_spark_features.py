"""`nbo features --engine spark` (issue 24 goal 5): the same feature functions run by Spark over
buckets of customers give exactly the pandas engine's frame, from Parquet (nanosecond timestamps)
and from CSV; bad data is the contract's one line and exit 2, with no output left behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from features import build_customer_features, read_materialised
from nbo.data import load_dataset, write_dataset

AS_OF = "2025-04-20T06:30:00"
runner = CliRunner()


def _java() -> bool:
    return shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME"))


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("spark-features")
    result = runner.invoke(app, ["simulate", "--customers", "240", "--days", "110", "--seed", "5",
                                 "--start", "2025-01-01", "--out", str(root / "parquet")])
    assert result.exit_code == 0, result.output
    data = load_dataset(root / "parquet")
    write_dataset(data, root / "csv", fmt="csv")
    # A CSV export without the optional contacts log, and with aware timestamps (odd but valid).
    minimal = root / "minimal"
    shutil.copytree(root / "csv", minimal)
    (minimal / "contacts.csv").unlink()
    (minimal / "no_offers.csv").unlink(missing_ok=True)
    events = pd.read_csv(minimal / "events.csv", dtype=str, keep_default_na=False)
    events["ts"] = events["ts"].str.replace("Z", "+00:00", regex=False)
    events.to_csv(minimal / "events.csv", index=False)
    return {"parquet": root / "parquet", "csv": root / "csv", "minimal": minimal}  # csv: for the bad-row test


def _features(data: Path, out: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["features", "--data", str(data), "--as-of", AS_OF, "--out", str(out), *extra])
    return result.exit_code, result.output


@pytest.mark.spark
@pytest.mark.parametrize("kind", ["parquet", "minimal"])
def test_spark_engine_equals_pandas_engine(kind: str, worlds: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("pyspark", reason="pyspark not installed; Spark test skipped")
    if not _java():
        pytest.skip("Java not found (install a JRE 17 or set JAVA_HOME); Spark test skipped")
    code, output = _features(worlds[kind], tmp_path / "spark.parquet", "--engine", "spark", "--master", "local[2]")
    assert code == 0, output
    code, output = _features(worlds[kind], tmp_path / "pandas.parquet")
    assert code == 0, output
    spark, spark_meta = read_materialised(tmp_path / "spark.parquet")
    pandas, pandas_meta = read_materialised(tmp_path / "pandas.parquet")
    assert spark_meta == pandas_meta
    assert len(pandas) > 100 and spark.index.is_unique
    assert sorted(spark.index) == sorted(pandas.index)
    pd.testing.assert_frame_equal(spark.loc[pandas.index], pandas, check_exact=True)
    # and both equal the features computed in this process, so neither engine is judged by itself
    direct = build_customer_features(load_dataset(worlds[kind]), pd.Timestamp(AS_OF))
    pd.testing.assert_frame_equal(pandas, direct, check_exact=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "Spark's work files were left behind"


@pytest.mark.spark
def test_a_bad_row_is_one_line_and_nothing_is_written(worlds: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("pyspark", reason="pyspark not installed; Spark test skipped")
    if not _java():
        pytest.skip("Java not found (install a JRE 17 or set JAVA_HOME); Spark test skipped")
    bad = tmp_path / "bad"
    shutil.copytree(worlds["csv"], bad)
    events = pd.read_csv(bad / "events.csv", dtype=str, keep_default_na=False)
    events.loc[7, "ts"] = "yesterday-ish"
    events.to_csv(bad / "events.csv", index=False)
    out = tmp_path / "out" / "f.parquet"
    out.parent.mkdir()
    code, output = _features(bad, out, "--engine", "spark", "--master", "local[2]")
    assert code == 2, output
    assert "events.ts" in output and "yesterday-ish" in output and "Traceback" not in output
    assert list(out.parent.iterdir()) == [], "a refused run left files behind"


@pytest.mark.parametrize("args, message", [
    (["--engine", "polars"], "--engine 'polars' is not pandas or spark"),
    (["--master", "local[2]"], "--master and --remote are for --engine spark"),
    (["--engine", "spark", "--master", "local[2]", "--remote", "sc://localhost"], "not both"),
])
def test_bad_engine_options_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    code, output = _features(tmp_path, tmp_path / "f.parquet", *args)
    assert code == 2 and message in output
    assert not (tmp_path / "f.parquet").exists()

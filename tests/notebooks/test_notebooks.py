"""The notebooks are executed on small data so they cannot rot."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from nbo.data import load_dataset
from simulator import SimConfig, Simulator, write_simulation
from models.tracking import resolve_tracking
from training.train import TrainConfig, fit_and_log

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("nb")
    data_dir = base / "data"
    sim = Simulator(SimConfig(customers=1200, days=200), seed=3)
    sim.run()
    write_simulation(sim, data_dir)
    tracking = resolve_tracking(None, workdir=base)
    tracking.activate()
    as_of = pd.Timestamp("2025-01-01") + pd.Timedelta(days=200)
    fit_and_log("churn", load_dataset(data_dir), TrainConfig(as_of=as_of, num_boost_round=30, horizon_days=60),
                tracking, progress=False)
    import mlflow

    from models.registry import OPE_TAG

    with mlflow.start_run(run_name="ope-after-training"):  # what `nbo evaluate` logs later: no model report
        mlflow.set_tags({OPE_TAG: "true"})
    return data_dir, tracking.uri


def _run(name: str, env: dict[str, str], tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _outputs(nb: nbformat.NotebookNode) -> str:
    return "\n".join(str(o.get("data", o.get("text", ""))) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_explore_notebook_runs(world, tmp_path: Path) -> None:
    data_dir, _ = world
    nb = _run("01_explore.ipynb", {"NBO_DATA": str(data_dir)}, tmp_path)
    text = _outputs(nb)
    assert "image/png" in text  # the RFM and lifecycle charts were drawn
    assert "lapsed" in text


def test_model_report_notebook_runs(world, tmp_path: Path) -> None:
    _, uri = world
    nb = _run("02_model_report.ipynb", {"MLFLOW_TRACKING_URI": uri}, tmp_path)
    text = _outputs(nb)
    assert "churn" in text
    assert "recency_rank" in text  # the baseline row of the metrics table
    assert text.count("image/png") >= 3

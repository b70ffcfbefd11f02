"""The registry's read side: a model registered before the restructuring still loads.

`tests/golden/legacy_model` was saved by `mlflow.pyfunc.save_model` before `training/model.py`
moved to `models/calibrated.py`: its pickle names `training.model.NboPyfunc`. Registered as-is
(its files logged as a run's artifacts, then registered), it must load through
`models.registry.load_model` and score exactly as the fixed model it holds.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from models.calibrated import CalibratedBooster
from models.registry import load_model
from models.tracking import CHAMPION, resolve_tracking
from nbo.errors import NboError
from tests.test_golden import _model

LEGACY = Path(__file__).resolve().parents[1] / "golden" / "legacy_model"


def test_the_fixture_pickle_names_the_old_module() -> None:
    """Guards the test below: the fixture really is an old-path pickle."""
    raw = (LEGACY / "python_model.pkl").read_bytes()
    assert b"training.model" in raw and b"models.calibrated" not in raw


def test_a_model_registered_before_the_move_loads_and_scores_the_same(tmp_path: Path) -> None:
    tracking = resolve_tracking(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = tracking.activate()
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(LEGACY), "model")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "legacy-churn").version
    client.set_registered_model_alias("legacy-churn", CHAMPION, version)

    loaded = load_model(client, "legacy-churn")
    assert isinstance(loaded.model, CalibratedBooster)
    reference = _model("churn")
    X = np.random.default_rng(0).normal(size=(200, len(reference.feature_names_in_))).astype(np.float32)
    np.testing.assert_array_equal(loaded.model.predict_proba_positive(X), reference.predict_proba_positive(X))


def test_a_missing_alias_is_one_clear_error(tmp_path: Path) -> None:
    client = resolve_tracking(f"sqlite:///{tmp_path / 'mlflow.db'}").activate()
    with pytest.raises(NboError, match="has no alias @champion"):
        load_model(client, "nbo-nothing")

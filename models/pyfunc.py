"""The MLflow wrapper of nbo's estimator (`models.calibrated.CalibratedBooster`): what training logs
(`mlflow.pyfunc.log_model(python_model=NboPyfunc(...))`) and `models.registry.load_model` unwraps.

Apart from the estimator so that the estimator loads without MLflow (~1 s of CPU to import): a
service start reads its champions from `models.prepared` when it can.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from models.calibrated import CalibratedBooster


def feature_matrix(names: Any, model_input: pd.DataFrame) -> np.ndarray:
    """The float32 model inputs of a pyfunc's DataFrame, in the estimator's column order; a
    ValueError naming the feature columns it lacks."""
    names = list(names)
    missing = [c for c in names if c not in model_input.columns]
    if missing:
        raise ValueError(f"model input lacks feature column(s): {', '.join(missing[:10])}")
    return model_input[names].to_numpy(dtype=np.float32, na_value=np.nan)


class NboPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper: `predict` takes a DataFrame with the feature columns, returns P(y=1).

    Serving unwraps it (`unwrap_python_model().model`) and calls the estimator on NumPy directly:
    pyfunc's own predict costs ~11 ms per call, the booster ~0.1 ms.
    """

    def __init__(self, model: CalibratedBooster, feature_set_version: str) -> None:
        self.model = model
        self.feature_set_version = feature_set_version

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        X = feature_matrix(self.model.feature_names_in_, model_input)
        if self.model.is_choice:
            if "decision_id" not in model_input.columns:
                raise ValueError("a choice model needs a decision_id column: the candidates of a decision are scored together")
            return self.model.predict_proba_positive(X, model_input["decision_id"].to_numpy(dtype=object))
        return self.model.predict_proba_positive(X)

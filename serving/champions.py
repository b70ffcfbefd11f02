"""The champion pair the engine scores with, checked against the features this code serves.

`Models` is replaced as a whole (one attribute assignment) on reload, so a request sees one pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from features import CANDIDATE_FEATURES, FEATURE_SET
from features.offer_attributes import attribute_columns
from models.compiled import Predictor
from models.explain import PathExplainer
from nbo.errors import NboError

@dataclass(frozen=True)
class Models:
    """The champion pair in use; replaced as a whole (one attribute assignment) on reload."""

    propensity: object  # training.registry.LoadedModel
    churn: object
    propensity_columns: np.ndarray | None  # positions in CANDIDATE_FEATURES, None = same order
    churn_probability: np.ndarray  # one per materialised customer (row order of the frame)
    explainer: PathExplainer | None = None  # None: SHAP via model.contributions
    #: P(accept) / P(churn) of float32 rows: the compiled forests where they match (see
    #: models.compiled), else the models' own `predict_proba_positive`.
    predict_propensity: Predictor | None = None
    predict_churn: Predictor | None = None
    scoring: dict[str, str] = field(default_factory=dict)  # per model: "compiled" or why not
    #: The catalogue prepared with the propensity model's offer vocabulary (`offer_code`); None:
    #: the scorer's own (no vocabulary: the model has no offer identity).
    offers: object | None = None

    @property
    def attributes(self) -> tuple[str, ...]:
        """The decision-time offer attributes the propensity model reads (its last columns)."""
        return self.propensity.model.decision_attributes  # type: ignore[attr-defined]

    @property
    def choice(self) -> bool:
        """True when P(accept) is a softmax over each customer's candidates (a choice model)."""
        return self.propensity.model.is_choice  # type: ignore[attr-defined]
    #: The uplift champion (models.registry.LoadedModel of an UpliftBooster) when the policy arbitrates by incremental
    #: value (`arbitration.objective = "uplift"`), else None; `uplift_columns`: positions of its
    #: inputs in CANDIDATE_FEATURES + INCENTIVE_FEATURES (None = same order).
    uplift: object | None = None
    uplift_columns: np.ndarray | None = None

    @property
    def versions(self) -> dict[str, str]:
        out = {"propensity": self.propensity.label, "churn": self.churn.label}  # type: ignore[attr-defined]
        if self.uplift is not None:
            out["uplift"] = self.uplift.label  # type: ignore[attr-defined]
        return out

    @property
    def loaded(self) -> tuple[object, ...]:
        """The loaded models a batch worker is given: (propensity, churn) or (propensity, churn, uplift)."""
        return (self.propensity, self.churn) if self.uplift is None else (self.propensity, self.churn, self.uplift)

    @property
    def propensity_predictor(self) -> Predictor:
        return self.predict_propensity or self.propensity.model.predict_proba_positive  # type: ignore[attr-defined]

    @property
    def churn_predictor(self) -> Predictor:
        return self.predict_churn or self.churn.model.predict_proba_positive  # type: ignore[attr-defined]


def propensity_inputs(loaded: object) -> tuple[str, ...]:
    """The columns a propensity model may read: the candidate features, then the columns of its
    decision-time offer attributes."""
    return (*CANDIDATE_FEATURES, *attribute_columns(loaded.model.decision_attributes))  # type: ignore[attr-defined]


def check_model(loaded: object, allowed: Sequence[str], what: str) -> np.ndarray | None:
    version = getattr(loaded, "feature_set_version", None)
    if version != FEATURE_SET.version:
        raise NboError(
            f"{loaded.label} was trained on feature set {version}, this code serves {FEATURE_SET.version}"  # type: ignore[attr-defined]
        )
    names = list(loaded.feature_names)  # type: ignore[attr-defined]
    where = {n: i for i, n in enumerate(allowed)}
    unknown = [n for n in names if n not in where]
    if unknown:
        raise NboError(f"{loaded.label} needs {what} column(s) the features do not have: {', '.join(unknown[:5])}")  # type: ignore[attr-defined]
    positions = np.array([where[n] for n in names], dtype=np.int64)
    return None if len(names) == len(allowed) and np.array_equal(positions, np.arange(len(allowed))) else positions


def probabilities_ok(p: np.ndarray) -> bool:
    return bool(len(p) == 0 or (np.all(np.isfinite(p)) and p.min() >= 0.0 and p.max() <= 1.0))


@dataclass(frozen=True)
class ReloadResult:
    changed: bool
    ok: bool
    message: str
    versions: dict[str, str] = field(default_factory=dict)

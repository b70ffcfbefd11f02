"""The declared feature set: the model input columns, in order, and which are categorical.

The column lists are derived from the feature groups (`features.customer.CUSTOMER_GROUPS`,
`features.candidate.CANDIDATE_GROUPS`): nothing here lists a column by hand but the categorical ones.

Training selects exactly these columns (as float32) and logs `FEATURE_SET.version` with the model;
serving refuses a model trained on another version. Change the version when a column's meaning,
unit or order changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from features.candidate import CANDIDATE_COLUMNS
from features.customer import CUSTOMER_GROUPS, customer_columns
from features.definitions import text_columns
from nbo.vocab import CATEGORIES


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned list of model inputs."""

    name: str
    version: str
    candidate_features: tuple[str, ...]
    customer_features: tuple[str, ...]
    categorical: tuple[str, ...]
    #: Categorical columns LightGBM splits as categories (any subset of codes on one side); the
    #: other columns of `categorical` are codes it splits by order, as before 1.4.0.
    booster_categorical: tuple[str, ...] = ()

    def categorical_in(self, columns: tuple[str, ...]) -> tuple[str, ...]:
        """The categorical columns among `columns`, in their order (for LightGBM's categorical_feature)."""
        cats = set(self.categorical)
        return tuple(c for c in columns if c in cats)


#: Numeric columns of `build_customer_features`, in order (the churn model's inputs).
CUSTOMER_FEATURES: tuple[str, ...] = customer_columns(CATEGORIES)
#: Model inputs of the propensity model (`build_candidate_features` minus the two ids).
CANDIDATE_FEATURES: tuple[str, ...] = CANDIDATE_COLUMNS
#: Text columns of the customer frame (not model inputs; usable in eligibility rules).
CUSTOMER_TEXT_COLUMNS: tuple[str, ...] = text_columns(CUSTOMER_GROUPS)
CATEGORICAL: tuple[str, ...] = (
    "lifecycle_code",
    "top_category_code",
    "next_category_code",
    "offer_kind_code",
    "offer_category_code",
    "ctx_channel_code",
    "ctx_device_code",
    "stage_kind_code",
    "offer_code",
)

FEATURE_SET = FeatureSet(
    name="nbo-core",
    version="1.6.0",
    candidate_features=CANDIDATE_FEATURES,
    customer_features=CUSTOMER_FEATURES,
    categorical=CATEGORICAL,
    booster_categorical=("stage_kind_code", "offer_code"),
)


def customer_feature_names() -> tuple[str, ...]:
    """Every column of the customer frame, numeric and text: the names eligibility rules may use."""
    return (*CUSTOMER_FEATURES, *CUSTOMER_TEXT_COLUMNS)

"""Point-in-time features: one implementation for training, batch scoring and the online path.

Every function takes a required `as_of` (tz-naive UTC); nothing at or after it is used.
Each family of columns is declared once, next to the function computing it (`FeatureGroup`,
features/definitions.py). See docs/features.md for every column, its unit and window.
"""

from features.candidate import build_candidate_features, candidate_matrix
from features.config import NEVER_DAYS, Context, LifecycleRules
from features.customer import build_customer_features
from features.customer_rows import CustomerRows
from features.exposure import build_exposure_features
from features.feature_set import (
    CANDIDATE_FEATURES,
    CUSTOMER_FEATURES,
    FEATURE_SET,
    FeatureSet,
    customer_feature_names,
)
from features.lifecycle import lifecycle_stage
from features.offers import OfferArrays, prepare_offers
from features.online import candidate_features_online, customer_features_online
from features.store import (
    check_feature_set,
    iter_materialised,
    materialised_meta,
    materialised_rows,
    read_materialised,
    write_materialised,
)
from nbo.vocab import CATEGORIES

__all__ = [
    "CANDIDATE_FEATURES",
    "CATEGORIES",
    "CUSTOMER_FEATURES",
    "FEATURE_SET",
    "NEVER_DAYS",
    "Context",
    "CustomerRows",
    "FeatureSet",
    "LifecycleRules",
    "OfferArrays",
    "build_candidate_features",
    "candidate_matrix",
    "build_customer_features",
    "build_exposure_features",
    "candidate_features_online",
    "check_feature_set",
    "customer_feature_names",
    "customer_features_online",
    "iter_materialised",
    "lifecycle_stage",
    "materialised_meta",
    "materialised_rows",
    "prepare_offers",
    "read_materialised",
    "write_materialised",
]

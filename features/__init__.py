"""Point-in-time features: one implementation for training, batch scoring and the online path.

Every function takes a required `as_of` (tz-naive UTC); nothing at or after it is used.
Each family of columns is declared once, next to the function computing it (`FeatureGroup`,
features/definitions.py). See docs/features.md for every column, its unit and window.

Public names are imported on first use (`nbo.lazy`): reading a materialised file's footer does
not import scikit-learn (the BG/NBD estimator).
"""

from nbo.lazy import lazy_exports

#: public name -> the module that defines it (imported when the name is first used)
_EXPORTS = {
    "CANDIDATE_FEATURES": "features.feature_set",
    "CATEGORIES": "nbo.vocab",
    "CUSTOMER_FEATURES": "features.feature_set",
    "FEATURE_SET": "features.feature_set",
    "NEVER_DAYS": "features.config",
    "Context": "features.config",
    "CustomerRows": "features.customer_rows",
    "FeatureSet": "features.feature_set",
    "LifecycleRules": "features.config",
    "OfferArrays": "features.offers",
    "build_candidate_features": "features.candidate",
    "candidate_matrix": "features.candidate",
    "build_customer_features": "features.customer",
    "build_exposure_features": "features.exposure",
    "candidate_features_online": "features.online",
    "customer_feature_chunks": "features.customer",
    "check_feature_set": "features.store",
    "customer_feature_names": "features.feature_set",
    "customer_features_online": "features.online",
    "engagement_hours": "features.send_hours",
    "iter_materialised": "features.store",
    "lifecycle_stage": "features.lifecycle",
    "materialised_meta": "features.store",
    "materialised_rows": "features.store",
    "MaterialisedRows": "features.store",
    "prepare_offers": "features.offers",
    "read_materialised": "features.store",
    "write_materialised": "features.store",
    "write_materialised_chunks": "features.store",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

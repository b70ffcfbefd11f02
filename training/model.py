"""Compatibility for models registered before nbo 0.2: their pickles name `training.model`.

The estimator lives in `models.calibrated` since the restructuring (docs/ENGINEERING.md). A model
registered earlier unpickles through this module, which holds nothing but the two names; re-register
it (`nbo train`) to drop the dependency. Nothing in nbo imports this module.
"""

from models.calibrated import CalibratedBooster, NboPyfunc

__all__ = ["CalibratedBooster", "NboPyfunc"]

"""The text columns of the customer frame: the names behind its code columns.

Not model inputs: eligibility rules read them (`lifecycle == "at_risk"`, `top_category == "books"`).
Each is the name at its code's position (`lifecycle_code` in `nbo.vocab.LIFECYCLE_STAGES`, the
category codes in the declared categories), `""` for the code -1 (none).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from features.definitions import FeatureGroup
from nbo.vocab import LIFECYCLE_STAGES

LABELS = FeatureGroup("labels", (), text=("lifecycle", "top_category", "next_category"))


def _names(code: object, names: tuple[str, ...]) -> pd.api.extensions.ExtensionArray:
    table = np.array([*names, ""], dtype=object)  # code -1 -> ""
    return pd.array(table[np.asarray(code).astype(np.int64)], dtype="str")


def labels(frame: Mapping[str, object], categories: tuple[str, ...]) -> dict[str, object]:
    """The `LABELS` columns from `lifecycle_code`, `top_category_code` and `next_category_code`."""
    return {
        "lifecycle": _names(frame["lifecycle_code"], LIFECYCLE_STAGES),
        "top_category": _names(frame["top_category_code"], categories),
        "next_category": _names(frame["next_category_code"], categories),
    }

"""Customer rows as the candidate code reads them: the customer columns every candidate row
carries (`CANDIDATE_CUSTOMER`, a selection of the customer frame's declared columns) and the block
of customer columns the customer x offer features are computed from.

The online service keeps the materialised frame as one float64 block (`CustomerRows`) and passes a
row slice of it per request: no DataFrame is built or indexed per request.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.config import DECAY_HALF_LIVES
from features.contact_history import CONTACT_HISTORY_COLUMNS
from features.definitions import FeatureGroup
from nbo.errors import NboError
from nbo.vocab import CONTACT_CHANNELS

#: Customer columns copied onto every candidate row (the propensity model sees them); the
#: contact-history ones are recomputed from the live contact log. Every name is a column of the
#: customer frame (tested).
CANDIDATE_CUSTOMER = FeatureGroup(
    "candidate_customer",
    (
        "recency_days",
        "tenure_days",
        "purchases_30d",
        "purchases_365d",
        "spend_365d",
        "avg_basket_365d",
        "r_score",
        "f_score",
        "m_score",
        "categories_bought_365d",
        "top_category_share_365d",
        "abandoned_carts_30d",
        "days_since_web_visit",
        "days_since_app_visit",
        "days_since_activity",
        "active_days_30d",
        "active_days_365d",
        "silence_score",
        "silence_surprise",
        "activity_trend_30d",
        "online_visit_share_365d",
        "views_365d",
        "online_spend_share_365d",
        "lifecycle_code",
        "loyalty_member",
        "contacts_7d",
        "contacts_30d",
        "outbound_contacts_7d",
        "days_since_last_contact",
        "acceptance_rate",
        "accepts_total",
        "declines_total",
        "ignores_total",
        *(f"pressure_{ch}" for ch in CONTACT_CHANNELS),
        "pressure_total",
    ),
)
CUSTOMER_COLUMNS_FOR_CANDIDATES: tuple[str, ...] = CANDIDATE_CUSTOMER.columns()

#: Per-category customer columns (`{category}_{stem}`) the customer x offer features read.
CATEGORY_STEMS: tuple[str, ...] = (
    "page_views_30d",
    "product_views_30d",
    "searches_30d",
    "cart_adds_30d",
    "purchases_30d",
    "purchases_365d",
    "page_views_7d",
    "product_views_7d",
    "searches_7d",
    "cart_adds_7d",
    "views_365d",
    *(f"browse_hl{h}d" for h in DECAY_HALF_LIVES),
    "days_since_browse",
    "days_since_purchase",
    "active_days_365d",
    "main_days_365d",
)
_CUSTOMER_INPUTS: tuple[str, ...] = (
    *(c for c in CUSTOMER_COLUMNS_FOR_CANDIDATES if c not in CONTACT_HISTORY_COLUMNS),
    "top_category_code",
    "next_category_code",
    "purchases_total",
)


_LAYOUT: list[tuple[pd.Index, tuple[str, ...], np.ndarray]] = []


def _column_positions(columns: pd.Index, names: tuple[str, ...]) -> np.ndarray:
    """Positions of `names` among `columns`. The last layout is remembered (and compared with a
    vectorised `Index.equals`): the online path slices rows out of one materialised frame."""
    cached = _LAYOUT[0] if _LAYOUT else None  # read once: another thread may replace it
    if cached is not None and cached[1] == names and (cached[0] is columns or cached[0].equals(columns)):
        return cached[2]
    where = {c: i for i, c in enumerate(columns)}
    missing = [n for n in names if n not in where]
    if missing:
        raise NboError(f"customer features lack column(s) {', '.join(missing[:8])}; use build_customer_features")
    found = np.array([where[n] for n in names], dtype=np.int64)
    _LAYOUT[:] = [(columns, names, found)]
    return found


@dataclass(frozen=True)
class CustomerRows:
    """Materialised customer rows as one float64 block (numeric columns only).

    The online service builds it once from the materialised frame and passes a row slice of it to
    `candidate_matrix` per request: no DataFrame is built or indexed per request. Same values as
    the frame's columns converted to float64.
    """

    ids: np.ndarray  # object, one per row
    columns: pd.Index
    values: np.ndarray  # (rows, columns) float64

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> CustomerRows:
        numeric = [c for c, dtype in frame.dtypes.items() if dtype.kind in "fiub"]  # no Series per column
        values = frame[numeric].to_numpy(np.float64, na_value=np.nan) if numeric else np.zeros((len(frame), 0))
        return cls(frame.index.to_numpy(dtype=object), pd.Index(numeric), values)

    def take(self, rows: np.ndarray) -> CustomerRows:
        return CustomerRows(self.ids[rows], self.columns, self.values[rows])

    def __len__(self) -> int:
        return len(self.ids)


@functools.lru_cache(maxsize=8)
def _per_category_names(categories: tuple[str, ...]) -> tuple[str, ...]:
    return (*_CUSTOMER_INPUTS, *(f"{cat}_{stem}" for stem in CATEGORY_STEMS for cat in categories))


class CustomerArrays:
    """The customer columns the candidate code reads, pulled out of the frame in one block."""

    def __init__(self, frame: pd.DataFrame | CustomerRows, categories: tuple[str, ...]) -> None:
        self.categories = categories
        names = _per_category_names(categories)
        where = _column_positions(frame.columns, names)
        if isinstance(frame, CustomerRows):
            block = frame.values[:, where]
        else:
            block = frame.iloc[:, where].to_numpy(dtype=np.float64)
        self.columns = {name: block[:, i] for i, name in enumerate(_CUSTOMER_INPUTS)}
        self._per_cat = block[:, len(_CUSTOMER_INPUTS) :]

    def matrix(self, *stems: str) -> np.ndarray:
        """(customers, categories + 1): sum of per-category columns; the last column (undeclared) is 0."""
        k = len(self.categories)
        n = self._per_cat.shape[0]
        mat = np.zeros((n, k + 1))
        for stem in stems:
            j = CATEGORY_STEMS.index(stem)
            mat[:, :k] += self._per_cat[:, j * k : (j + 1) * k]
        return mat


def candidate_customer_block(history: dict[str, np.ndarray], cust: CustomerArrays) -> np.ndarray:
    """(`CANDIDATE_CUSTOMER` columns, customers) float64: the contact-history columns from
    `history` (recomputed from the live contact log), the others from the customer rows."""
    return np.array(
        [history[name] if name in CONTACT_HISTORY_COLUMNS else cust.columns[name] for name in CUSTOMER_COLUMNS_FOR_CANDIDATES]
    )

"""The offer catalogue decoded once into arrays, and the offer's own candidate columns.

The online service decodes the catalogue once (`prepare_offers`) and keeps the result until the
catalogue changes; every candidate row reads its offer's attributes from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.arrays import codes, lookup
from features.definitions import FeatureGroup
from nbo.errors import NboError
from nbo.vocab import CATEGORIES, CONTACT_CHANNELS, OFFER_KINDS

OFFER = FeatureGroup(
    "offer",
    (
        *(f"offer_kind_{k}" for k in OFFER_KINDS),
        "offer_kind_code",
        "offer_category_code",
        "offer_value",
        "offer_cost",
        "offer_code",
    ),
)


@dataclass(frozen=True)
class OfferArrays:
    """An offer catalogue decoded once into arrays (see `prepare_offers`)."""

    ids: np.ndarray  # object
    position: dict[str, int]
    raw_category: np.ndarray  # object, the category text
    category_code: np.ndarray  # index in `categories`, -1 undeclared
    category_group: np.ndarray  # equal numbers for equal category text
    kind_code: np.ndarray
    value: np.ndarray
    cost: np.ndarray
    on_channel: np.ndarray  # (offers, CONTACT_CHANNELS) bool
    categories: tuple[str, ...]
    #: The offer's identity for a model (`offer_code`): its position in the model's offer
    #: vocabulary (the sorted offer ids of its training catalogue), NaN for an offer the model has
    #: not seen or when no vocabulary is given.
    code: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vocabulary: tuple[str, ...] | None = None
    #: Context features of all offers per request context (see `features.context.context_rows`):
    #: requests repeat a few contexts, and these columns depend on nothing else. Bounded; never
    #: mutated in place.
    context_cache: dict[tuple[object, ...], dict[str, np.ndarray]] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.ids)


def offer_vocabulary(offer_ids: Sequence[str]) -> tuple[str, ...]:
    """A model's offer vocabulary: the sorted distinct offer ids of its training catalogue."""
    return tuple(sorted({str(o) for o in offer_ids}))


def _codes(ids: np.ndarray, vocabulary: tuple[str, ...] | None) -> np.ndarray:
    if vocabulary is None:
        return np.full(len(ids), np.nan)
    where = {o: float(i) for i, o in enumerate(vocabulary)}
    return np.array([where.get(o, np.nan) for o in ids], dtype=np.float64)


def prepare_offers(
    offers: pd.DataFrame | OfferArrays,
    categories: tuple[str, ...] = CATEGORIES,
    vocabulary: tuple[str, ...] | None = None,
) -> OfferArrays:
    """Decode the offers table once; the online service keeps the result until the catalogue changes.

    `vocabulary`: the scoring model's offer vocabulary (`offer_code`); None keeps what prepared
    offers have (none for a table)."""
    if isinstance(offers, OfferArrays):
        if offers.categories != categories:
            raise NboError("offers were prepared with another category list")
        if vocabulary is not None and vocabulary != offers.vocabulary:
            return dataclasses.replace(offers, code=_codes(offers.ids, vocabulary), vocabulary=vocabulary,
                                       context_cache={})
        return offers
    ids = offers["offer_id"].to_numpy(dtype=object)
    raw_category = offers["category"].to_numpy(dtype=object)
    group, _ = pd.factorize(raw_category)
    channels = offers["channels"].to_numpy()
    on_channel = np.array([[ch in chans for ch in CONTACT_CHANNELS] for chans in channels], dtype=bool)
    return OfferArrays(
        ids=ids,
        position={o: i for i, o in enumerate(ids)},
        raw_category=raw_category,
        category_code=codes(raw_category, categories).astype(np.int64),
        category_group=group.astype(np.int64),
        kind_code=codes(offers["kind"].to_numpy(dtype=object), OFFER_KINDS).astype(np.int64),
        value=offers["value"].to_numpy(dtype=np.float64),
        cost=offers["cost"].to_numpy(dtype=np.float64),
        on_channel=on_channel.reshape(len(ids), len(CONTACT_CHANNELS)),
        categories=categories,
        code=_codes(ids, vocabulary),
        vocabulary=vocabulary,
    )


def offer_positions(offers: OfferArrays, values: object) -> np.ndarray:
    """Position of each offer id of `values` among the offers, -1 when absent."""
    if len(values) < _SMALL:  # a dict beats building a hash table for one customer's contacts
        where = offers.position
        return np.fromiter((where.get(v, -1) for v in np.asarray(values, dtype=object)), dtype=np.int64, count=len(values))
    return lookup(values, list(offers.ids))


_SMALL = 4096


def offer_columns(offers: OfferArrays, offer_pos: np.ndarray) -> dict[str, np.ndarray]:
    """The `OFFER` columns of rows whose offers are at `offer_pos` (positions in `offers`): the
    kind one-hot (bool), the kind and category codes (-1 undeclared), value and cost (currency),
    and the offer's code in the model's vocabulary (NaN unseen / no vocabulary)."""
    kind = offers.kind_code[offer_pos]
    out: dict[str, np.ndarray] = {f"offer_kind_{name}": kind == j for j, name in enumerate(OFFER_KINDS)}
    out["offer_kind_code"] = kind
    out["offer_category_code"] = offers.category_code[offer_pos]
    out["offer_value"] = offers.value[offer_pos]
    out["offer_cost"] = offers.cost[offer_pos]
    out["offer_code"] = offers.code[offer_pos]
    return out

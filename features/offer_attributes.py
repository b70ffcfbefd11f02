"""Decision-time offer attributes (issue 20 item 2): what the customer faced for each candidate
offer at the decision: its price, a discount, a display flag, any number the company logs.

The contact log carries them as `contacts.attr_<name>` (nbo/contract.py), a request as
`Context.offer_attributes` ({offer_id: {name: value}}). A model is trained on the attribute names
of its training log and keeps them (`CalibratedBooster.attributes`); each name gives four columns,
appended after the feature set's candidate columns:

- `attr_<name>`: the value itself;
- `attr_<name>_over_mean`: the value over the mean of the decision's candidates (1 when the mean
  is 0): "20 % dearer than the alternatives";
- `attr_<name>_minus_min`: the value minus the lowest among the decision's candidates
  (currency units for a price): "0.30 above the cheapest";
- `attr_<name>_rank`: how many of the decision's candidates have a lower value (0 = the lowest).

The decision's candidates are the rows of one decision in training (the exposures sharing a
`decision_id`) and, when scoring, the offers the request gives attributes for. A row without the
attribute gets NaN in all four (the model's missing value) and is left out of the comparison.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from nbo.contract import ATTRIBUTE_NAME, ATTRIBUTE_PREFIX
from nbo.errors import NboError

#: Suffixes of the four columns of one attribute, in column order.
ATTRIBUTE_STATS: tuple[str, ...] = ("", "_over_mean", "_minus_min", "_rank")
#: At most this many attribute names per decision (a request body stays small).
MAX_ATTRIBUTES = 16


def attribute_columns(names: Sequence[str]) -> tuple[str, ...]:
    """The model columns of these attribute names, in order."""
    return tuple(f"{ATTRIBUTE_PREFIX}{n}{s}" for n in names for s in ATTRIBUTE_STATS)


def decision_attribute_features(values: np.ndarray, decision: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The columns of `attribute_columns(names)` for rows with `values` (rows x names, NaN where
    the row has no value) grouped into decisions by `decision` (integer codes >= 0)."""
    values = np.asarray(values, dtype=np.float64).reshape(len(decision), len(names))
    decision = np.asarray(decision, dtype=np.int64)
    n_d = int(decision.max()) + 1 if len(decision) else 0
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        v = values[:, j]
        have = ~np.isnan(v)
        d = decision[have]
        total = np.bincount(d, weights=v[have], minlength=n_d)
        count = np.bincount(d, minlength=n_d).astype(np.float64)
        mean = np.divide(total, count, out=np.full(n_d, np.nan), where=count > 0)
        low = np.full(n_d, np.inf)
        np.minimum.at(low, d, v[have])
        stem = f"{ATTRIBUTE_PREFIX}{name}"
        m = mean[decision] if n_d else np.full(len(v), np.nan)
        out[stem] = np.where(have, v, np.nan)
        ratio = np.divide(v, m, out=np.ones(len(v)), where=m > 0)
        out[f"{stem}_over_mean"] = np.where(have, ratio, np.nan)
        out[f"{stem}_minus_min"] = np.where(have, v - (low[decision] if n_d else 0.0), np.nan)
        out[f"{stem}_rank"] = np.where(have, _rank_below(v, decision, have), np.nan)
    return out


def _rank_below(v: np.ndarray, decision: np.ndarray, have: np.ndarray) -> np.ndarray:
    """Per row, how many rows of its decision (with a value) have a strictly lower value."""
    rank = np.zeros(len(v))
    idx = np.flatnonzero(have)
    if not len(idx):
        return rank
    order = idx[np.lexsort((v[idx], decision[idx]))]
    d, x = decision[order], v[order]
    new_decision = np.r_[True, d[1:] != d[:-1]]
    new_value = new_decision | np.r_[True, x[1:] != x[:-1]]
    position = np.arange(len(order))
    start = np.maximum.accumulate(np.where(new_decision, position, 0))
    run_start = np.maximum.accumulate(np.where(new_value, position, 0))
    rank[order] = run_start - start
    return rank


def attribute_values(
    offer_attributes: Mapping[str, Mapping[str, float]] | None, offer_ids: Sequence[str], names: Sequence[str]
) -> np.ndarray:
    """(offers x names) values of one request's `offer_attributes` for the catalogue `offer_ids`:
    NaN for an offer the request gives no attributes for."""
    out = np.full((len(offer_ids), len(names)), np.nan)
    if offer_attributes:
        for i, offer in enumerate(offer_ids):
            given = offer_attributes.get(offer)
            if given:
                for j, name in enumerate(names):
                    value = given.get(name)
                    if value is not None:
                        out[i, j] = float(value)
    return out


def check_offer_attributes(
    offer_attributes: Mapping[str, Mapping[str, object]], offer_ids: Sequence[str], field: str = "offer_attributes"
) -> None:
    """Refuse a request's attributes with one message naming the field: an offer not in the
    catalogue, a bad name, a value that is not a finite number >= 0, or an attribute given for
    some candidates only (every listed offer gives the same names)."""
    known = set(offer_ids)
    names: set[str] | None = None
    first = None
    for offer, given in offer_attributes.items():
        if offer not in known:
            raise NboError(f"{field}: offer {offer!r} is not in the catalogue")
        if not isinstance(given, Mapping) or not given:
            raise NboError(f"{field}.{offer}: give at least one attribute, e.g. {{\"price\": 1.99}}")
        if len(given) > MAX_ATTRIBUTES:
            raise NboError(f"{field}.{offer}: at most {MAX_ATTRIBUTES} attributes")
        for name, value in given.items():
            if not isinstance(name, str) or not re.fullmatch(ATTRIBUTE_NAME, name):
                raise NboError(f"{field}.{offer}: an attribute name is lower-case letters, digits and `_` "
                               "(a letter first, at most 32)")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise NboError(f"{field}.{offer}.{name}: not a number")
            if not math.isfinite(float(value)):
                raise NboError(f"{field}.{offer}.{name}: not a finite number")
            if value < 0:
                raise NboError(f"{field}.{offer}.{name}: negative ({value}); attributes are >= 0")
        if names is None:
            names, first = set(given), offer
        elif set(given) != names:
            missing = sorted(names ^ set(given))[0]
            raise NboError(f"{field}: {missing!r} is given for some candidates only (e.g. {first!r} and {offer!r} "
                           "differ); give every attribute for every listed offer")

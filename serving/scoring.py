"""Scoring: the materialised customers, the contacts log and the catalogue, turned into scores.

For a set of customers at `now`, `Scorer.score` gives p_accept of every offer (the propensity
champion on the features package's candidate matrix: the customer's materialised row, the
request's `Context` and the live contact history - the `contacts` table of the data directory
plus the rows the contact store recorded, read by the caller), the churn probability (the churn
champion on the materialised row, computed once per model load) and `customer_value` =
`spend_365d` of the materialised row (currency units). Customers without a materialised row, or
no models: the popularity fallback (every offer gets its smoothed historical acceptance rate).

With an uplift champion (`Models.uplift`, loaded when the policy arbitrates by incremental value)
it also gives `tau`, the incremental conversion of every offer against no contact: the uplift
model on the same candidate matrix plus the offer's incentive columns (`features.incentives`),
one matrix for both models. An uplift model with its own acceptance model (`share`, the default)
gives that acceptance too (`Scored.p_uplift`): the uplift objective charges the incentive at the
acceptance the incremental conversion was estimated with. A customer without a materialised row
gets the popularity fallback as acceptance and the fallback x the model's mean incremental share
as tau (`UpliftBooster.cold_start_uplift`); an older uplift model without that share has no
estimate (NaN: the arbiter suppresses every offer as `invalid_score`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from features import CANDIDATE_FEATURES, CUSTOMER_FEATURES, Context, CustomerRows, candidate_matrix, prepare_offers
from features.incentives import incentive_columns
from nbo.vocab import FINAL_OUTCOMES
from serving.champions import Models

#: Pseudo-count of the prior in the popularity fallback: an offer needs about this many finalised
#: contacts before its own acceptance rate outweighs the catalogue-wide one.
POPULARITY_PRIOR_WEIGHT = 20.0
#: Column of `offer_code` in the candidate block (the uplift model reads it as NaN: `Scorer.uplift`).
_OFFER_CODE = CANDIDATE_FEATURES.index("offer_code")
_CONTACT_COLUMNS = ("customer_id", "offer_id", "channel", "ts", "outcome", "outcome_ts")


@dataclass(frozen=True)
class Scored:
    """Scores of a set of customers: rows are customer-major, `n_offers` per customer."""

    customer_ids: list[str]
    positions: np.ndarray  # row in the materialised frame, -1 = unknown customer
    X: np.ndarray | None  # float32 model inputs (known customers x offers, model columns), None = fallback
    p: np.ndarray  # (customers, offers)
    churn: np.ndarray
    value: np.ndarray
    models: Models | None
    #: (customers, offers) incremental conversion from the uplift champion (NaN: unknown customer),
    #: None when the models carry no uplift model.
    tau: np.ndarray | None = None
    #: (customers, offers) P(accept) of the uplift champion's own acceptance model (None: it has none).
    p_uplift: np.ndarray | None = None


class Scorer:
    """The customer side of a decision: materialised rows, contacts log, catalogue, popularity."""

    def __init__(self, offers: pd.DataFrame, contacts: pd.DataFrame, features: pd.DataFrame, rule_names: Sequence[str]) -> None:
        self.offers = offers.reset_index(drop=True)
        self.offer_ids: list[str] = [str(o) for o in self.offers["offer_id"].tolist()]
        self._prepared = prepare_offers(self.offers)
        #: The uplift model's incentive columns of every offer (float32, catalogue order).
        self._incentives = incentive_columns(self.offers).astype(np.float32)
        self._rule_names = list(rule_names)
        self._contacts = self._index_contacts(contacts)
        self.popularity = self._popularity(contacts)
        self._set_features(features)

    def _set_features(self, features: pd.DataFrame) -> None:
        """Customer rows: positions by id, rule inputs and values as plain arrays."""
        self.features = features
        self._position = {cid: i for i, cid in enumerate(features.index.tolist())}
        self._rule_values = {n: features[n].to_numpy() for n in self._rule_names if n in features.columns}
        self._value = features["spend_365d"].to_numpy(np.float64) if "spend_365d" in features else np.zeros(len(features))
        #: The customer features as float32 (the churn model's inputs, in CUSTOMER_FEATURES order).
        self.customer_matrix = features[list(CUSTOMER_FEATURES)].to_numpy(np.float32, na_value=np.nan)
        # The numeric columns as one float64 block: a request takes its row out of it with no pandas.
        self._rows = CustomerRows.from_frame(features)

    def prepared_for(self, vocabulary: tuple[str, ...] | None) -> object:
        """The catalogue prepared with a model's offer vocabulary (its `offer_code`s)."""
        return prepare_offers(self._prepared, vocabulary=vocabulary)

    def with_features(self, features: pd.DataFrame) -> Scorer:
        """This scorer over other materialised rows (same catalogue, contacts and popularity)."""
        view = copy.copy(self)
        view._set_features(features)
        return view

    @property
    def numeric(self) -> pd.DataFrame:
        """The numeric columns as a float64 frame (what `score` reads, for tests and debugging)."""
        return pd.DataFrame(self._rows.values, index=self.features.index, columns=self._rows.columns, copy=False)

    @staticmethod
    def _index_contacts(
        contacts: pd.DataFrame,
    ) -> tuple[dict[str, tuple[int, int]], dict[str, np.ndarray]]:
        """The contacts table sorted by customer, as numpy columns, with each customer's row range."""
        frame = contacts.loc[:, list(_CONTACT_COLUMNS)].sort_values("customer_id", kind="stable").reset_index(drop=True)
        ids = frame["customer_id"].to_numpy(dtype=object)
        ranges: dict[str, tuple[int, int]] = {}
        if len(ids):
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
            ends = np.r_[starts[1:], len(ids)]
            ranges = {ids[s]: (int(s), int(e)) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)}
        arrays = {n: frame[n].to_numpy(dtype=object) for n in ("customer_id", "offer_id", "channel", "outcome")}
        arrays.update({n: frame[n].to_numpy(dtype="datetime64[ns]") for n in ("ts", "outcome_ts")})
        return ranges, arrays

    def _popularity(self, contacts: pd.DataFrame) -> np.ndarray:
        """Smoothed historical acceptance rate per catalogue offer (the fallback's p_accept)."""
        final = contacts[contacts["outcome"].isin(FINAL_OUTCOMES)]
        accepted = final["outcome"] == "accepted"
        prior = float(accepted.mean()) if len(final) else 0.05
        by_offer = final.groupby("offer_id", observed=True)["outcome"]
        n = by_offer.size().reindex(self.offer_ids, fill_value=0).to_numpy(np.float64)
        a = accepted.groupby(final["offer_id"], observed=True).sum().reindex(self.offer_ids, fill_value=0).to_numpy(np.float64)
        return (a + POPULARITY_PRIOR_WEIGHT * prior) / (n + POPULARITY_PRIOR_WEIGHT)

    def live_contacts(
        self, customer_ids: Sequence[str], contact_rows: Mapping[str, list[dict[str, object]]] | None = None
    ) -> dict[str, np.ndarray]:
        """Contacts of these customers (numpy columns): the data directory's log plus the rows the
        contact store recorded (`contact_rows`, read by the caller; None: none)."""
        ranges, arrays = self._contacts
        pieces = [span for c in customer_ids if (span := ranges.get(c)) is not None]  # `forget` may pop one meanwhile
        recent = [row for c in customer_ids for row in contact_rows.get(c, ())] if contact_rows else []
        if len(pieces) == 1:
            s, e = pieces[0]
            base = {name: values[s:e] for name, values in arrays.items()}
        else:
            idx = np.concatenate([np.arange(s, e) for s, e in pieces]) if pieces else np.zeros(0, dtype=np.int64)
            base = {name: values[idx] for name, values in arrays.items()}
        if not recent:
            return base
        cols: dict[str, np.ndarray] = {}
        for name in ("customer_id", "offer_id", "channel", "outcome"):
            cols[name] = np.concatenate([base[name], np.array([r[name] for r in recent], dtype=object)])
        for name in ("ts", "outcome_ts"):
            live = np.array([np.datetime64("NaT") if r[name] is None else r[name] for r in recent], dtype="datetime64[ns]")
            cols[name] = np.concatenate([base[name], live])
        return cols

    def forget(self, customer_id: str) -> bool:
        """Drop the customer from what decisions read: their materialised row and their rows of the
        data directory's contacts become unreachable (the customer is unknown: the fallback), and
        the values a decision would read are overwritten (NaN / NaT / ""). The features frame
        (`self.features`) keeps its row until the engine is rebuilt. True if anything was held."""
        position = self._position.pop(customer_id, None)
        ranges, arrays = self._contacts
        span = ranges.pop(customer_id, None)
        if position is not None:
            self._rows = dataclasses.replace(self._rows, values=_blanked(self._rows.values, position, np.nan))
            if len(self.customer_matrix):
                self.customer_matrix = _blanked(self.customer_matrix, position, np.nan)
            if len(self._value):
                self._value = _blanked(self._value, position, 0.0)
        if span is not None:
            s, e = span
            for name, values in list(arrays.items()):
                arrays[name] = _blanked(values, slice(s, e), np.datetime64("NaT") if values.dtype.kind == "M" else "")
        return position is not None or span is not None

    def positions(self, customer_ids: Sequence[str]) -> np.ndarray:
        """Row of each customer in the materialised frame, -1 = unknown (cold start)."""
        return np.array([self._position.get(c, -1) for c in customer_ids], dtype=np.int64)

    def score(
        self,
        customer_ids: Sequence[str],
        channel: str,
        contexts: Context | Mapping[str, Context] | None,
        now: datetime,
        models: Models | None,
        contact_rows: Mapping[str, list[dict[str, object]]] | None = None,
    ) -> Scored:
        """p_accept of every offer, churn probability and value of these customers at `now`.

        `contact_rows`: the contact store's rows of these customers (the features' live history),
        read by the caller. Unknown customers, or no `models`: the popularity fallback."""
        ids = list(customer_ids)
        positions = self.positions(ids)
        n_o = len(self.offer_ids)
        churn = np.zeros(len(ids))
        value = np.where(positions >= 0, self._value[np.maximum(positions, 0)] if len(self._value) else 0.0, 0.0)
        p = np.tile(self.popularity, (len(ids), 1))
        known = np.flatnonzero(positions >= 0)
        X = None
        tau = p_uplift = None
        if models is not None and models.uplift is not None:
            estimator = models.uplift.model  # type: ignore[attr-defined]
            tau = np.full((len(ids), n_o), np.nan)
            cold = estimator.cold_start_uplift(p) if hasattr(estimator, "cold_start_uplift") else None
            if cold is not None:
                tau[:] = cold
            if getattr(estimator, "gives_acceptance", False):
                p_uplift = p.copy()
        if models is not None and len(known) and n_o:
            rows = self._rows.take(positions[known])
            as_of = pd.Timestamp(now)
            # Written as float32 directly (the model's input type; same rounding as casting the
            # float64 matrix), then the model's columns if its order differs: one copy, not three.
            offers = models.offers if models.offers is not None else self._prepared
            block = candidate_matrix(rows, offers, self.live_contacts([ids[i] for i in known], contact_rows), contexts, as_of,
                                     dtype=np.float32, attributes=models.attributes)
            if tau is not None:  # the uplift model reads the candidate columns, not the decision-time attributes
                tau[known], accept = self.uplift(models, block[:, : len(CANDIDATE_FEATURES)], len(known))
                if p_uplift is not None and accept is not None:
                    p_uplift[known] = accept
            if models.propensity_columns is not None:
                block = block[:, models.propensity_columns]
            X = np.ascontiguousarray(block, dtype=np.float32)
            if models.choice:  # a softmax over each customer's candidates: the catalogue's offers
                scores = models.propensity_predictor(X, np.repeat(np.arange(len(known)), n_o)).reshape(len(known), n_o)
            else:
                scores = models.propensity_predictor(X).reshape(len(known), n_o)
            p[known] = scores
            churn[known] = models.churn_probability[positions[known]]
        return Scored(ids, positions, X, p, churn, value, models, tau, p_uplift)

    def uplift(self, models: Models, block: np.ndarray, n_customers: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(customers, offers) incremental conversion of the uplift champion on a candidate block
        (float32, CANDIDATE_FEATURES order, customer-major) with each offer's incentive columns,
        and its own P(accept) when it has an acceptance model (else None).

        The uplift model is fitted without an offer vocabulary (`training.uplift_set`: `offer_code`
        NaN), so it reads `offer_code` as NaN here too, whatever the propensity model's codes."""
        X = np.hstack([block, np.tile(self._incentives, (n_customers, 1))])
        X[:, _OFFER_CODE] = np.nan
        if models.uplift_columns is not None:
            X = X[:, models.uplift_columns]
        estimator = models.uplift.model  # type: ignore[attr-defined]
        X = np.ascontiguousarray(X, dtype=np.float32)
        shape = (n_customers, len(self.offer_ids))
        tau = np.asarray(estimator.predict_uplift(X), dtype=np.float64).reshape(shape)
        if not getattr(estimator, "gives_acceptance", False):
            return tau, None
        return tau, np.asarray(estimator.predict_accept(X), dtype=np.float64).reshape(shape)

    def rule_inputs(self, position: int) -> dict[str, object] | None:
        """The values the eligibility rules read of the customer at `position` (None: unknown)."""
        if position < 0:
            return None
        return {n: v[position] for n, v in self._rule_values.items()}


def _blanked(values: np.ndarray, where: int | slice, blank: object) -> np.ndarray:
    """`values` with `values[where] = blank`, in place when the array is writeable, else a copy
    (an array read out of a frame may be a read-only view of it)."""
    if not values.flags.writeable:
        values = values.copy()
    values[where] = blank
    return values

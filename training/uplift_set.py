"""The uplift training set: the randomised log as treated and control rows, point in time.

- Treated rows: every contact (an offer made), whose window closed before `as_of`.
- Control rows: every decision randomised to no contact (`no_offers` with reason `control` or
  `explore`; `policy` rows, where nothing was eligible, are not randomised and are left out),
  paired with one offer of each category drawn from the catalogue (seeded): the outcome of no
  contact is the customer's own purchase of that category, and the X-learner asks what the paired
  offer would have done (`models.uplift`).
- Outcome (both arms): the customer buys the row's offer category in (ts, ts + window]. For a
  treated row this counts the purchase an acceptance makes and the one the customer made anyway,
  so outcome(treated) - outcome(control) is the purchases the contact adds.
- `purchases` (both arms): how many purchases of that category the customer makes in the window:
  an acceptance by a customer who would not have bought adds one, whatever they buy on their own,
  so the difference in mean purchases is the incremental conversion the books count (the
  `share` learner of `models.uplift` is fitted on it).
- `accepted` (treated rows): the acceptance label of the propensity model (`training.labels`).
- `prompt_purchases` (both arms): the same count over the acceptance span only, (ts, ts +
  `span_days`], where `span_days` (`acceptance_span_days`) is the whole days within which the
  log's acceptances arrive (99 %; at most the window). The purchases an acceptance brings fall
  within it, without the organic purchases of the later days that only add noise: the `share`
  learner fits its one parameter (beta) to the lift over the span (docs/training.md; issue 21: beta
  1.8 / 7.3 / 6.0 on three logging runs over the window, 3.0 / 3.9 / 3.2 over the span). What a
  contact does to later purchases (fatigue) is not counted there.

Features are those of the propensity set (`build_exposure_features` on a snapshot at midnight of
the decision's day, with the decision's own context) plus the incentive columns
(`features.incentives`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features import FEATURE_SET, build_customer_features, build_exposure_features
from features.incentives import INCENTIVE_FEATURES, incentive_columns
from features.session import exposure_sessions
from nbo.data import Dataset
from nbo.errors import NboError
from training.labels import propensity_labels

#: `no_offers` reasons that are randomised (the control group, the no-offer exploration).
RANDOMISED_REASONS = ("control", "explore")
#: Share of the accepted contacts whose acceptance arrives within the acceptance span.
SPAN_QUANTILE = 0.99
UPLIFT_FEATURES: tuple[str, ...] = (*FEATURE_SET.candidate_features, *INCENTIVE_FEATURES)


@dataclass(frozen=True)
class UpliftSet:
    """Model inputs, arm, outcome and acceptance of every row, with row metadata."""

    X: np.ndarray
    treatment: np.ndarray  # int8: 1 contact, 0 no contact
    y: np.ndarray  # int8: bought the row's category within the window
    accepted: np.ndarray  # int8: accepted (0 on control rows)
    meta: pd.DataFrame  # decision_id, customer_id, offer_id, ts, base_value, incentive_cost, value, cost
    feature_names: list[str]
    purchases: np.ndarray | None = None  # int16: purchases of the row's category within the window
    prompt_purchases: np.ndarray | None = None  # int16: the same within the acceptance span
    span_days: int | None = None  # the acceptance span (`acceptance_span_days`)

    def split(self, mask: np.ndarray) -> UpliftSet:
        return UpliftSet(self.X[mask], self.treatment[mask], self.y[mask], self.accepted[mask],
                         self.meta[mask].reset_index(drop=True), self.feature_names,
                         None if self.purchases is None else self.purchases[mask],
                         None if self.prompt_purchases is None else self.prompt_purchases[mask], self.span_days)

    @property
    def outcome(self) -> np.ndarray:
        """Purchases of the row's category within the window (bought: 1/0 when not counted)."""
        return self.y if self.purchases is None else self.purchases

    def __len__(self) -> int:
        return len(self.y)


def _control_rows(no_offers: pd.DataFrame, offers: pd.DataFrame, as_of: pd.Timestamp, window: pd.Timedelta,
                  seed: int) -> pd.DataFrame:
    """Randomised decisions without contact, each paired with one offer of every category."""
    rows = no_offers[no_offers["reason"].isin(RANDOMISED_REASONS) & (no_offers["ts"] + window <= as_of)]
    rows = rows.sort_values(["ts", "decision_id"], kind="stable").reset_index(drop=True)
    categories = sorted(offers["category"].unique().tolist())
    by_cat = {c: offers.loc[offers["category"] == c, "offer_id"].to_numpy(dtype=object) for c in categories}
    rng = np.random.default_rng(seed)
    n = len(rows)
    parts = []
    for c in categories:
        ids = by_cat[c]
        part = rows[["decision_id", "customer_id", "channel", "ts"]].copy()
        part["offer_id"] = ids[rng.integers(0, len(ids), n)] if n else np.array([], dtype=object)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True) if parts else rows.iloc[:0]
    out["treatment"] = 0
    out["label"] = 0
    return out


def acceptance_span_days(contacts: pd.DataFrame, window_days: int) -> int:
    """Whole days within which `SPAN_QUANTILE` of the accepted contacts' acceptances arrive
    (outcome_ts - ts of the `accepted` rows among `contacts`, rounded up), at least 1 and at most
    `window_days`; `window_days` when no acceptance has a time."""
    if window_days <= 0:
        raise ValueError("window_days must be positive")
    accepted = contacts[(contacts["outcome"] == "accepted") & contacts["outcome_ts"].notna()]
    delay = (accepted["outcome_ts"] - accepted["ts"]) / pd.Timedelta(days=1)
    delay = delay[(delay >= 0) & (delay <= window_days)].to_numpy(np.float64)
    if not len(delay):
        return window_days
    return int(min(max(np.ceil(np.quantile(delay, SPAN_QUANTILE)), 1), window_days))


def _bought(rows: pd.DataFrame, events: pd.DataFrame, offers: pd.DataFrame, window: pd.Timedelta) -> np.ndarray:
    """How many purchases of its offer's category the row's customer makes in (ts, ts + window]."""
    category = offers.set_index("offer_id")["category"]
    keyed = pd.DataFrame({"row": np.arange(len(rows)), "customer_id": rows["customer_id"].to_numpy(),
                          "category": category.reindex(rows["offer_id"]).to_numpy(), "ts": rows["ts"].to_numpy()})
    buys = events.loc[events["type"] == "purchase", ["customer_id", "category", "ts"]].rename(columns={"ts": "buy_ts"})
    both = keyed.merge(buys, on=["customer_id", "category"], how="inner")
    hit = both[(both["buy_ts"] > both["ts"]) & (both["buy_ts"] <= both["ts"] + window)]
    return np.bincount(hit["row"].to_numpy(np.int64), minlength=len(rows)).astype(np.int16)


def uplift_set(
    data: Dataset,
    as_of: pd.Timestamp,
    window_days: int = 7,
    seed: int = 0,
    progress: bool = True,
) -> UpliftSet:
    """Treated and control rows of the randomised log whose window closed before `as_of`."""
    window = pd.Timedelta(days=window_days)
    labelled = propensity_labels(data.contacts, as_of, window_days)
    span = acceptance_span_days(labelled, window_days)
    treated = labelled[["decision_id", "customer_id", "offer_id", "channel", "ts", "label"]].copy()
    treated["treatment"] = 1
    control = _control_rows(data.no_offers, data.offers, as_of, window, seed)
    if treated.empty or control.empty:
        raise NboError(
            f"an uplift model needs contacts and randomised decisions without contact before --as-of "
            f"({len(treated):,} contacts, {len(control):,} control rows): log a control group or "
            "no-offer exploration ([control_group] share, arbitration.exploration.no_offer_rate)"
        )
    rows = pd.concat([treated, control[treated.columns]], ignore_index=True)
    rows = rows.sort_values(["ts", "decision_id", "offer_id"], kind="stable").reset_index(drop=True)
    rows["purchases"] = _bought(rows, data.events, data.offers, window)
    rows["prompt_purchases"] = _bought(rows, data.events, data.offers, pd.Timedelta(days=span))
    rows["y"] = (rows["purchases"] > 0).astype(np.int8)
    rows = pd.concat([rows, exposure_sessions(data.events, rows)], axis=1)
    names = list(FEATURE_SET.candidate_features)
    parts: list[pd.DataFrame] = []
    for day, part in tqdm(rows.groupby(rows["ts"].dt.normalize(), sort=True), desc="uplift snapshots", unit="day",
                          disable=not progress, leave=False):
        customers = build_customer_features(data, day, customer_ids=part["customer_id"].unique())
        feats = build_exposure_features(customers, data.offers, data.contacts, part, day)
        for col in ("decision_id", "ts", "treatment", "label", "y", "purchases", "prompt_purchases"):
            feats[col] = part[col].to_numpy()
        parts.append(feats)
    frame = pd.concat(parts, ignore_index=True)
    offers = data.offers.reset_index(drop=True)
    position = pd.Index(offers["offer_id"]).get_indexer(frame["offer_id"])
    extra = incentive_columns(offers)[position]
    X = np.hstack([frame[names].to_numpy(dtype=np.float32, na_value=np.nan), extra.astype(np.float32)])
    meta = frame[["decision_id", "customer_id", "offer_id", "ts"]].reset_index(drop=True)
    meta["incentive_cost"] = extra[:, 0]
    meta["base_value"] = extra[:, 1]
    meta["value"] = offers["value"].to_numpy(np.float64)[position]
    meta["cost"] = offers["cost"].to_numpy(np.float64)[position]
    return UpliftSet(X, frame["treatment"].to_numpy(np.int8), frame["y"].to_numpy(np.int8),
                     frame["label"].to_numpy(np.int8), meta, [*names, *INCENTIVE_FEATURES],
                     frame["purchases"].to_numpy(np.int16), frame["prompt_purchases"].to_numpy(np.int16), span)

"""The offer catalogue as the arbiter reads it: offers, their levers and eligibility rules, as arrays.

Built once per arbiter from the `offers` table and the compiled eligibility rules
(`compile_offer_rules`); column j of an arbitration block is catalogue position j (order of first
appearance). `rule_masks` evaluates every rule of the catalogue on one customer's values or on a
frame of customers, with the request context (channel, hour, day_of_week, page_category, device).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from nbo.errors import ConfigError
from serving.contact_store.base import OfferRef
from serving.policy import Arbitration
from serving.rules import CONTEXT_NAMES, Rule, compile_rule


@dataclass(frozen=True)
class CatalogueOffer:
    """One offer of the catalogue as the arbiter reads it (validity in epoch seconds, lever from the policy)."""

    offer_id: str
    category: str
    kind: str
    channels: frozenset[str]
    value: float
    cost: float
    valid_from: float
    valid_to: float
    rule: Rule | None
    ref: OfferRef
    lever: float


def compile_offer_rules(offers: pd.DataFrame, feature_names: Iterable[str]) -> dict[str, Rule]:
    """Compile the `eligibility` column of the offer catalogue; errors name the offer."""
    known = frozenset(feature_names) | CONTEXT_NAMES
    rules: dict[str, Rule] = {}
    cache: dict[str, Rule] = {}
    for offer_id, text in zip(offers["offer_id"].tolist(), offers["eligibility"].tolist(), strict=True):
        if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
            continue
        try:
            rules[offer_id] = cache[text] if text in cache else cache.setdefault(text, compile_rule(text, known))
        except ConfigError as exc:
            raise ConfigError(f"offer {offer_id!r}: {exc}") from None
    return rules


def _epoch_column(values: pd.Series) -> list[float]:
    ts = pd.to_datetime(values)
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return (ts.to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9).tolist()


class OfferCatalogue:
    """The catalogue's offers by id and as arrays (position = column of an arbitration block)."""

    def __init__(self, offers: pd.DataFrame, rules: Mapping[str, Rule], arbitration: Arbitration) -> None:
        catalogue: dict[str, CatalogueOffer] = {}
        has_rule = offers["eligibility"].notna() & (offers["eligibility"].astype(str).str.strip() != "") if "eligibility" in offers else None
        for i, (oid, cat, kind, chans, value, cost, vf, vt) in enumerate(
            zip(
                offers["offer_id"].tolist(),
                offers["category"].tolist(),
                offers["kind"].tolist(),
                offers["channels"].tolist(),
                offers["value"].astype(float).tolist(),
                offers["cost"].astype(float).tolist(),
                _epoch_column(offers["valid_from"]),
                _epoch_column(offers["valid_to"]),
                strict=True,
            )
        ):
            rule = rules.get(oid)
            if rule is None and has_rule is not None and bool(has_rule.iloc[i]):
                raise ConfigError(f"offer {oid!r} has an eligibility rule but no compiled rule was given")
            lever = arbitration.weight(oid, kind)
            catalogue[oid] = CatalogueOffer(oid, cat, kind, frozenset(chans), value, cost, vf, vt, rule, OfferRef(oid, cat), lever)
        self.by_id = catalogue
        # The catalogue as arrays (position = order of first appearance), for blocks of customers.
        items = list(catalogue.values())
        self.items = items
        self.index = {o.offer_id: j for j, o in enumerate(items)}
        self.value = np.array([o.value for o in items], dtype=np.float64)
        self.cost = np.array([o.cost for o in items], dtype=np.float64)
        self.lever = np.array([o.lever for o in items], dtype=np.float64)
        self.valid_from = np.array([o.valid_from for o in items], dtype=np.float64)
        self.valid_to = np.array([o.valid_to for o in items], dtype=np.float64)
        self.retention = np.array([o.kind == "retention" for o in items], dtype=bool)
        self._incentives(offers)
        categories = sorted({o.category for o in items})
        self.category = np.array([categories.index(o.category) for o in items], dtype=np.int64)
        self.n_categories = len(categories)
        self.id_order = np.argsort(np.argsort(np.array([o.offer_id for o in items], dtype=object), kind="stable"), kind="stable")
        self.rules: dict[int, Rule] = {id(o.rule): o.rule for o in items if o.rule is not None}
        self._on_channel: dict[str, np.ndarray] = {}
        self.rule_list: list[Rule] = list(self.rules.values())
        where = {key: r for r, key in enumerate(self.rules)}
        self.rule_of = np.array([-1 if o.rule is None else where[id(o.rule)] for o in items], dtype=np.int64)

    def _incentives(self, offers: pd.DataFrame) -> None:
        """Incentive variants (`base_offer_id`, `incentive`, `incentive_cost`, docs/data.md) as
        arrays: `incentive_cost`, `base_value` (value + incentive cost) and `group` (variants of
        one plain offer share its position). A variant without a cost is refused."""
        n = len(self.items)
        first = {}
        for i, oid in enumerate(offers["offer_id"].tolist()):
            first.setdefault(oid, i)
        rows = [first[o.offer_id] for o in self.items]
        cost = np.zeros(n)
        if "incentive_cost" in offers.columns:
            cost = pd.to_numeric(offers["incentive_cost"], errors="coerce").to_numpy(np.float64)[rows]
        named = np.zeros(n, dtype=bool)
        if "incentive" in offers.columns:
            inc = offers["incentive"].to_numpy(dtype=object)[rows]
            named = np.array([isinstance(v, str) and v.strip() != "" for v in inc], dtype=bool)
        bad = named & ~(np.isfinite(cost) & (cost > 0))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ConfigError(f"offer {self.items[j].offer_id!r} is an incentive variant ({inc[j]!r}) without an "
                              "incentive_cost above 0: say what it gives away per acceptance")
        self.incentive_cost = np.where(np.isfinite(cost), cost, 0.0)
        self.base_value = self.value + self.incentive_cost
        base = [o.offer_id for o in self.items]
        if "base_offer_id" in offers.columns:
            raw = offers["base_offer_id"].to_numpy(dtype=object)[rows]
            base = [b if isinstance(b, str) and b else o for b, o in zip(raw.tolist(), base, strict=True)]
        order = {b: g for g, b in enumerate(dict.fromkeys(base))}
        self.group = np.array([order[b] for b in base], dtype=np.int64)
        self.has_variants = bool(len(order) < n)

    @property
    def offer_ids(self) -> list[str]:
        """Offer ids in column order."""
        return [o.offer_id for o in self.items]

    def columns_of(self, offer_ids: Iterable[str]) -> np.ndarray:
        """Positions (columns of an arbitration block) of these catalogue offers."""
        return np.array([self.index[o] for o in offer_ids], dtype=np.int64)

    def on_channel(self, channel: str) -> np.ndarray:
        """Which offers may be shown on `channel` (one bool per column)."""
        mask = self._on_channel.get(channel)
        if mask is None:
            mask = self._on_channel[channel] = np.array([channel in o.channels for o in self.items], dtype=bool)
        return mask

    def _context_env(self, channel: str, now: datetime, context: Mapping[str, object] | None) -> dict[str, object]:
        env = dict(context or {})
        env["channel"] = channel
        env.setdefault("hour", now.hour)
        env.setdefault("day_of_week", now.weekday())
        return env

    def rule_masks(
        self, features: pd.DataFrame | Mapping[str, object] | None, channel: str, now: datetime, context: Mapping[str, object] | None = None
    ) -> dict[int, np.ndarray]:
        """Eligibility of every rule of the catalogue: rule id -> one bool per customer.

        `features`: one customer's values (a mapping, or None when unknown: `Rule.evaluate`) or a
        frame of customers (`Rule.evaluate_frame`, the same semantics). Context values
        (channel, hour, day_of_week, page_category, device) are the same for every row.
        """
        env = self._context_env(channel, now, context)
        if features is None or isinstance(features, Mapping):
            row = dict(features or {})
            row.update(env)
            return {key: np.array([rule.evaluate(row)]) for key, rule in self.rules.items()}
        needed = sorted({n for r in self.rules.values() for n in r.names})
        frame = pd.DataFrame({n: features[n] for n in needed if n in features.columns and n not in env}, index=features.index)
        for name, value in env.items():
            if name in needed:
                frame[name] = value
        return {key: rule.evaluate_frame(frame) for key, rule in self.rules.items()}

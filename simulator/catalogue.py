"""The offer catalogue: ~32 offers over all kinds, categories and channels.

Eligibility rules are kept structurally (a minimum tenure, a set of lifecycle stages) so the
simulator checks them without a parser, and rendered in the rule syntax nbo's rule engine reads:
`tenure_days > 30`, `lifecycle in ["at_risk", "lapsed"]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from nbo.errors import NboError
from simulator.config import LIFE, SimConfig
from nbo.vocab import CONTACT_CHANNELS, LIFECYCLE_STAGES, OFFER_KINDS

DAY = 86_400
_KINDS_CYCLE = ("cross_sell", "upsell", "loyalty", "retention", "acquisition")
_KIND_VALUE = {"acquisition": 25.0, "cross_sell": 30.0, "upsell": 45.0, "retention": 35.0, "loyalty": 20.0}
_CATEGORY_VALUE = {"travel": 2.5, "electronics": 1.8, "fashion": 1.1, "home": 1.2, "sports": 1.0,
                   "beauty": 0.8, "books": 0.5, "grocery": 0.4}
_CHANNEL_COST = np.array([0.002, 0.002, 0.01, 0.06, 0.005, 0.8])  # web app email sms push mail


@dataclass(frozen=True)
class Catalogue:
    """Offers as arrays indexed by offer position."""

    offer_id: tuple[str, ...]
    name: tuple[str, ...]
    category: np.ndarray  # int8 code into config.categories
    kind: np.ndarray  # int8 code into OFFER_KINDS
    channels: np.ndarray  # bool (n_offers, 6) allowed contact channels
    value: np.ndarray  # float64, margin if accepted (currency units)
    cost: np.ndarray  # float64, cost of one contact (currency units)
    valid_from_day: np.ndarray  # int32, first day (from period start) the offer is valid
    valid_to_day: np.ndarray  # int32, last valid day (inclusive)
    min_tenure_days: np.ndarray  # int32, -1 = no tenure rule; rule is tenure_days > value
    lifecycles: np.ndarray  # bool (n_offers, 6) lifecycle stages allowed (all True = no rule)
    value_z: np.ndarray  # float32, standardised log value (drives the value effect on acceptance)
    # Incentive variants (SimConfig.incentives): a variant is an offer of its own (its own id, the
    # channels, validity and rule of its plain offer) whose `value` is the plain value less the
    # incentive's cost. Without incentives every offer is its own plain version.
    base: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # plain offer's position
    variant: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int8))  # code into incentives, -1 = none
    incentive_cost: np.ndarray = field(default_factory=lambda: np.empty(0))  # currency per acceptance

    def __post_init__(self) -> None:
        n = len(self.offer_id)
        if len(self.base) != n:  # a catalogue without variants: every offer is plain
            object.__setattr__(self, "base", np.arange(n, dtype=np.int64))
            object.__setattr__(self, "variant", np.full(n, -1, dtype=np.int8))
            object.__setattr__(self, "incentive_cost", np.zeros(n))

    @property
    def n(self) -> int:
        return len(self.offer_id)

    @property
    def has_variants(self) -> bool:
        return bool((self.variant >= 0).any())

    @property
    def base_value(self) -> np.ndarray:
        """The plain offer's value (margin if accepted, before any incentive), per offer."""
        return self.value[self.base]

    def valid_on(self, day: int) -> np.ndarray:
        """Bool per offer: valid on `day` (days from the period start)."""
        return (self.valid_from_day <= day) & (day <= self.valid_to_day)

    def eligible(self, day: int, channel: np.ndarray, tenure_days: np.ndarray, lifecycle: np.ndarray) -> np.ndarray:
        """Bool (m, n_offers): offers valid on `day`, allowed on each row's channel and whose
        eligibility rule the row's customer (tenure in whole days, lifecycle code) satisfies."""
        ok = self.channels[:, channel].T & self.valid_on(day)[None, :]
        ok &= tenure_days[:, None] > self.min_tenure_days[None, :]
        ok &= self.lifecycles[:, lifecycle].T
        return ok

    def eligibility_rules(self) -> list[str | None]:
        rules: list[str | None] = []
        for i in range(self.n):
            parts = []
            if self.min_tenure_days[i] >= 0:
                parts.append(f"tenure_days > {int(self.min_tenure_days[i])}")
            if not self.lifecycles[i].all():
                stages = ", ".join(f'"{s}"' for s, ok in zip(LIFECYCLE_STAGES, self.lifecycles[i]) if ok)
                parts.append(f"lifecycle in [{stages}]")
            rules.append(" and ".join(parts) if parts else None)
        return rules

    def to_frame(self, config: SimConfig) -> pd.DataFrame:
        """The `offers` table of the data contract (with `base_offer_id`, `incentive` and
        `incentive_cost` when the world has incentive variants)."""
        start = pd.Timestamp(config.start)
        frame = pd.DataFrame(
            {
                "offer_id": pd.Series(self.offer_id, dtype="str"),
                "name": pd.Series(self.name, dtype="str"),
                "category": pd.Series([config.categories[c] for c in self.category], dtype="str"),
                "kind": pd.Series([OFFER_KINDS[k] for k in self.kind], dtype="str"),
                "channels": [tuple(c for c, ok in zip(CONTACT_CHANNELS, row) if ok) for row in self.channels],
                "value": self.value,
                "cost": self.cost,
                "valid_from": start + pd.to_timedelta(self.valid_from_day.astype(np.int64), unit="D"),
                "valid_to": start
                + pd.to_timedelta(self.valid_to_day.astype(np.int64) + 1, unit="D")
                - pd.Timedelta(seconds=1),
                "eligibility": pd.Series(self.eligibility_rules(), dtype="str"),
            }
        )
        if self.has_variants:
            names = [i.name for i in config.incentives]
            frame["base_offer_id"] = pd.Series([self.offer_id[b] for b in self.base], dtype="str")
            frame["incentive"] = pd.Series([names[v] if v >= 0 else None for v in self.variant], dtype="str")
            frame["incentive_cost"] = self.incentive_cost
        return frame


def with_variants(catalogue: Catalogue, config: SimConfig) -> Catalogue:
    """The catalogue with one variant of every offer per incentive of `config` (no randomness: the
    plain offers, and every draw after them, stay those of the world without incentives).

    Variant `o-...-07-pct10` of offer `o-...-07` keeps its category, kind, channels, validity,
    rule and `value_z` (what the offer is), and is worth its value less the incentive's cost."""
    if not config.incentives:
        return catalogue
    n = catalogue.n
    parts = [np.arange(n)] + [np.arange(n)] * len(config.incentives)
    base = np.concatenate(parts).astype(np.int64)
    variant = np.concatenate([np.full(n, -1)] + [np.full(n, v) for v in range(len(config.incentives))]).astype(np.int8)
    cost = np.concatenate([np.zeros(n)] + [np.round(i.cost(catalogue.value, config.organic_margin), 2)
                                           for i in config.incentives])
    value = np.round(catalogue.value[base] - cost, 2)
    if (value < 0).any():
        worst = int(np.argmin(value))
        raise NboError(f"incentive {config.incentives[variant[worst]].name!r} costs more than offer "
                       f"{catalogue.offer_id[base[worst]]!r} is worth ({cost[worst]:.2f} > {catalogue.value[base[worst]]:.2f})")
    ids = tuple(catalogue.offer_id) + tuple(f"{catalogue.offer_id[b]}-{config.incentives[v].name}"
                                            for b, v in zip(base[n:], variant[n:], strict=True))
    names = tuple(catalogue.name) + tuple(f"{catalogue.name[b]} ({config.incentives[v].name})"
                                          for b, v in zip(base[n:], variant[n:], strict=True))
    return replace(
        catalogue,
        offer_id=ids,
        name=names,
        category=catalogue.category[base],
        kind=catalogue.kind[base],
        channels=catalogue.channels[base],
        value=value,
        cost=catalogue.cost[base],
        valid_from_day=catalogue.valid_from_day[base],
        valid_to_day=catalogue.valid_to_day[base],
        min_tenure_days=catalogue.min_tenure_days[base],
        lifecycles=catalogue.lifecycles[base],
        value_z=catalogue.value_z[base],
        base=base,
        variant=variant,
        incentive_cost=cost,
    )


def make_catalogue(config: SimConfig, rng: np.random.Generator) -> Catalogue:
    """Four offers per category, kinds cycling so all five kinds appear, random channels."""
    cats = config.categories
    n = 4 * len(cats)
    names, ids, cat, kind = [], [], [], []
    for i in range(n):
        c = i % len(cats)
        k = _KINDS_CYCLE[(i // len(cats) + c) % len(_KINDS_CYCLE)]
        cat.append(c)
        kind.append(OFFER_KINDS.index(k))
        ids.append(f"o-{cats[c]}-{k.replace('_', '')}-{i:02d}")
        names.append(f"{cats[c].title()} {k.replace('_', ' ')} #{i}")
    cat_a = np.array(cat, dtype=np.int8)
    kind_a = np.array(kind, dtype=np.int8)

    channels = rng.random((n, len(CONTACT_CHANNELS))) < 0.5
    channels[: len(cats)] = True  # the first offer of each category goes everywhere
    channels[~channels.any(1), 0] = True
    value = np.round(
        np.array([_KIND_VALUE[OFFER_KINDS[k]] * _CATEGORY_VALUE.get(cats[c], 1.0) for c, k in zip(cat, kind)])
        * rng.uniform(0.7, 1.3, n),
        2,
    )
    cost = np.round(np.array([_CHANNEL_COST[row].mean() for row in channels]), 4)

    last = config.days - 1
    valid_from = np.zeros(n, dtype=np.int32)
    valid_to = np.full(n, last + 365, dtype=np.int32)  # most run past the period
    late = np.arange(n) >= len(cats)  # never the all-channel offers
    starts_late = late & (rng.random(n) < 0.15)
    ends_early = late & (rng.random(n) < 0.15)
    valid_from[starts_late] = rng.integers(0, max(config.days // 3, 1), starts_late.sum())
    valid_to[ends_early] = valid_from[ends_early] + rng.integers(max(config.days // 2, 1), config.days + 1, ends_early.sum())

    min_tenure = np.full(n, -1, dtype=np.int32)
    lifecycles = np.ones((n, 6), dtype=bool)
    for i in range(n):
        if i < len(cats):
            continue
        k = OFFER_KINDS[kind_a[i]]
        if k == "retention" and i % 2 == 0:
            lifecycles[i] = False
            lifecycles[i, [LIFE["at_risk"], LIFE["lapsed"]]] = True
        elif k in ("loyalty", "upsell") and i % 3 == 0:
            min_tenure[i] = 30
    log_value = np.log(value)
    value_z = ((log_value - log_value.mean()) / (log_value.std() + 1e-9)).astype(np.float32)
    return Catalogue(
        offer_id=tuple(ids),
        name=tuple(names),
        category=cat_a,
        kind=kind_a,
        channels=channels,
        value=value,
        cost=cost,
        valid_from_day=valid_from,
        valid_to_day=valid_to,
        min_tenure_days=min_tenure,
        lifecycles=lifecycles,
        value_z=value_z,
    )

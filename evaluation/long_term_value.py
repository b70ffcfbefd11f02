"""What a policy's closed-loop run is worth: its result (`PolicyRun`), long-term value with the
churn it causes, and the organic margin at which keeping customers pays for fewer offers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Days of future value credited to a customer still active at the end (see `long_term_value`).
FUTURE_DAYS = 365
#: Window (days, at the end of the run) over which a policy's steady value rate is measured.
RATE_WINDOW_DAYS = 90


@dataclass(frozen=True)
class PolicyRun:
    """One policy's closed-loop result. Currency units; counts of customers and contacts.

    A customer is worth the offers they accept *and* what they buy on their own (at the world's
    `organic_margin`): churn loses both. `long_term_value` counts both; `offer_long_term_value` is
    the offers' part alone, and `organic_long_term_amount` the purchase amounts behind the other
    part (before the margin), so any margin's verdict can be recomputed: the value is linear in it.
    """

    name: str
    contacts: int
    accepted: int
    value: float  # accepted offers' value minus contact costs
    churned: int
    active_end: int
    long_term_value: float  # offer_long_term_value + organic_margin * organic_long_term_amount
    daily: pd.DataFrame
    refits: int = 0  # times the policy's model was refitted on its own log
    organic_value: float = 0.0  # margin on the purchases no offer prompted, within the period
    organic_amount: float = 0.0  # their amounts, before the margin
    offer_long_term_value: float = 0.0
    organic_long_term_amount: float = 0.0

    def row(self) -> dict[str, float | int]:
        return {"contacts": self.contacts, "accepted": self.accepted, "value": round(self.value, 2),
                "organic_value": round(self.organic_value, 2), "churned": self.churned,
                "active_end": self.active_end, "offer_long_term_value": round(self.offer_long_term_value, 2),
                "long_term_value": round(self.long_term_value, 2)}

    def value_after(self, days: int) -> float:
        """Net value of the offers over the first `days` days (the whole run if shorter): who
        leads in the first weeks."""
        return float(self.daily["net_value_cum"].iloc[min(days, len(self.daily)) - 1])

    def headline(self, first_days: int) -> dict[str, float | int]:
        """The figures the thesis is read from: contacts, customers kept, value within the period
        (offers, and with the margin on own purchases), after `first_days`, and long-term value."""
        return {"contacts": self.contacts, "active_end": self.active_end, "value": self.value,
                "value_with_organic": self.value + self.organic_value, "first_days": self.value_after(first_days),
                "long_term_value": self.long_term_value}


def long_term_value(daily: pd.DataFrame, future_days: int = FUTURE_DAYS, window: int = RATE_WINDOW_DAYS,
                    organic_margin: float = 0.0) -> float:
    """Net value earned + what the customers still active at the end are worth over one more
    `future_days`, at the policy's own steady state over the last `window` days: its net value per
    active customer-day, and its churn hazard per active customer-day. Churned customers are worth
    nothing more: that is the value lost with them.

    Net value is the offers' value minus contact costs, plus `organic_margin` times the amounts of
    the purchases no offer prompted (`organic_amount`; 0 counts the offers alone): a customer who
    churns stops buying altogether, and a measure that ignores those purchases would value a
    customer kept at only the offers they accept.

    The expected active customer-days of the extra period are `active_end * (1 - exp(-h F)) / h`
    (constant hazard `h`, `F = future_days`; `active_end * F` when nobody churns). Crediting the
    extra period *without* its churn (what this function did before) overstates a policy that
    keeps losing customers: it counted a year of its contact rate but none of its churn.
    """
    earned = daily["value"] - daily["cost"]
    if organic_margin:
        earned = earned + organic_margin * daily["organic_amount"]
    net = float(earned.sum())
    tail = daily.tail(window)
    customer_days = float(tail["active"].sum())
    rate = float(earned.tail(window).sum()) / customer_days if customer_days else 0.0
    hazard = float(tail["churned_today"].sum()) / customer_days if customer_days else 0.0
    active_end = int(daily["active"].iloc[-1] - daily["churned_today"].iloc[-1])
    return net + active_end * rate * expected_active_days(hazard, future_days)


def break_even_margin(capped: PolicyRun, uncapped: PolicyRun, within_period: bool = False) -> float:
    """The organic margin above which `capped` is worth more than `uncapped`: in long-term value,
    or (`within_period`) in what both earned within the period. 0 if it already is on offers
    alone; inf if keeping customers never makes up for it (both values are linear in the margin)."""
    if within_period:
        gap, kept = uncapped.value - capped.value, capped.organic_amount - uncapped.organic_amount
    else:
        gap = uncapped.offer_long_term_value - capped.offer_long_term_value
        kept = capped.organic_long_term_amount - uncapped.organic_long_term_amount
    if gap <= 0:
        return 0.0
    return gap / kept if kept > 0 else float("inf")


def expected_active_days(hazard: float, days: int) -> float:
    """Expected days a customer stays active over the next `days` under a constant daily churn
    `hazard` (the integral of exp(-hazard t) over [0, days])."""
    if hazard <= 1e-12:
        return float(days)
    return float(-np.expm1(-hazard * days) / hazard)


def summarise(name: str, daily: pd.DataFrame, organic_margin: float, refits: int = 0) -> PolicyRun:
    """A policy's `PolicyRun` from its daily series (`Simulator.daily()`)."""
    daily = daily.copy()
    daily["net_value_cum"] = (daily["value"] - daily["cost"]).cumsum()
    daily["organic_value_cum"] = (organic_margin * daily["organic_amount"]).cumsum()
    daily["customer_value_cum"] = daily["net_value_cum"] + daily["organic_value_cum"]
    daily["active_end_of_day"] = daily["active"] - daily["churned_today"]
    offer_ltv = long_term_value(daily)
    return PolicyRun(
        name=name,
        contacts=int(daily["contacts"].sum()),
        accepted=int(daily["accepted"].sum()),
        value=float((daily["value"] - daily["cost"]).sum()),
        churned=int(daily["churned_total"].iloc[-1]),
        active_end=int(daily["active_end_of_day"].iloc[-1]),
        long_term_value=long_term_value(daily, organic_margin=organic_margin),
        daily=daily,
        refits=refits,
        organic_value=float(organic_margin * daily["organic_amount"].sum()),
        organic_amount=float(daily["organic_amount"].sum()),
        offer_long_term_value=offer_ltv,
        organic_long_term_amount=long_term_value(daily, organic_margin=1.0) - offer_ltv,
    )


def table(runs: list[PolicyRun]) -> pd.DataFrame:
    return pd.DataFrame({r.name: r.row() for r in runs}).T

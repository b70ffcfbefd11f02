"""Long-term value of a closed-loop run and the break-even organic margin, hand-computed."""

from __future__ import annotations

import math

import pandas as pd

from evaluation.long_term_value import PolicyRun, break_even_margin, expected_active_days, long_term_value, summarise


def test_long_term_value_counts_the_future_churn_of_each_policy() -> None:
    """Two policies with the same value so far and the same customers left: the one still losing
    customers at the end is worth less in the extra year (hand-computed)."""
    def daily(churn_per_day: int) -> pd.DataFrame:
        return pd.DataFrame({"value": [12.0] * 10, "cost": [2.0] * 10, "active": [100] * 10,
                             "churned_today": [churn_per_day] * 9 + [0]})
    steady, leaking = daily(0), daily(1)
    assert expected_active_days(0.0, 365) == 365.0
    assert math.isclose(expected_active_days(0.01, 365), (1 - math.exp(-3.65)) / 0.01)
    # net 100; rate 10 / 100 = 0.1 per active customer-day; 100 customers at the end.
    assert math.isclose(long_term_value(steady, future_days=365, window=10), 100 + 100 * 0.1 * 365)
    h = 9 / 1000
    assert math.isclose(long_term_value(leaking, future_days=365, window=10),
                        100 + 100 * 0.1 * (1 - math.exp(-h * 365)) / h)
    assert long_term_value(leaking, 365, 10) < long_term_value(steady, 365, 10)


def test_long_term_value_counts_the_customers_own_purchases_at_the_margin() -> None:
    """Hand-computed: 10 days, 100 customers, net offer value 10 a day, own purchases 50 a day at
    margin 0.2; nobody churns, so the extra year is 365 days at the last days' rate."""
    daily = pd.DataFrame({"value": [12.0] * 10, "cost": [2.0] * 10, "organic_amount": [50.0] * 10,
                          "active": [100] * 10, "churned_today": [0] * 10, "contacts": [5] * 10,
                          "accepted": [1] * 10, "churned_total": [0] * 10})
    offers_only = 100 + 100 * 0.1 * 365
    assert math.isclose(long_term_value(daily, 365, 10), offers_only)
    assert math.isclose(long_term_value(daily, 365, 10, organic_margin=0.2), offers_only + 100 + 100 * 0.1 * 365)
    run = summarise("p", daily, organic_margin=0.2)
    assert math.isclose(run.organic_value, 100.0) and math.isclose(run.organic_amount, 500.0)
    assert math.isclose(run.offer_long_term_value, long_term_value(daily))
    assert math.isclose(run.long_term_value, run.offer_long_term_value + 0.2 * run.organic_long_term_amount)
    assert run.row()["long_term_value"] == round(run.long_term_value, 2)


def test_break_even_margin_is_where_keeping_customers_pays_for_fewer_offers() -> None:
    def run(offer_ltv: float, organic: float) -> PolicyRun:
        return PolicyRun("p", 0, 0, offer_ltv / 2, 0, 0, offer_ltv, pd.DataFrame(), offer_long_term_value=offer_ltv,
                         organic_long_term_amount=organic, organic_amount=organic / 4)
    capped, greedy_one = run(100.0, 1000.0), run(300.0, 200.0)
    m = break_even_margin(capped, greedy_one)
    assert math.isclose(m, 200 / 800)
    assert math.isclose(100 + m * 1000, 300 + m * 200)  # equal long-term value at the break-even margin
    within = break_even_margin(capped, greedy_one, within_period=True)
    assert math.isclose(within, 100 / 200)
    assert math.isclose(50 + within * 250, 150 + within * 50)  # equal value within the period
    assert break_even_margin(greedy_one, capped) == 0.0  # already ahead on offers alone
    assert break_even_margin(run(100.0, 100.0), greedy_one) == float("inf")  # keeps no more customers

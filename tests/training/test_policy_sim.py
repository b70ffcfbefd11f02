"""Closed-loop policy simulation on a small world: the table, the caps' effect on customers kept,
the ordering of policies, and the in-memory contact store's caps."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nbo.cli import app
from nbo.simulator import SimConfig
from serving.contact_store.base import OfferRef
from serving.policy import ContactPolicy
import math

import pandas as pd

from training.policy_sim import (
    POLICY_NAMES,
    MemoryContactStore,
    compare_policies,
    expected_active_days,
    long_term_value,
    uncapped,
)

CONFIG = SimConfig(customers=250, days=30)


@pytest.fixture(scope="module")
def runs():
    result, trained = compare_policies(CONFIG, seed=0, policy=ContactPolicy(), train_days=50, num_boost_round=80)
    return {r.name: r for r in result}, trained


def test_every_policy_reports_the_table(runs) -> None:
    by, trained = runs
    assert list(by) == list(POLICY_NAMES)
    assert trained.valid_auc > 0.6
    for r in by.values():
        row = r.row()
        assert {"contacts", "accepted", "value", "churned", "long_term_value"} <= set(row)
        assert r.contacts > 0 and 0 <= r.accepted <= r.contacts
        assert r.long_term_value >= r.value - 1e-6 or r.active_end == 0


def test_caps_keep_customers(runs) -> None:
    by, _ = runs
    assert by["nbo_uncapped"].contacts > 1.5 * by["nbo"].contacts
    assert by["nbo"].active_end > by["nbo_uncapped"].active_end


def test_policy_ordering_on_value(runs) -> None:
    by, _ = runs
    assert by["nbo"].value > by["random"].value
    assert by["nbo"].value > by["popular"].value
    assert by["oracle"].value > by["nbo"].value  # the truth is the ceiling under the same caps


def test_memory_store_applies_caps_and_cooldowns() -> None:
    policy = ContactPolicy()
    store = MemoryContactStore()
    t0 = datetime(2025, 1, 1, 10)
    offer = OfferRef("o-1", "books")
    for i in range(2):
        assert store.check_and_reserve("c", "email", [offer if i == 0 else OfferRef("o-2", "books")],
                                       t0 + timedelta(hours=i), policy, f"d{i}", {}).ok
    refused = store.check_and_reserve("c", "email", [OfferRef("o-3", "home")], t0 + timedelta(hours=3), policy, "d3", {})
    assert refused.refused == (("o-3", "cap_channel"),)  # email: 2 per 7 days
    assert store.check_and_reserve("c", "email", [OfferRef("o-3", "home")], t0 + timedelta(days=7, hours=2),
                                   policy, "d4", {}).ok
    store.add_declines(["c"], ["o-1"], ["books"], [(t0 + timedelta(days=8)).timestamp()])
    late = store.history("c", t0 + timedelta(days=9))
    assert late.last_decline_offer == {"o-1": (t0 + timedelta(days=8)).timestamp()}
    assert store.history("c", t0 + timedelta(days=7)).last_decline_offer == {}  # not observed yet
    free = uncapped(policy)
    assert free.caps == {} and free.cooldown.offer_days == 0 and free.consent == policy.consent


def test_cli_writes_json_and_plots(tmp_path: Path) -> None:
    out, plots = tmp_path / "table.json", tmp_path / "plots"
    result = CliRunner().invoke(app, ["simulate-policies", "--customers", "60", "--days", "10", "--train-days", "40",
                                      "--policies", "random,popular,oracle", "--out", str(out), "--plots", str(plots)])
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())
    assert set(table) == {"random", "popular", "oracle"}
    assert set(table["oracle"]) >= {"contacts", "accepted", "value", "churned", "long_term_value"}
    assert (plots / "cumulative_value.png").stat().st_size > 0
    bad = CliRunner().invoke(app, ["simulate-policies", "--policies", "greedy"])
    assert bad.exit_code == 2 and "unknown policy" in bad.output


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

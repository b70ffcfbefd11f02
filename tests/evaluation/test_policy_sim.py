"""Closed-loop policy simulation on a small world: the table, the caps' effect on customers kept,
the ordering of policies, refits, the thesis map and the CLI (the store, rule sets, long-term value
and the refitter's rows have test files of their own)."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from simulator import SimConfig, Simulator
from serving.policy import ContactPolicy
from evaluation.policy_sim import (
    DEFAULT_REFIT_DAYS,
    POLICY_NAMES,
    TRUTH_UNCAPPED,
    Refitter,
    compare_policies,
    make_policy,
    plot_thesis_map,
    run_policy,
    thesis_map,
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


def test_cli_writes_json_and_plots(tmp_path: Path) -> None:
    out, plots = tmp_path / "table.json", tmp_path / "plots"
    result = CliRunner().invoke(app, ["simulate-policies", "--customers", "60", "--days", "10", "--train-days", "40",
                                      "--policies", "random,popular,oracle", "--out", str(out), "--plots", str(plots)])
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())
    assert set(table) == {"random", "popular", "oracle"}
    assert set(table["oracle"]) >= {"contacts", "accepted", "value", "churned", "long_term_value"}
    assert (plots / "cumulative_value.png").stat().st_size > 0
    assert (plots / "cumulative_customer_value.png").stat().st_size > 0
    bad = CliRunner().invoke(app, ["simulate-policies", "--policies", "greedy"])
    assert bad.exit_code == 2 and "unknown policy" in bad.output
    negative = CliRunner().invoke(app, ["simulate-policies", "--refit-days", "-1"])
    assert negative.exit_code == 2 and "--refit-days" in negative.output
    from cli.simulate_policies import simulate_policies  # the CLI's default is the library's

    assert inspect.signature(simulate_policies).parameters["refit_days"].default.default == DEFAULT_REFIT_DAYS
    assert inspect.signature(simulate_policies).parameters["organic_margin"].default.default == SimConfig().organic_margin
    for margin in ("-0.1", "1.5", "lots"):
        wrong = CliRunner().invoke(app, ["simulate-policies", "--organic-margin", margin])
        assert wrong.exit_code == 2 and "--organic-margin" in wrong.output


def test_oracle_uncapped_is_the_truth_without_caps() -> None:
    sim = Simulator(SimConfig(customers=50, days=5), seed=0)
    free = make_policy(TRUTH_UNCAPPED, sim, ContactPolicy(), trained=None, seed=0)
    assert free.policy.caps == {} and free.policy.arbitration.exploration.rate == 0.0
    with pytest.raises(ValueError, match="oracle_uncapped"):
        make_policy("oracle_free", sim, ContactPolicy(), trained=None, seed=0)
    for learner in ("nbo", "nbo_uncapped", "popular"):
        with pytest.raises(ValueError, match="TrainedWorld"):
            run_policy(learner, SimConfig(customers=50, days=5), 0, ContactPolicy(), trained=None)


def test_refitter_refits_on_its_own_log_only_at_period_ends(runs) -> None:
    _, trained = runs
    with pytest.raises(ValueError, match="every_days"):
        Refitter(trained, every_days=-1)
    sim = Simulator(CONFIG.model_copy(update={"days": 40}), seed=0)
    never, monthly = Refitter(trained, every_days=0), Refitter(trained, every_days=20, min_rows=100, min_positives=5)
    sim.run()  # the logging policy's contacts stand in for the policy's own log
    for day in range(1, 41):
        never.after_day(sim, day)
        monthly.after_day(sim, day)
    assert never.refits == 0 and never() is trained.model
    assert monthly.refitted_on and set(monthly.refitted_on) <= {20, 40} and monthly() is not trained.model
    assert list(monthly().feature_names_in_) == list(trained.model.feature_names_in_)


def test_refitting_policies_run_and_report_their_refits(runs) -> None:
    _, trained = runs
    result, _ = compare_policies(CONFIG, seed=0, policy=ContactPolicy(), names=["nbo", "oracle"], trained=trained,
                                 refit_days=12)
    by = {r.name: r for r in result}
    assert by["nbo"].refits >= 1 and by["oracle"].refits == 0


def test_thesis_map_compares_the_oracle_with_and_without_caps_per_world(tmp_path: Path) -> None:
    frame = thesis_map(SimConfig(customers=80, days=20), seed=1, policy=ContactPolicy(),
                       accept_fatigue=(0.45,), churn_fatigue=(1.5, 6.0), first_days=7)
    assert frame[["accept_fatigue", "churn_fatigue"]].values.tolist() == [[0.45, 1.5], [0.45, 6.0]]
    assert (frame["uncapped_contacts"] > frame["capped_contacts"]).all()
    assert (frame["break_even_margin"] >= 0).all() and (frame["break_even_margin_period"] >= 0).all()
    assert (frame["capped_value_with_organic"] > frame["capped_value"]).all()
    path = plot_thesis_map(frame, tmp_path / "map.png")
    assert path.stat().st_size > 0


def test_saved_daily_series_give_the_same_table_and_checks(runs, tmp_path: Path) -> None:
    """`bench_policies --from-daily` re-summarises a saved year: the same long-term values, and
    at margin 0 the offers-only figures."""
    from benchmarks.bench_policies import checks, from_daily

    by, _ = runs
    path = tmp_path / "year.daily.csv"
    pd.concat([r.daily.assign(policy=r.name) for r in by.values()], ignore_index=True).to_csv(path, index=False)
    again = {r.name: r for r in from_daily(path, CONFIG.organic_margin)}
    assert list(again) == list(by)
    for name, r in by.items():
        assert math.isclose(again[name].long_term_value, r.long_term_value, rel_tol=1e-9)
        assert again[name].row() == r.row()
    offers_only = {r.name: r for r in from_daily(path, 0.0)}
    assert math.isclose(offers_only["nbo"].long_term_value, by["nbo"].offer_long_term_value, rel_tol=1e-9)
    names = [name for name, _, _ in checks(list(again.values()))]
    assert names == ["beats popular", "beats random", "80% of oracle", "keeps customers", "LTV over uncapped"]


def test_truth_policies_run_without_a_logging_run() -> None:
    runs, trained = compare_policies(SimConfig(customers=40, days=8), seed=0, policy=ContactPolicy(),
                                     names=["random", "oracle_repeat_rules"])
    assert trained is None and [r.name for r in runs] == ["random", "oracle_repeat_rules"]
    result = CliRunner().invoke(app, ["simulate-policies", "--customers", "50", "--days", "7",
                                      "--policies", "oracle_fatigue_caps,oracle_uncapped"])
    assert result.exit_code == 0, result.output
    assert "propensity model" not in result.output and "oracle_fatigue_caps" in result.output
    bad = CliRunner().invoke(app, ["simulate-policies", "--policies", "oracle,nbo_fatigue"])
    assert bad.exit_code == 2 and "unknown policy 'nbo_fatigue'" in bad.output


def test_cli_offer_wearout_sets_the_world(tmp_path: Path) -> None:
    """`--offer-wearout` reaches the simulation: the uncapped oracle makes each customer's best offer
    again and again, so a world that tires of repeats strongly leaves it fewer acceptances."""
    from cli.simulate_policies import simulate_policies

    assert inspect.signature(simulate_policies).parameters["offer_wearout"].default.default == SimConfig().offer_wearout
    accepted = {}
    for wearout in ("0", "3"):
        out = tmp_path / f"w{wearout}.json"
        result = CliRunner().invoke(app, ["simulate-policies", "--customers", "80", "--days", "14", "--policies",
                                          "oracle_uncapped", "--offer-wearout", wearout, "--out", str(out)])
        assert result.exit_code == 0, result.output
        accepted[wearout] = json.loads(out.read_text())["oracle_uncapped"]["accepted"]
    assert accepted["3"] < 0.8 * accepted["0"], accepted
    for wrong in ("-0.1", "tired"):
        bad = CliRunner().invoke(app, ["simulate-policies", "--offer-wearout", wrong])
        assert bad.exit_code == 2 and "--offer-wearout" in bad.output


def test_thesis_map_of_part_of_the_rules_names_it_and_refuses_learners() -> None:
    frame = thesis_map(SimConfig(customers=60, days=14), seed=1, policy=ContactPolicy(), accept_fatigue=(0.45,),
                       churn_fatigue=(1.5,), first_days=7, capped="oracle_fatigue_caps")
    assert frame["capped_policy"].tolist() == ["oracle_fatigue_caps"]
    assert (frame["uncapped_contacts"] > frame["capped_contacts"]).all()
    for wrong in ("nbo", "nbo_fatigue_caps", TRUTH_UNCAPPED, "popular"):
        with pytest.raises(ValueError):
            thesis_map(SimConfig(customers=60, days=14), 1, ContactPolicy(), (0.45,), (1.5,), capped=wrong)


def test_bench_rules_counts_the_seeds_where_each_rule_family_pays(tmp_path: Path) -> None:
    from benchmarks.bench_rules import ORACLES, plot, summary

    rows = []
    # seed 0: the fatigue caps win the period after trailing at 28 days; seed 1: the uncapped oracle wins
    for seed, year, early in ((0, {"oracle": 90, "oracle_fatigue_caps": 120, "oracle_repeat_rules": 50,
                                   "oracle_uncapped": 100},
                               {"oracle": 5, "oracle_fatigue_caps": 8, "oracle_repeat_rules": 4, "oracle_uncapped": 10}),
                              (1, {"oracle": 90, "oracle_fatigue_caps": 95, "oracle_repeat_rules": 50,
                                   "oracle_uncapped": 100},
                               {"oracle": 5, "oracle_fatigue_caps": 12, "oracle_repeat_rules": 4, "oracle_uncapped": 10})):
        rows += [{"offer_wearout": 0.0, "seed": seed, "policy": p, "value_with_organic": year[p],
                  "first_days": early[p]} for p in ORACLES]
    lines = summary(pd.DataFrame(rows))
    assert len(lines) == 3
    assert "oracle_fatigue_caps: ahead of oracle_uncapped within the period on 1 of 2 seeds" in lines[1]
    assert lines[1].endswith("on 1") and lines[0].endswith("on 0")
    assert plot(pd.DataFrame(rows), tmp_path / "rules.png").stat().st_size > 0


def test_the_default_world_rewards_the_capped_oracle_over_a_half_year() -> None:
    """The thesis with perfect knowledge, pinned on the default world (offer wear-out on): over
    180 days the oracle under the policy's rules earns more than without them (own purchases
    counted) and keeps more customers, while the uncapped one leads after 28 days. Measured on
    seeds 0-3 at 300 x 180: ahead by 8-30 %, behind at 28 days on all four; seed 0 by 30 %. In the
    world without wear-out (the default until 2026-11-24) the capped oracle lost the year on 7
    seeds of 7 (docs/evaluation.md), so this fails if the world loses what makes caps pay."""
    runs, trained = compare_policies(SimConfig(customers=300, days=180), seed=0, policy=ContactPolicy(),
                                     names=["oracle", "oracle_uncapped"])
    capped, uncapped = (r.headline(28) for r in runs)
    assert trained is None
    assert capped["value_with_organic"] > 1.1 * uncapped["value_with_organic"], (capped, uncapped)
    assert capped["active_end"] > uncapped["active_end"] and capped["long_term_value"] > uncapped["long_term_value"]
    assert capped["first_days"] < uncapped["first_days"], (capped, uncapped)

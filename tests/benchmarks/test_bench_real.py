"""benchmarks/bench_real.py on a hand-built panel: the protocol's split, the baselines' exact
values, no look-ahead, and the contract mapping nbo reads (validated by nbo.data)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_real  # noqa: E402

from nbo.data import load_dataset  # noqa: E402


def _panel() -> bench_real.Panel:
    # household 1: a a b b a (5 occasions: last ceil(1.0) = 1 is test); household 2: b (all test);
    # household 3: a b b b b b a b b b b (11: last 3 are test)
    choices = {1: "aabba", 2: "b", 3: "abbbbbabbbb"}
    rows = []
    for hid, seq in choices.items():
        for j, c in enumerate(seq):
            rows.append({"hid": hid, "id": j + 1, "choice": c, "price.a": 1.0 + 0.1 * j, "price.b": 2.0 - 0.05 * j})
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # any row order in the file
    return bench_real.make_panel("toy", frame)


def test_split_is_each_households_last_fifth_rounded_up() -> None:
    panel = _panel()
    f = panel.frame
    assert f.groupby("hid")["test"].sum().to_dict() == {1: 1, 2: 1, 3: 3}
    assert f.loc[f["test"], "k"].groupby(f["hid"]).min().to_dict() == {1: 4, 2: 0, 3: 8}


def test_baselines_exact_values() -> None:
    panel = _panel()
    prev = bench_real.previous_choice(panel)
    freq = bench_real.most_frequent_choice(panel)
    f = panel.frame
    h1 = (f["hid"] == 1).to_numpy()
    # a a b b a: previous -> -, a, a, b, b ; most frequent (ties to the most recent) -> -, a, a, a, b
    assert prev[h1].tolist() == [-1, 0, 0, 1, 1]
    assert freq[h1].tolist() == [-1, 0, 0, 0, 1]
    assert prev[(f["hid"] == 2).to_numpy()].tolist() == [-1]
    # test occasions: h1 'a' (prev b: wrong), h2 'b' (no history: wrong), h3 b, b, b (prev b: right)
    assert bench_real.top1(panel, prev) == pytest.approx(3 / 5)
    assert bench_real.top1(panel, freq) == pytest.approx(3 / 5)


def test_history_columns_never_look_ahead() -> None:
    panel = _panel()
    X = bench_real.history_columns(panel)
    changed = panel.frame.copy()
    last = changed.index[(changed["hid"] == 3) & (changed["k"] == 10)]
    changed.loc[last, "choice"] = "a"  # the household's last choice changes
    Y = bench_real.history_columns(bench_real.Panel("toy", changed, panel.brands))
    pd.testing.assert_frame_equal(X, Y)
    h1 = X[(panel.frame["hid"] == 1).to_numpy()]
    assert h1["share_a"].tolist()[1:] == [1.0, 1.0, 2 / 3, 0.5]
    assert np.isnan(h1["share_a"].iloc[0]) and np.isnan(h1["previous_b"].iloc[0])
    assert h1["previous_b"].tolist()[1:] == [0.0, 0.0, 1.0, 1.0]


def test_contract_mapping_validates_and_aligns_the_split(tmp_path: Path) -> None:
    panel = _panel()
    bench_real.write_contract(bench_real.to_contract(panel), tmp_path)
    data = load_dataset(tmp_path)
    # Only the optional tables the panel has nothing for are absent; the prices ride on the contacts.
    assert set(data.absent_tables) == {"consents", "no_offers"}
    assert data.contacts["attr_price"].notna().all()
    assert list(data.customers.columns) == ["customer_id", "signup_ts"]
    assert sorted(data.offers["offer_id"]) == ["a", "b"]
    # one decision per occasion, every brand a candidate, the brand bought accepted
    assert len(data.contacts) == 2 * len(panel.frame)
    per_decision = data.contacts.groupby("decision_id")["outcome"].agg(lambda o: sorted(o))
    assert (per_decision.map(tuple) == ("accepted", "ignored")).all()
    accepted = data.contacts[data.contacts["outcome"] == "accepted"].set_index("decision_id")["offer_id"]
    f = panel.frame
    decision = "h" + f["hid"].astype(str) + "-" + f["id"].astype(str)
    assert (accepted.reindex(decision).to_numpy() == f["choice"].to_numpy()).all()
    # the protocol's test occasions are exactly those at or after CUT
    events = data.events.assign(decision=decision.to_numpy())  # events are written in panel order
    after = events.set_index("decision")["ts"].reindex(decision) >= bench_real.CUT
    assert (after.to_numpy() == f["test"].to_numpy()).all()
    assert (data.customers.set_index("customer_id")["signup_ts"]
            < events.groupby("customer_id")["ts"].min()).all()


def test_bench_policy_lets_the_top_expected_value_through(tmp_path: Path) -> None:
    """The policy the bench gives the engine: loads through `load_policy`, no exploration, no
    holdout, no cool-down, and no cap that a brand-choice panel could reach."""
    from serving.policy import load_policy

    path = tmp_path / "policy.toml"
    path.write_text(bench_real.BENCH_POLICY)
    policy = load_policy(path)
    assert policy.arbitration.exploration.rate == 0.0
    assert not policy.holds_out
    assert policy.cooldown.offer_days == 0 and policy.cooldown.category_days == 0
    assert policy.caps["web"].max >= 1_000_000 and policy.offer_cap.max >= 1_000_000
    assert policy.arbitration.min_expected_value < 0  # an offer worth p x 1 - 0 is never refused

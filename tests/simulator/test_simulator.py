"""The simulator's output: valid, deterministic, and with the causal structure it promises."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbo.data import load_dataset
from simulator import SimConfig, Simulator, write_simulation
from nbo.vocab import FINAL_OUTCOMES

BROWSE = ("page_view", "search", "product_view", "add_to_cart")


def _simulate(out: Path, customers: int, days: int, seed: int, fmt: str = "parquet") -> Simulator:
    sim = Simulator(SimConfig(customers=customers, days=days), seed=seed)
    sim.run()
    write_simulation(sim, out, fmt=fmt)
    return sim


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sim") / "data"
    _simulate(out, customers=2000, days=120, seed=7)
    data = load_dataset(out)
    truth = {
        "customers": pd.read_parquet(out / "truth" / "customers_truth.parquet"),
        "contacts": pd.read_parquet(out / "truth" / "contacts_truth.parquet"),
    }
    return out, data, truth


def _digests(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    a = _digests(_simulate(tmp_path / "a", 300, 60, seed=1) and tmp_path / "a")
    b = _digests(_simulate(tmp_path / "b", 300, 60, seed=1) and tmp_path / "b")
    c = _digests(_simulate(tmp_path / "c", 300, 60, seed=2) and tmp_path / "c")
    assert len(a) == 5 + 4
    assert a == b
    differing = [name for name in a if a[name] != c[name]]
    assert "events.parquet" in differing and "contacts.parquet" in differing


def test_csv_output_is_deterministic_and_valid(tmp_path: Path) -> None:
    _simulate(tmp_path / "a", 200, 40, seed=3, fmt="csv")
    _simulate(tmp_path / "b", 200, 40, seed=3, fmt="csv")
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    data = load_dataset(tmp_path / "a")
    assert len(data.events) > 0


def test_output_validates_and_keeps_the_table_rules(world) -> None:
    _, data, truth = world
    ev, co = data.events, data.contacts
    assert len(data.customers) == 2000 and len(data.offers) >= 20
    assert set(data.offers["kind"]) == {"acquisition", "cross_sell", "upsell", "retention", "loyalty"}
    purchase = ev["type"] == "purchase"
    assert (ev.loc[purchase, "amount"] > 0).all()
    assert ev.loc[~purchase, "amount"].isna().all()
    assert co["decision_id"].is_unique
    assert co["decision_id"].str.match(r"^d-7-\d{9}$").all()
    final = co["outcome"].isin(FINAL_OUTCOMES)
    assert (co.loc[final, "outcome_ts"] > co.loc[final, "ts"]).all()
    assert co.loc[~final, "outcome_ts"].isna().all()
    assert (co["outcome"] == "pending").any()
    assert set(co["outcome"]) == {"accepted", "clicked", "declined", "ignored", "pending"}
    assert (truth["contacts"]["decision_id"] == co["decision_id"]).all()
    rules = data.offers["eligibility"].dropna()
    assert 0 < len(rules) < len(data.offers) / 2
    pattern = r'^(tenure_days > \d+|lifecycle in \[("[a-z_]+"(, )?)+\])$'
    assert rules.map(lambda r: bool(re.match(pattern, r))).all()


def test_customers_behave_only_after_signup_and_not_after_churn(world) -> None:
    _, data, truth = world
    ev = data.events.merge(data.customers[["customer_id", "signup_ts"]], on="customer_id")
    assert (ev["ts"] > ev["signup_ts"]).all()
    assert (data.contacts.merge(data.customers, on="customer_id").eval("ts > signup_ts")).all()
    churn = truth["customers"][["customer_id", "churn_ts"]].dropna()
    assert len(churn) > 50
    after = ev.merge(churn, on="customer_id")
    assert len(after) > 0 and (after["ts"] < after["churn_ts"]).all()
    start = data.customers["signup_ts"].min()
    assert (data.customers["signup_ts"] < pd.Timestamp("2025-01-01")).mean() > 0.3  # spread before...
    assert (data.customers["signup_ts"] > pd.Timestamp("2025-02-01")).mean() > 0.2  # ...and during
    assert start < pd.Timestamp("2025-01-01")


def test_outbound_contacts_only_with_consent_at_that_time(world) -> None:
    _, data, _ = world
    co = data.contacts[data.contacts["channel"].isin(["email", "sms", "push"])].sort_values("ts")
    cons = data.consents.sort_values("ts").rename(columns={"ts": "consent_ts"})
    joined = pd.merge_asof(co, cons, left_on="ts", right_on="consent_ts", by=["customer_id", "channel"])
    assert len(joined) > 1000
    assert joined["granted"].fillna(False).astype(bool).all()
    assert (~data.consents["granted"]).sum() > 20  # withdrawals happen


def test_propensities_equal_one_over_the_eligible_offers(world) -> None:
    _, data, truth = world
    offers = data.offers.reset_index(drop=True)
    co = data.contacts.merge(truth["contacts"][["decision_id", "lifecycle"]], on="decision_id")
    co = co.merge(data.customers[["customer_id", "signup_ts"]], on="customer_id")
    day = co["ts"].dt.floor("D")
    tenure = ((day - co["signup_ts"]) // pd.Timedelta(days=1)).to_numpy()
    n_eligible = np.zeros(len(co), dtype=int)
    for _, offer in offers.iterrows():
        ok = (co["ts"] >= offer["valid_from"]) & (co["ts"] <= offer["valid_to"])
        ok &= co["channel"].isin(offer["channels"])
        rule = offer["eligibility"]
        if isinstance(rule, str):
            if m := re.fullmatch(r"tenure_days > (\d+)", rule):
                ok &= tenure > int(m.group(1))
            elif m := re.fullmatch(r"lifecycle in \[(.*)\]", rule):
                ok &= co["lifecycle"].isin(re.findall(r'"([a-z_]+)"', m.group(1)))
            else:
                raise AssertionError(f"unexpected rule {rule!r}")
        n_eligible += ok.to_numpy()
    assert (n_eligible > 0).all()
    np.testing.assert_allclose(co["propensity"].to_numpy(), 1.0 / n_eligible)
    assert co["propensity"].nunique() > 3


def test_affinity_to_the_offer_category_raises_acceptance(world) -> None:
    _, data, truth = world
    co = data.contacts[data.contacts["outcome"] != "pending"].merge(data.offers[["offer_id", "category"]], on="offer_id")
    aff = truth["customers"].set_index("customer_id")
    cols = aff.columns.get_indexer("affinity_" + co["category"])
    rows = aff.index.get_indexer(co["customer_id"])
    co["affinity"] = aff.to_numpy()[rows, cols].astype(float)
    accepted = co["outcome"] == "accepted"
    high = co["affinity"] >= co["affinity"].quantile(0.75)
    low = co["affinity"] <= co["affinity"].quantile(0.25)
    assert accepted.sum() > 300
    assert accepted[high].mean() > 3 * accepted[low].mean()


def test_heavily_contacted_customers_churn_more(world) -> None:
    _, data, truth = world
    ct = truth["customers"]
    per_customer = data.contacts.groupby("customer_id").size().reindex(ct["customer_id"], fill_value=0)
    ct = ct.assign(contacts=per_customer.to_numpy())
    churned = ct["churn_ts"].notna()
    top = ct["contact_intensity"] >= ct["contact_intensity"].quantile(0.75)
    bottom = ct["contact_intensity"] <= ct["contact_intensity"].quantile(0.25)
    assert ct.loc[top, "contacts"].mean() > 3 * ct.loc[bottom, "contacts"].mean()
    assert churned[top].mean() > 1.5 * churned[bottom].mean()


def test_purchases_follow_browsing_of_the_same_category(world) -> None:
    _, data, _ = world
    ev = data.events.dropna(subset=["category"])
    buys = ev[ev["type"] == "purchase"][["customer_id", "ts", "category"]].reset_index(drop=True)
    browse = ev[ev["type"].isin(BROWSE)][["customer_id", "ts", "category"]]
    cats = sorted(ev["category"].unique())
    shifted = buys.assign(category=buys["category"].map(lambda c: cats[(cats.index(c) + 3) % len(cats)]))

    def preceded(purchases: pd.DataFrame) -> float:
        j = purchases.reset_index().merge(browse, on=["customer_id", "category"], suffixes=("", "_b"))
        j = j[(j["ts_b"] < j["ts"]) & (j["ts_b"] >= j["ts"] - pd.Timedelta(days=7))]
        return j["index"].nunique() / len(purchases)

    same, other = preceded(buys), preceded(shifted)
    assert len(buys) > 1000
    assert same > 0.5 and same > 2 * other


def test_accepted_offers_produce_a_purchase_in_their_category(world) -> None:
    _, data, _ = world
    acc = data.contacts[data.contacts["outcome"] == "accepted"].merge(data.offers[["offer_id", "category"]], on="offer_id")
    buys = data.events[data.events["type"] == "purchase"]
    j = acc.merge(buys, on=["customer_id", "category"], suffixes=("", "_e"))
    j = j[(j["ts_e"] > j["outcome_ts"]) & (j["ts_e"] <= j["outcome_ts"] + pd.Timedelta(minutes=10))]
    assert j["decision_id"].nunique() == len(acc)


def test_recent_browsing_of_the_offer_category_raises_acceptance(world) -> None:
    """Within strata of latent affinity (browsing follows affinity), browsing still raises it."""
    _, data, truth = world
    co = data.contacts[data.contacts["outcome"] != "pending"].merge(data.offers[["offer_id", "category"]], on="offer_id")
    co = co.reset_index(drop=True)
    aff = truth["customers"].set_index("customer_id")
    co["affinity"] = aff.to_numpy()[aff.index.get_indexer(co["customer_id"]), aff.columns.get_indexer("affinity_" + co["category"])].astype(float)
    browse = data.events[data.events["type"].isin(BROWSE)][["customer_id", "ts", "category"]]
    j = co.reset_index().merge(browse, on=["customer_id", "category"], suffixes=("", "_b"))
    j = j[(j["ts_b"] < j["ts"]) & (j["ts_b"] >= j["ts"] - pd.Timedelta(days=3))]
    co["browsed"] = co.index.isin(j["index"].unique())
    co["accepted"] = co["outcome"] == "accepted"
    co["stratum"] = pd.qcut(co["affinity"], 5, labels=False, duplicates="drop")
    rates = co.groupby(["stratum", "browsed"])["accepted"].mean().unstack()
    top = rates.index.max()
    assert co["browsed"].sum() > 300
    assert rates.loc[top, True] > 1.5 * rates.loc[top, False]


def test_organic_amount_counts_the_purchases_no_offer_prompted() -> None:
    """`DayResult.organic_amount` is what customers buy on their own: every purchase when nobody is
    contacted, less than every purchase when accepted offers add theirs."""
    from simulator import no_contact
    from simulator.config import EV

    cfg = SimConfig(customers=300, days=30)
    quiet = Simulator(cfg, seed=3)
    quiet.run(policy=no_contact)
    log = quiet.event_log()

    buys = log.type == EV["purchase"]
    assert buys.sum() > 50
    assert quiet.daily()["organic_amount"].sum() == pytest.approx(float(log.amount[buys].sum()))

    busy = Simulator(cfg, seed=3)
    busy.run()
    log = busy.event_log()
    daily = busy.daily()
    assert daily["accepted"].sum() > 0
    assert 0 < daily["organic_amount"].sum() < float(log.amount[log.type == EV["purchase"]].sum())


def test_offer_wear_out_lowers_acceptance_of_offers_shown_recently() -> None:
    """With `offer_wearout` w, each decayed showing of an offer costs w on the acceptance logit of
    that offer for that customer only; a world without wear-out keeps no memory of offers shown."""
    from simulator.truth import accept_probability

    default = Simulator(SimConfig(customers=50, days=5), seed=1)
    assert SimConfig().offer_wearout > 0 and default.state.offer_seen.shape == (50, default.catalogue.n)
    assert Simulator(SimConfig(customers=50, days=5, offer_wearout=0), seed=1).state.offer_seen.shape == (50, 0)
    cfg = SimConfig(customers=300, days=10, offer_wearout=0.5, offer_memory_decay=0.9)
    sim = Simulator(cfg, seed=1)
    sim.step()
    log = sim.contact_log()
    shown = np.zeros_like(sim.state.offer_seen)
    np.add.at(shown, (log.customer, log.offer), 1.0)
    np.testing.assert_allclose(sim.state.offer_seen, shown)  # day 0's showings, not decayed yet
    sim.step()
    log = sim.contact_log()
    today = log.ts >= 86_400
    expected = shown * 0.9
    np.add.at(expected, (log.customer[today], log.offer[today]), 1.0)
    np.testing.assert_allclose(sim.state.offer_seen, expected, rtol=1e-6)

    c, o = int(log.customer[0]), int(log.offer[0])
    other = (o + 1) % sim.state.offer_seen.shape[1]
    channel = np.array([int(log.channel[0])])

    def p(offer: int) -> float:
        return float(accept_probability(cfg, sim.population, sim.state, sim.catalogue, np.array([c]),
                                        np.array([offer]), channel)[0])

    seen, before_other = float(sim.state.offer_seen[c, o]), p(other)
    with_memory = p(o)
    sim.state.offer_seen[c, o] = 0.0
    fresh = p(o)
    assert seen > 0 and fresh > with_memory and p(other) == before_other

    def logit(q: float) -> float:
        return float(np.log(q / (1 - q)))

    assert logit(fresh) - logit(with_memory) == pytest.approx(0.5 * seen, rel=1e-5)


def test_uniform_choice_picks_only_allowed_columns_evenly() -> None:
    from simulator.policies import uniform_choice

    mask = np.array([[False, True, False, True, True]] * 30_000 + [[False, False, True, False, False]])
    picks = uniform_choice(mask, np.random.default_rng(0))
    assert picks[-1] == 2 and set(picks[:-1]) == {1, 3, 4}
    np.testing.assert_allclose(np.bincount(picks[:-1], minlength=5)[[1, 3, 4]] / 30_000, 1 / 3, atol=0.01)

"""The universal control group and randomised "no offer" (issue 21 item 2): stable membership,
never contacted online or in batch, every decision without contact logged with its propensity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from features import read_materialised
from nbo.contract import NO_OFFERS
from nbo.control import control_unit, in_control
from nbo.errors import ConfigError
from nbo.validation import validate_frame
from serving.decision import REASON_INDEX, BlockResult
from serving.engine import DecisionEngine
from serving.holdout import hold_out
from serving.policy import parse_policy
from tests.serving.test_engine import NOW, World, build_world

runner = CliRunner()
SHARE, RATE = 0.3, 0.2
HOLDOUT_POLICY = f"""
[arbitration.exploration]
rate = 0.0
no_offer_rate = {RATE}
[control_group]
share = {SHARE}
channels = ["email", "sms"]
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory)


def _engine(world: World, tmp_path: Path, policy_text: str, name: str) -> DecisionEngine:
    policy = tmp_path / f"{name}.toml"
    policy.write_text(policy_text)
    engine = DecisionEngine.from_settings(world.settings(tmp_path / f"{name}.db", policy_path=policy))
    assert engine.models is not None, engine.models_error
    return engine


# ----------------------------------------------------------------------------- membership
def test_control_group_is_a_stable_random_share_of_ids() -> None:
    ids = [f"c{i:07d}" for i in range(20_000)]
    member = in_control(ids, 0.1)
    assert abs(member.mean() - 0.1) < 0.01
    again = in_control(list(reversed(ids)), 0.1)[::-1]
    assert np.array_equal(member, again)  # by id, whatever the order or the block
    assert np.array_equal(member[:5], [control_unit(c) < 0.1 for c in ids[:5]])
    assert (in_control(ids, 0.2) | ~member).all()  # a larger share keeps the smaller one's members
    assert not np.array_equal(member, in_control(ids, 0.1, salt="other"))
    assert not in_control(ids, 0.0).any()


# ----------------------------------------------------------------------------- bad policies
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[control_group]\nshare = 0.7", "key 'control_group.share': Input should be less than or equal to 0.5"),
        ("[control_group]\nshare = -0.1", "key 'control_group.share'"),
        ('[control_group]\nshare = 0.1\nchannels = ["email", "web"]', "control_group.channels: 'web' needs no consent"),
        ('[control_group]\nshare = 0.1\nchannels = ["mail"]', "control_group.channels: 'mail' needs no consent"),
        ('[control_group]\nshare = 0.05\nchannels = ["app"]', "control_group.channels: 'app' needs no consent"),
        ('[consent]\nopt_in_channels = ["email"]\n[control_group]\nshare = 0.05', "'sms' needs no consent"),
        ("[arbitration.exploration]\nno_offer_rate = 1.5", "key 'arbitration.exploration.no_offer_rate'"),
    ],
)
def test_a_bad_control_group_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text, "policy.toml")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_score_refuses_a_bad_control_group_and_writes_nothing(world: World, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[control_group]\nshare = 0.2\nchannels = ["web"]\n')
    before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(app, ["score", "--data", str(world.data), "--features", str(world.features),
                                 "--tracking-uri", world.tracking_uri, "--as-of", NOW.isoformat(), "--channel", "email",
                                 "--out", str(tmp_path / "o.parquet"), "--store", str(tmp_path / "c.db"),
                                 "--policy", str(policy), "--campaign", "x", "--no-progress"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'web' needs no consent" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ----------------------------------------------------------------------------- the pure step
def test_hold_out_on_a_hand_made_block() -> None:
    policy = parse_policy(HOLDOUT_POLICY)
    ids = [f"c{i:07d}" for i in range(400)]
    control = in_control(ids, SHARE)
    n, m = len(ids), 3
    picks = np.zeros((n, 1), dtype=np.int64)
    picks[::4] = -1  # every fourth customer has nothing to be offered
    block = BlockResult(np.arange(m), picks, np.where(picks >= 0, 0.9, 0.0), np.zeros((n, 1), dtype=bool),
                        np.zeros((n, m)), np.zeros((n, m), dtype=np.int8))
    seeds = np.arange(n, dtype=np.uint64) * 7919
    out = hold_out(block, policy, ids, "email", seeds)
    had = picks[:, 0] >= 0
    assert (out.picks[control] == -1).all()
    assert (out.held[control] == REASON_INDEX["control_group"]).all()
    assert (out.reason[control & had] == REASON_INDEX["control_group"]).all()
    explored = out.held == REASON_INDEX["explore_no_offer"]
    assert not (explored & (control | ~had)).any()
    assert 0.1 < explored[~control & had].mean() < 0.3  # the no-offer rate, 0.2
    expected_none = np.where(had, SHARE + (1 - SHARE) * RATE, 1.0)
    assert np.allclose(out.p_none, expected_none)
    kept = out.picks[:, 0] >= 0
    assert np.allclose(out.propensity[kept, 0], 0.9 * (1 - SHARE) * (1 - RATE))
    # On a channel the group does not hold, only the no-offer draw empties rows: the same draws.
    web = hold_out(block, policy, ids, "web", seeds)
    assert not (web.held == REASON_INDEX["control_group"]).any()
    assert np.allclose(web.p_none, np.where(had, RATE, 1.0))
    # Without holdouts the block is unchanged.
    plain = hold_out(block, parse_policy(""), ids, "email", seeds)
    assert np.array_equal(plain.picks, picks) and np.array_equal(plain.propensity, block.propensity)


# ----------------------------------------------------------------------------- online
def test_control_customers_are_never_contacted_online(world: World, tmp_path: Path) -> None:
    held = _engine(world, tmp_path, HOLDOUT_POLICY, "held")
    plain = _engine(world, tmp_path, "[arbitration.exploration]\nrate = 0.0\n", "plain")
    try:
        ids = list(held.features.index[:300])
        control = in_control(ids, SHARE)
        counts = {"control": 0, "explore": 0, "offer": 0}
        for cid, member in zip(ids, control, strict=True):
            d = held.decide(cid, "email", now=NOW, k=1, reserve=True, decision_id=f"h-{cid}")
            ref = plain.decide(cid, "email", now=NOW, k=1, reserve=False)
            reasons = {s.reason for s in d.suppressed}
            if member:
                assert d.offers == []
                if ref.offers:
                    assert "control_group" in reasons
                    assert d.slate_propensity == pytest.approx(SHARE + (1 - SHARE) * RATE)
                    counts["control"] += 1
                else:
                    assert d.slate_propensity == 1.0
            elif not d.offers and ref.offers:
                assert "explore_no_offer" in reasons
                assert d.slate_propensity == pytest.approx(SHARE + (1 - SHARE) * RATE)
                counts["explore"] += 1
            elif d.offers:
                assert d.offers[0].offer_id == ref.offers[0].offer_id
                assert d.offers[0].propensity == pytest.approx(ref.offers[0].propensity * (1 - SHARE) * (1 - RATE))
                counts["offer"] += 1
            # the store never recorded a contact for a control customer
            if member:
                assert all(c["decision_id"] != f"h-{cid}" for c in held.store.export(cid)["contacts"])
            # every decision is in the store's log; one without contact with why and its propensity
            logged = {r["decision_id"]: r for r in held.store.export(cid)["decisions"]}[f"h-{cid}"]
            if d.offers:
                assert logged["no_offer"] is None and logged["no_offer_propensity"] is None
            else:
                expected = ("control" if "control_group" in reasons else "explore" if "explore_no_offer" in reasons
                            else "policy")
                assert logged["no_offer"] == expected
                assert logged["no_offer_propensity"] == pytest.approx(d.slate_propensity)
        assert min(counts.values()) > 5, counts
        # on the web (not held by the group) control customers get offers as anyone does
        web = [held.decide(c, "web", now=NOW, k=1, reserve=False) for c, mb in zip(ids, control, strict=True) if mb]
        assert any(d.offers for d in web)
    finally:
        held.close()
        plain.close()


# ----------------------------------------------------------------------------- batch
def test_batch_never_contacts_the_control_group_and_logs_no_offers(world: World, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(HOLDOUT_POLICY)
    out = tmp_path / "offers.parquet"
    result = runner.invoke(app, ["score", "--data", str(world.data), "--features", str(world.features),
                                 "--tracking-uri", world.tracking_uri, "--as-of", NOW.isoformat(), "--channel", "email",
                                 "--out", str(out), "--store", str(tmp_path / "c.db"), "--policy", str(policy),
                                 "--campaign", "holdout-1", "--no-progress", "--chunk-size", "400"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    offers = pd.read_parquet(out)
    none = validate_frame(NO_OFFERS, pd.read_parquet(tmp_path / "offers.no_offers.parquet"))
    assert summary["no_offers"] == len(none)
    scored = set(offers["customer_id"]) | set(none["customer_id"])
    assert len(scored) == summary["customers_scored"]
    assert not set(offers["customer_id"]) & set(none["customer_id"])
    members = set(np.array(sorted(scored))[in_control(sorted(scored), SHARE)])
    assert members and not members & set(offers["customer_id"])
    control = none[none["reason"] == "control"]
    assert set(control["customer_id"]) == members
    assert set(control["propensity"].round(12)) <= {round(SHARE + (1 - SHARE) * RATE, 12), 1.0}
    explore = none[none["reason"] == "explore"]
    assert len(explore) > 0 and np.allclose(explore["propensity"], SHARE + (1 - SHARE) * RATE)
    assert (none["channel"] == "email").all() and (none["ts"] == pd.Timestamp(NOW)).all()
    # offers made carry the probability that an offer was made at all
    assert (offers["propensity"] <= (1 - SHARE) * (1 - RATE) + 1e-12).all()


def test_batch_and_online_hold_out_the_same_decisions(world: World, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(HOLDOUT_POLICY)
    frame_ids = list(read_materialised(world.features)[0].index[:120])
    listing = tmp_path / "ids.csv"
    pd.DataFrame({"customer_id": frame_ids}).to_csv(listing, index=False)
    out = tmp_path / "b.parquet"
    result = runner.invoke(app, ["score", "--data", str(world.data), "--features", str(world.features),
                                 "--tracking-uri", world.tracking_uri, "--as-of", NOW.isoformat(), "--channel", "email",
                                 "--out", str(out), "--store", str(tmp_path / "b.db"), "--policy", str(policy),
                                 "--customers", str(listing), "--dry-run", "--no-progress", "--chunk-size", "37"])
    assert result.exit_code == 0, result.output
    batch_none = pd.read_parquet(tmp_path / "b.no_offers.parquet").set_index("customer_id")
    batch_offers = pd.read_parquet(out).set_index("customer_id")
    engine = _engine(world, tmp_path, HOLDOUT_POLICY, "online")
    try:
        for cid in frame_ids:
            d = engine.decide(cid, "email", now=NOW, k=1, reserve=False)
            if d.offers:
                assert batch_offers.loc[cid, "offer_id"] == d.offers[0].offer_id
                assert batch_offers.loc[cid, "propensity"] == d.offers[0].propensity
            else:
                assert batch_none.loc[cid, "propensity"] == d.slate_propensity
    finally:
        engine.close()

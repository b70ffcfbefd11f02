"""Programmes on a simulated event stream (issue 22 item 4), in process: a real engine over the
simulated world of test_engine.py (trained champions, SQLite store file). A programme fires one
outbox row per trigger; the pipeline's caps, quiet hours, consent and control group decide it;
a complaint pauses it; a repeated event or sweep fires nothing twice."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from nbo.control import in_control
from serving.contact_store.base import LiveEvent, to_epoch
from serving.engine import DecisionEngine
from tests.serving.test_engine import NOW, World, build_world

BASE = """
[arbitration.exploration]
rate = 0.0
[[programmes]]
name = "search-follow-up"
channels = ["email"]
trigger = { kind = "event", type = "search" }
[[programmes]]
name = "welcome"
channels = ["email"]
trigger = { kind = "lifecycle", to = "first_purchase" }
[[programmes]]
name = "browse-abandon"
channels = ["email"]
trigger = { kind = "browse_without_purchase", hours = 2, categories = ["travel"] }
"""


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The simulated world of test_engine.py (built once per session)."""
    return build_world(tmp_path_factory)


def _engine(world: World, tmp_path: Path, extra: str = "",
            settings: str = "complaint_pause_hours = 48\nsend_hour = \"now\"") -> DecisionEngine:
    policy = tmp_path / "policy.toml"
    policy.write_text(BASE + extra + "\n[programme_settings]\n" + settings + "\n")
    eng = DecisionEngine.from_settings(world.settings(tmp_path / "contacts.db", policy_path=policy, compile_models=False))
    assert eng.models is not None, eng.models_error
    return eng


@pytest.fixture
def engine(world: World, tmp_path: Path):  # noqa: ANN201, F811
    eng = _engine(world, tmp_path)
    yield eng
    eng.close()


def _emailable(engine: DecisionEngine, n: int, start: int = 0) -> list[str]:
    """Customers who get an e-mail offer now (consent, caps and a paying offer)."""
    out = []
    for cid in engine.features.index[start:]:
        if engine.decide(cid, "email", None, NOW, k=1, reserve=False).offers:
            out.append(cid)
            if len(out) == n:
                return out
    pytest.fail("not enough customers with an e-mail offer")


def _event(cid: str, i: int, kind: str, at: datetime, category: str | None = "travel") -> LiveEvent:
    return LiveEvent(f"{cid}-{kind}-{i}", cid, to_epoch(at), kind, "web", category, None,
                     50.0 if kind == "purchase" else None)


def _rows(engine: DecisionEngine, status: str | None = None) -> list:
    return engine.store.outbox_page(status, None, 0, 10_000)


def test_one_outbox_row_per_trigger_and_the_caps_decide(engine: DecisionEngine) -> None:
    [cid] = _emailable(engine, 1)
    searches = [_event(cid, i, "search", NOW - timedelta(minutes=10 - i)) for i in range(4)]
    engine.ingest_events(searches[:1], NOW)
    [row] = _rows(engine)
    assert (row.programme, row.customer_id, row.status, row.channel) == ("search-follow-up", cid, "pending", "email")
    assert row.scheduled == to_epoch(NOW) and row.offer_id and row.decision_id
    # the send is a contact like any other: reserved in the store under the row's decision id
    assert {r["decision_id"] for r in engine.store.contact_rows(cid)} == {row.decision_id}
    # the same event again (a retry): recorded before, fires nothing
    engine.ingest_events(searches[:1], NOW)
    assert len(_rows(engine)) == 1
    # three more searches: one row each; the e-mail cap (2 in 7 days) lets one more through
    engine.ingest_events(searches[1:], NOW)
    rows = _rows(engine)
    assert len(rows) == 4
    assert [r.status for r in rows] == ["pending", "pending", "none", "none"]
    assert all(r.reason == "email: cap_channel" for r in rows[2:])
    assert len({r["decision_id"] for r in engine.store.contact_rows(cid)}) == 2


def test_a_first_purchase_fires_the_welcome_once(engine: DecisionEngine) -> None:
    never = engine.features.index[engine.features["purchases_total"] == 0].tolist()
    candidates = [c for c in never[:200] if engine.decide(c, "email", None, NOW, k=1, reserve=False).offers]
    assert candidates, "no customer without a purchase gets an e-mail offer"
    cid = candidates[0]
    engine.ingest_events([_event(cid, 0, "purchase", NOW - timedelta(minutes=5))], NOW)
    engine.ingest_events([_event(cid, 1, "purchase", NOW - timedelta(minutes=1))], NOW)
    welcome = [r for r in _rows(engine) if r.programme == "welcome"]
    assert [(r.customer_id, r.status) for r in welcome] == [(cid, "pending")]
    # a repeat buyer's purchase welcomes nobody
    [buyer] = engine.features.index[engine.features["purchases_total"] >= 3][:1].tolist()
    engine.ingest_events([_event(buyer, 0, "purchase", NOW - timedelta(minutes=1))], NOW)
    assert not [r for r in _rows(engine) if r.programme == "welcome" and r.customer_id == buyer]


def test_a_complaint_pauses_programmes_for_the_configured_hours(engine: DecisionEngine) -> None:
    cid, other = _emailable(engine, 2)
    t = NOW - timedelta(minutes=30)
    engine.ingest_events([_event(cid, 0, "complaint", t, None), _event(cid, 1, "search", t + timedelta(minutes=1))], NOW)
    engine.ingest_events([_event(other, 1, "search", t + timedelta(minutes=1))], NOW)
    rows = {r.customer_id: r for r in _rows(engine)}
    assert (rows[cid].status, rows[cid].reason) == ("none", "complaint_pause")
    assert rows[other].status == "pending"
    assert engine.store.contact_rows(cid) == []  # nothing reserved for the paused customer
    # after the 48 h pause, a search fires again
    later = t + timedelta(hours=49)
    engine.ingest_events([_event(cid, 2, "search", later)], later)
    assert [r.status for r in _rows(engine) if r.customer_id == cid] == ["none", "pending"]


def test_quiet_hours_schedule_the_send_after_them(world: World, tmp_path: Path) -> None:
    eng = _engine(world, tmp_path, '[quiet_hours]\nchannels = ["email", "sms", "push"]\nstart = "21:00"\nend = "08:00"\n')
    try:
        [cid] = _emailable(eng, 1)
        night = NOW.replace(hour=22, minute=30)  # the evening of the test day
        eng.ingest_events([_event(cid, 0, "search", night - timedelta(minutes=1))], night)
        [row] = _rows(eng)
        morning = (night + timedelta(days=1)).replace(hour=8, minute=0)
        assert row.status == "pending" and row.scheduled == to_epoch(morning)
        assert not eng.policy.quiet_hours.is_quiet("email", morning)
        # the contact is reserved at the send time, not in the quiet hours
        [contact] = eng.store.contact_rows(cid)
        assert contact["ts"] == morning
    finally:
        eng.close()


def test_the_control_group_gets_no_send(world: World, tmp_path: Path) -> None:
    eng = _engine(world, tmp_path, '[control_group]\nshare = 0.5\nchannels = ["email"]\n')
    try:
        ids = eng.features.index[:400].tolist()
        control = dict(zip(ids, in_control(ids, 0.5, eng.policy.control_group.salt), strict=True))
        # the pipeline's answer without the group: customers who would get an e-mail offer
        def reachable(c: str) -> bool:  # an offer, or one the control group held back
            d = eng.decide(c, "email", None, NOW, k=1, reserve=False)
            return bool(d.offers) or any(x.reason == "control_group" for x in d.suppressed)

        reach = [c for c in ids if reachable(c)]
        held = [c for c in reach if control[c]][:5]
        free = [c for c in reach if not control[c]][:5]
        assert len(held) == 5 and len(free) == 5
        eng.ingest_events([_event(c, 0, "search", NOW - timedelta(minutes=2)) for c in held + free], NOW)
        rows = {r.customer_id: r for r in _rows(eng)}
        assert {c for c, r in rows.items() if r.status == "pending"} == set(free)
        assert all(rows[c].status == "none" and rows[c].reason == "email: control_group" for c in held)
        assert all(eng.store.contact_rows(c) == [] for c in held)
    finally:
        eng.close()


def test_the_sweep_fires_browse_without_purchase_once(engine: DecisionEngine, world: World) -> None:
    from nbo.data import load_dataset
    from serving.programmes import sweep

    browser, buyer, elsewhere = _emailable(engine, 3)
    t = NOW - timedelta(minutes=30)
    engine.ingest_events([_event(browser, 0, "product_view", t), _event(buyer, 0, "product_view", t),
                          _event(buyer, 1, "purchase", t + timedelta(minutes=5)),
                          _event(elsewhere, 0, "product_view", t, "books")], NOW)
    data = load_dataset(world.data)
    mine = {browser, buyer, elsewhere}

    def browse(rows: list) -> list:  # noqa: ANN001
        return [(r.customer_id, r.status) for r in rows if r.programme == "browse-abandon" and r.customer_id in mine]

    assert browse(sweep(engine, data, t + timedelta(hours=1))) == []  # not 2 hours yet
    assert browse(sweep(engine, data, t + timedelta(hours=3))) == [(browser, "pending")]
    assert browse(sweep(engine, data, t + timedelta(hours=4))) == []  # fired once
    assert browse(_rows(engine)) == [(browser, "pending")]


def test_the_sweep_fires_the_drift_to_at_risk(world: World, tmp_path: Path) -> None:
    from features import build_customer_features
    from nbo.data import load_dataset
    from serving.programmes import sweep

    eng = _engine(world, tmp_path, '[[programmes]]\nname = "win-back"\nchannels = ["email", "mail"]\n'
                  'trigger = { kind = "lifecycle", to = "at_risk" }\n',
                  settings="sweep_lookback_hours = 168")
    try:
        data = load_dataset(world.data)
        at = pd.Timestamp(NOW)
        before = build_customer_features(data, at - pd.Timedelta(hours=168))["lifecycle"]
        after = build_customer_features(data, at)["lifecycle"]
        drifted = set(after.index[(after == "at_risk") & (before.reindex(after.index) != "at_risk")])
        assert drifted, "nobody drifts to at-risk in the world's last week"
        fired = sweep(eng, data, NOW)
        assert {r.customer_id for r in fired if r.programme == "win-back"} == drifted
        again = sweep(eng, data, NOW + timedelta(hours=1))
        assert not [r for r in again if r.programme == "win-back" and r.customer_id in drifted]  # fired once
    finally:
        eng.close()


def test_programmes_are_off_unless_configured(world: World, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[arbitration.exploration]\nrate = 0.0\n")
    eng = DecisionEngine.from_settings(world.settings(tmp_path / "contacts.db", policy_path=policy, compile_models=False))
    try:
        cid = eng.features.index[0]
        eng.ingest_events([_event(cid, 0, "search", NOW - timedelta(minutes=1))], NOW)
        assert _rows(eng) == [] and eng.store.contact_rows(cid) == []
    finally:
        eng.close()


def test_a_complaint_cancels_pending_sends_within_the_pause(engine: DecisionEngine, world: World) -> None:
    from nbo.data import load_dataset
    from serving.programmes import sweep

    cid, other, third = _emailable(engine, 3)
    t = NOW - timedelta(minutes=30)
    engine.ingest_events([_event(c, 0, "search", t) for c in (cid, other, third)], NOW)
    assert {r.customer_id for r in _rows(engine, "pending")} == {cid, other, third}
    # through POST /events' path: the complaint cancels the customer's pending send at once
    engine.ingest_events([_event(cid, 1, "complaint", t + timedelta(minutes=5), None)], NOW)
    [cancelled] = _rows(engine, "cancelled")
    assert (cancelled.customer_id, cancelled.reason) == (cid, "complaint_pause")
    assert {r.customer_id for r in _rows(engine, "pending")} == {other, third}
    # recorded without firing (`nbo ingest` without a policy): the sweep cancels it
    engine.store.append_events([_event(other, 1, "complaint", t + timedelta(minutes=6), None)])
    sweep(engine, load_dataset(world.data), NOW + timedelta(minutes=1))
    assert {r.customer_id for r in _rows(engine, "cancelled")} == {cid, other}
    assert [r.customer_id for r in _rows(engine, "pending") if r.customer_id in (cid, other, third)] == [third]


def _count_feature_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count `build_customer_features` calls made by the programmes and the live rows."""
    import serving.live
    import serving.programmes

    calls = [0]
    real = serving.programmes.build_customer_features

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(serving.programmes, "build_customer_features", counted)
    monkeypatch.setattr(serving.live, "build_customer_features", counted)
    return calls


def test_a_posted_purchase_computes_the_customers_row_once_for_stage_and_decision(
        engine: DecisionEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    never = engine.features.index[engine.features["purchases_total"] == 0].tolist()
    cid = next(c for c in never[:200] if engine.decide(c, "email", None, NOW, k=1, reserve=False).offers)
    calls = _count_feature_builds(monkeypatch)
    engine.ingest_events([_event(cid, 0, "purchase", NOW - timedelta(minutes=5))], NOW)
    [welcome] = [r for r in _rows(engine) if r.programme == "welcome"]
    assert (welcome.customer_id, welcome.status) == (cid, "pending")
    # the stage before the purchase, and the row after it: the decision at NOW reuses the latter
    assert calls[0] == 2


def test_the_in_service_sweep_computes_the_stages_once_per_run(world: World, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from nbo.data import load_dataset
    from serving.programmes import periodic_sweep, sweep

    extra = '[[programmes]]\nname = "win-back"\nchannels = ["email", "mail"]\ntrigger = { kind = "lifecycle", to = "at_risk" }\n'
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    eng = _engine(world, tmp_path / "a", extra, settings="sweep_lookback_hours = 168")
    ref = _engine(world, tmp_path / "b", extra, settings="sweep_lookback_hours = 168")
    try:
        data = load_dataset(world.data)
        expected = sweep(ref, data, NOW - timedelta(hours=24)) + sweep(ref, data, NOW)
        calls = _count_feature_builds(monkeypatch)
        run = periodic_sweep(eng)
        got = run(NOW - timedelta(hours=24))
        assert calls[0] == 2  # first run: the stages a lookback ago, and now
        got += run(NOW)
        assert calls[0] == 3  # next run: from the stages of the previous one
        assert sorted((r.trigger_key, r.status) for r in got) == sorted((r.trigger_key, r.status) for r in expected)
        assert any(r.programme == "win-back" for r in got)
    finally:
        eng.close()
        ref.close()


@pytest.mark.parametrize("unit", ["ns", "us", "s"])
def test_browse_triggers_read_event_times_in_any_unit(unit: str) -> None:
    """Events built from Python datetimes hold microseconds under pandas 3: the browse still fires
    once, two hours after it, and not for the customer who bought the category since."""
    from serving.policy import active_programmes, parse_policy
    from serving.programmes import browse_occurrences

    programmes = active_programmes(parse_policy(BASE))
    t = NOW - timedelta(hours=3)
    events = pd.DataFrame({
        "customer_id": ["c1", "c2", "c2"], "type": ["product_view", "product_view", "purchase"],
        "category": ["travel", "travel", "travel"],
        "ts": pd.Series([t, t, t + timedelta(minutes=5)]).astype(f"datetime64[{unit}]"),
    })
    fired = browse_occurrences(programmes, events, NOW, timedelta(hours=2))
    assert [(o.programme.name, o.customer_id) for o in fired] == [("browse-abandon", "c1")]
    assert browse_occurrences(programmes, events, NOW, timedelta(minutes=30)) == []  # due an hour ago

"""The arbiter: every reason code, expected value, exploration propensities, and properties over
random policies, catalogues and sequences of decisions and feedback (SQLite and Redis)."""

from __future__ import annotations

import itertools
import math
import threading
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.contact_store import ConsentBook, ContactHistory, SQLiteContactStore
from serving.contact_store.base import DAY, to_epoch
from serving.policy import ContactPolicy, parse_policy
from serving.decision import REASON_CODES, Candidate
from serving.catalogue import compile_offer_rules
from serving.ranking import Arbiter
from serving.reservation import ContactDesk
from serving.rules import CONTEXT_NAMES
from tests.serving.helpers import make_offers, max_in_window

FEATURES = {"tenure_days", "lifecycle"}
T0 = datetime(2026, 3, 2, 12, 0)


def arbiter_for(offers, store, policy=None):
    """The arbiter with its contact desk: `decide` reads the history, arbitrates and reserves."""
    policy = policy or ContactPolicy()
    return ContactDesk(Arbiter(policy, offers, compile_offer_rules(offers, FEATURES)), store)


# ----------------------------------------------------------------------------- reason codes


def test_each_rule_drops_with_its_reason_code(make_store) -> None:
    store = make_store()
    offers = make_offers(
        [
            {"offer_id": "ok", "category": "a", "value": 10.0},
            {"offer_id": "expired", "category": "b", "valid_to": "2026-01-01"},
            {"offer_id": "future", "category": "b", "valid_from": "2026-04-01"},
            {"offer_id": "sms-only", "category": "c", "channels": ("sms",)},
            {"offer_id": "old-timers", "category": "d", "eligibility": "tenure_days > 365"},
            {"offer_id": "cheap", "category": "e", "value": 1.0, "cost": 5.0},
            {"offer_id": "same-cat", "category": "a", "value": 5.0},
        ]
    )
    arb = arbiter_for(offers, store)
    scores = {o: 0.5 for o in offers["offer_id"]} | {"ghost": 0.5}
    scores["bad"] = 0.5
    d = arb.decide("c1", "web", T0, [*(Candidate(o, p) for o, p in scores.items()), Candidate("ok", float("nan"))],
                   {"tenure_days": 40}, k=3, rng=0)
    assert [o.offer_id for o in d.offers] == ["ok"]
    assert {s.offer_id: s.reason for s in d.suppressed} == {
        "ghost": "unknown_offer",
        "bad": "unknown_offer",
        "expired": "validity",
        "future": "validity",
        "sms-only": "channel",
        "old-timers": "eligibility",
        "cheap": "min_value",
        "same-cat": "diversity",
    }
    assert {s.reason for s in d.suppressed} <= set(REASON_CODES)


def test_decision_level_reasons(make_store) -> None:
    store = make_store()
    offers = make_offers([{"offer_id": "x", "category": "a"}, {"offer_id": "y", "category": "b"}])
    arb = arbiter_for(offers, store)
    scores = {"x": 0.5, "y": 0.4}
    assert {s.reason for s in arb.decide("c1", "email", T0, scores, consents={}).suppressed} == {"consent"}
    assert {s.reason for s in arb.decide("c1", "email", T0, scores, consents={"email": False}).suppressed} == {"consent"}
    night = T0.replace(hour=22)
    assert {s.reason for s in arb.decide("c1", "sms", night, scores, consents={"sms": True}).suppressed} == {
        "quiet_hours"
    }
    assert arb.decide("c1", "email", night, scores, consents={"email": True}).offers  # quiet hours: sms/push only
    assert arb.decide("c1", "email", night + timedelta(hours=1), scores, consents={"email": True}).offers
    d = arb.decide("c1", "email", night + timedelta(hours=2), scores, consents={"email": True})
    assert d.offers == [] and {s.reason for s in d.suppressed} == {"cap_channel"}
    arb.decide("c1", "mail", night, scores)  # mail needs no opt-in
    arb.decide("c1", "push", T0 + timedelta(days=1), scores, consents={"push": True})
    d = arb.decide("c1", "push", T0 + timedelta(days=1, hours=1), scores, consents={"push": True})
    assert {s.reason for s in d.suppressed} == {"cap_outbound"}


def test_history_reasons_offer_cap_and_cooldowns(make_store) -> None:
    store = make_store()
    offers = make_offers(
        [{"offer_id": "x", "category": "a", "value": 20.0}, {"offer_id": "y", "category": "a"}, {"offer_id": "z", "category": "b", "value": 1.0}]
    )
    arb = arbiter_for(offers, store)
    scores = {"x": 0.5, "y": 0.5, "z": 0.5}
    for h in range(3):
        assert [o.offer_id for o in arb.decide("c1", "web", T0 + timedelta(hours=h), {"x": 0.5}).offers] == ["x"]
    d = arb.decide("c1", "web", T0 + timedelta(hours=4), scores, k=3)
    assert {s.offer_id: s.reason for s in d.suppressed} == {"x": "cap_offer"}
    store.record_outcome(d.decision_id, "y", "declined", T0 + timedelta(hours=4))
    d = arb.decide("c1", "web", T0 + timedelta(hours=5), scores, k=3)
    assert {s.offer_id: s.reason for s in d.suppressed} == {"x": "cap_offer", "y": "cooldown_offer"}
    d = arb.decide("c2", "web", T0, {"y": 0.5, "z": 0.5}, k=2)
    store.record_outcome(d.decision_id, "z", "declined", T0)
    d = arb.decide("c2", "web", T0 + timedelta(days=1), {"y": 0.5, "z": 0.5}, k=2)
    assert {s.offer_id: s.reason for s in d.suppressed} == {"z": "cooldown_offer"}


def test_no_offer_when_nothing_clears_the_minimum(make_store) -> None:
    store = make_store()
    policy = parse_policy("[arbitration]\nmin_expected_value = 5.0\n")
    offers = make_offers([{"offer_id": f"o{i}", "category": f"c{i}", "value": 9.0, "cost": 0.5} for i in range(5)])
    arb = arbiter_for(offers, store, policy)
    d = arb.decide("c1", "web", T0, {f"o{i}": 0.5 for i in range(5)}, k=3, rng=1)  # ev = 4.0 < 5
    assert d.offers == [] and d.slate_propensity == 1.0
    assert {s.reason for s in d.suppressed} == {"min_value"} and len(d.suppressed) == 5
    logged = store.export("c1")["decisions"]
    assert [(x["decision_id"], x["n_offers"]) for x in logged] == [(d.decision_id, 0)]
    d = arb.decide("c1", "web", T0, {"o0": 0.6}, rng=1)  # ev = 4.9: still below
    assert d.offers == []
    assert [o.offer_id for o in arb.decide("c1", "web", T0, {"o0": 0.62}, rng=1).offers] == ["o0"]  # ev = 5.08


def test_expected_value_levers_and_retention_term(make_store) -> None:
    store = make_store()
    policy = parse_policy(
        "[arbitration]\nmax_per_category = 5\n[arbitration.kind_weights]\nretention = 2.0\n"
        '[arbitration.offer_weights]\n"u" = 0.5\n[arbitration.exploration]\nrate = 0.0\n'
    )
    offers = make_offers(
        [
            {"offer_id": "r", "kind": "retention", "value": 10.0, "cost": 1.0},
            {"offer_id": "u", "kind": "upsell", "value": 10.0, "cost": 1.0},
        ]
    )
    arb = arbiter_for(offers, store, policy)
    d = arb.decide(
        "c1", "web", T0, [Candidate("r", 0.2, {"recency": -0.3, "spend": 0.1}), Candidate("u", 0.5)],
        churn_probability=0.5, customer_value=100.0, k=2,
    )
    ev = {o.offer_id: o.expected_value for o in d.offers}
    assert ev["r"] == pytest.approx(0.2 * 10 * 2.0 - 1.0 + 0.5 * 100.0 * 0.2)  # 13.0
    assert ev["u"] == pytest.approx(0.5 * 10 * 0.5 - 1.0)  # 1.5
    assert [o.offer_id for o in d.offers] == ["r", "u"] and [o.rank for o in d.offers] == [1, 2]
    assert [o.propensity for o in d.offers] == [1.0, 1.0]  # no exploration: deterministic
    assert d.offers[0].reasons[:2] == ["recency:-0.3", "spend:+0.1"]


def test_store_refusal_after_a_stale_prefilter_is_recorded(tmp_path) -> None:
    class StaleReads(SQLiteContactStore):
        """A replica whose history read missed a concurrent reservation."""

        def history(self, customer_id, now):
            return ContactHistory(customer_id, to_epoch(now))

    store = StaleReads(tmp_path / "s.db")
    offers = make_offers([{"offer_id": "x", "category": "a"}])
    arb = arbiter_for(offers, store, parse_policy("[caps]\nweb = { max = 1, days = 1 }\n"))
    assert arb.decide("c1", "web", T0, {"x": 0.5}).offers
    d = arb.decide("c1", "web", T0, {"x": 0.5})
    assert d.offers == [] and [(s.offer_id, s.reason) for s in d.suppressed] == [("x", "cap_channel")]


def test_consent_withdrawal_takes_effect_at_the_next_decision(make_store) -> None:
    import pandas as pd

    store = make_store()
    book = ConsentBook(
        pd.DataFrame({"customer_id": ["c1"], "channel": ["email"], "granted": [True], "ts": [pd.Timestamp("2026-01-01")]})
    )
    offers = make_offers([{"offer_id": "x", "category": "a"}, {"offer_id": "y", "category": "b"}])
    arb = arbiter_for(offers, store)
    assert arb.decide("c1", "email", T0, {"x": 0.5}, consents=book).offers
    book.record("c1", "email", False, T0 + timedelta(minutes=1))
    d = arb.decide("c1", "email", T0 + timedelta(minutes=1), {"y": 0.5}, consents=book)
    assert d.offers == [] and d.suppressed[0].reason == "consent"
    assert arb.decide("c2", "email", T0, {"y": 0.5}, consents=book).offers == []  # no row: no consent
    assert book.states("c1", T0, ["email", "sms"]) == {"email": True}


# ----------------------------------------------------------------------------- exploration


def _explore_arbiter(tmp_path, method: str, rate: float = 0.4):
    policy = parse_policy(
        f'[arbitration]\nmin_expected_value = -100.0\nmax_per_category = 5\n'
        f'[arbitration.exploration]\nrate = {rate}\nmethod = "{method}"\ntemperature = 2.0\n'
    )
    offers = make_offers([{"offer_id": f"o{i}", "category": "a", "value": v} for i, v in enumerate([10.0, 8.0, 5.0, 1.0])])
    return ContactDesk(Arbiter(policy, offers, {}), SQLiteContactStore(tmp_path / "e.db")), {f"o{i}": 0.5 for i in range(4)}


@pytest.mark.parametrize("method", ["epsilon_greedy", "softmax"])
def test_exploration_frequencies_match_recorded_propensities(tmp_path, method: str) -> None:
    arb, scores = _explore_arbiter(tmp_path, method)
    rng = np.random.default_rng(7)
    n = 4000
    counts: Counter[str] = Counter()
    recorded: dict[str, set[float]] = defaultdict(set)
    for _ in range(n):
        d = arb.decide("c1", "web", T0, scores, rng=rng, reserve=False)
        o = d.offers[0]
        counts[o.offer_id] += 1
        recorded[o.offer_id].add(round(o.propensity, 12))
    assert set(counts) == set(scores)  # everything gets explored
    for oid, c in counts.items():
        (p,) = recorded[oid]  # one exact probability per offer for identical inputs
        assert abs(c / n - p) < 4.5 * math.sqrt(p * (1 - p) / n), (oid, c / n, p)
    if method == "epsilon_greedy":
        assert recorded["o0"] == {0.7} and recorded["o3"] == {0.1}
    else:
        ev = np.array([5.0, 4.0, 2.5, 0.5]) / 2.0
        q = np.exp(ev) / np.exp(ev).sum()
        assert recorded["o1"] == {round(0.4 * q[1], 12)}
        assert recorded["o0"] == {round(0.6 + 0.4 * q[0], 12)}


def test_exploration_with_k2_records_conditional_propensities(tmp_path) -> None:
    arb, scores = _explore_arbiter(tmp_path, "epsilon_greedy", rate=0.6)
    rng = np.random.default_rng(11)
    n = 4000
    second: Counter[str] = Counter()
    firsts = 0
    recorded: dict[str, set[float]] = defaultdict(set)
    for _ in range(n):
        d = arb.decide("c1", "web", T0, scores, k=2, rng=rng, reserve=False)
        assert d.slate_propensity == pytest.approx(d.offers[0].propensity * d.offers[1].propensity)
        if d.offers[0].offer_id == "o0":
            firsts += 1
            second[d.offers[1].offer_id] += 1
            recorded[d.offers[1].offer_id].add(round(d.offers[1].propensity, 12))
    # given o0 first, 3 remain: the best (o1) has 0.4 + 0.6/3, the others 0.6/3
    assert recorded["o1"] == {0.6} and recorded["o2"] == {0.2} and recorded["o3"] == {0.2}
    for oid, c in second.items():
        (p,) = recorded[oid]
        assert abs(c / firsts - p) < 4.5 * math.sqrt(p * (1 - p) / firsts)


# ----------------------------------------------------------------------------- properties

RULE_ORACLES = {
    None: lambda env: True,
    "tenure_days > 30": lambda env: env["tenure_days"] is not None and env["tenure_days"] > 30,
    'lifecycle in ["at_risk", "lapsed"]': lambda env: env["lifecycle"] in ("at_risk", "lapsed"),
    "not (tenure_days > 30) and hour >= 8": lambda env: env["tenure_days"] is not None
    and env["tenure_days"] <= 30
    and env["hour"] >= 8,
    'channel != "web" or day_of_week < 5': lambda env: env["channel"] != "web" or env["day_of_week"] < 5,
}
CHANNELS = ["web", "app", "email", "sms", "push", "mail"]


@st.composite
def policies(draw) -> ContactPolicy:
    caps = {
        ch: {"max": draw(st.integers(0, 3)), "days": draw(st.integers(1, 5))}
        for ch in draw(st.sets(st.sampled_from(CHANNELS)))
    }
    return ContactPolicy.model_validate(
        {
            "caps": caps,
            "outbound": {"max": draw(st.integers(0, 4)), "days": draw(st.integers(1, 5))},
            "offer_cap": {"max": draw(st.integers(1, 3)), "days": draw(st.integers(1, 6))},
            "cooldown": {"offer_days": draw(st.integers(0, 6)), "category_days": draw(st.integers(0, 4))},
            "quiet_hours": {
                "channels": sorted(draw(st.sets(st.sampled_from(CHANNELS)))),
                "start": f"{draw(st.integers(0, 23)):02d}:00",
                "end": f"{draw(st.integers(0, 23)):02d}:00",
            },
            "consent": {"opt_in_channels": sorted(draw(st.sets(st.sampled_from(CHANNELS))))},
            "arbitration": {
                "min_expected_value": draw(st.sampled_from([-1.0, 0.0, 2.0])),
                "max_per_category": draw(st.integers(1, 2)),
                "exploration": {
                    "rate": draw(st.sampled_from([0.0, 0.3, 1.0])),
                    "method": draw(st.sampled_from(["epsilon_greedy", "softmax"])),
                    "temperature": draw(st.sampled_from([0.5, 5.0])),
                },
            },
        }
    )


@st.composite
def catalogues(draw):
    rows = []
    for i in range(draw(st.integers(1, 6))):
        start = T0 + timedelta(days=draw(st.integers(-3, 4)))
        rows.append(
            {
                "offer_id": f"o{i}",
                "category": draw(st.sampled_from("abc")),
                "kind": draw(st.sampled_from(["retention", "cross_sell", "upsell"])),
                "channels": tuple(sorted(draw(st.sets(st.sampled_from(CHANNELS), min_size=1)))),
                "value": draw(st.floats(0, 20)),
                "cost": draw(st.floats(0, 2)),
                "valid_from": start,
                "valid_to": start + timedelta(days=draw(st.integers(0, 8))),
                "eligibility": draw(st.sampled_from(list(RULE_ORACLES))),
            }
        )
    return make_offers(rows)


decide_step = st.tuples(
    st.just("decide"),
    st.integers(0, 1),  # customer
    st.sampled_from(CHANNELS),
    st.integers(0, 30),  # hours to advance
    st.integers(1, 3),  # k
    st.sampled_from([None, 10, 40]),  # tenure_days
    st.sampled_from([None, "new", "at_risk"]),  # lifecycle
    st.lists(st.floats(0, 1), min_size=6, max_size=6),  # p_accept per offer
    st.floats(0, 1),  # churn probability
)
feedback_step = st.tuples(st.just("feedback"), st.integers(0, 99), st.sampled_from(["accepted", "declined", "ignored"]))
consent_step = st.tuples(st.just("consent"), st.integers(0, 1), st.sampled_from(CHANNELS), st.booleans())


def _quiet(policy: ContactPolicy, channel: str, hour: int) -> bool:
    q = policy.quiet_hours
    start, end = int(q.start[:2]), int(q.end[:2])
    if channel not in q.channels or start == end:
        return False
    return start <= hour < end if start < end else (hour >= start or hour < end)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    policy=policies(),
    offers=catalogues(),
    initial=st.dictionaries(st.tuples(st.integers(0, 1), st.sampled_from(CHANNELS)), st.booleans(), max_size=6),
    steps=st.lists(st.one_of(decide_step, decide_step, feedback_step, consent_step), min_size=1, max_size=30),
    seed=st.integers(0, 2**16),
)
def test_no_answer_ever_breaks_the_policy(make_store, policy, offers, initial, steps, seed) -> None:
    import pandas as pd

    store = make_store()
    book = ConsentBook(
        pd.DataFrame(
            {
                "customer_id": [f"c{c}" for c, _ in initial],
                "channel": [ch for _, ch in initial],
                "granted": list(initial.values()),
                "ts": [pd.Timestamp(T0 - timedelta(days=1))] * len(initial),
            }
        )
    )
    consent = {(f"c{c}", ch): g for (c, ch), g in initial.items()}
    arb = ContactDesk(Arbiter(policy, offers, compile_offer_rules(offers, FEATURES)), store)
    catalogue = {r.offer_id: r for r in offers.itertuples()}
    rng = np.random.default_rng(seed)
    now = T0
    shown_log: list[tuple[str, str, str, str, str, float]] = []  # customer, decision, offer, category, channel, ts
    declines: dict[tuple[str, str], tuple[str, str, float]] = {}  # (decision, offer) -> customer, category, ts
    for step in steps:
        if step[0] == "consent":
            _, c, ch, granted = step
            book.record(f"c{c}", ch, granted, now)
            consent[(f"c{c}", ch)] = granted
            continue
        if step[0] == "feedback":
            if shown_log:
                cust, dec, oid, cat, _, _ = shown_log[step[1] % len(shown_log)]
                assert store.record_outcome(dec, oid, step[2], now)
                if step[2] == "declined":
                    declines.setdefault((dec, oid), (cust, cat, to_epoch(now)))
            continue
        _, c, channel, hours, k, tenure, lifecycle, ps, churn = step
        now += timedelta(hours=hours)
        customer = f"c{c}"
        features = {"tenure_days": tenure, "lifecycle": lifecycle}
        scores = {f"o{i}": ps[i] for i in range(len(offers))}
        d = arb.decide(customer, channel, now, scores, features, churn_probability=churn, customer_value=50.0,
                       k=k, rng=rng, consents=book)
        t = to_epoch(now)
        env = {**features, "channel": channel, "hour": now.hour, "day_of_week": now.weekday()}
        assert len(d.offers) <= k
        assert {s.reason for s in d.suppressed} <= set(REASON_CODES)
        assert Counter(catalogue[o.offer_id].category for o in d.offers).most_common(1)[0][1] <= (
            policy.arbitration.max_per_category
        ) if d.offers else True
        for o in d.offers:
            row = catalogue[o.offer_id]
            assert 0 < o.propensity <= 1
            assert o.expected_value >= policy.arbitration.min_expected_value
            assert to_epoch(row.valid_from) <= t <= to_epoch(row.valid_to), "validity"
            assert channel in row.channels, "channel"
            assert consent.get((customer, channel), channel not in policy.consent.opt_in_channels), "consent"
            assert not _quiet(policy, channel, now.hour), "quiet hours"
            rule_text = row.eligibility if isinstance(row.eligibility, str) else None
            assert RULE_ORACLES[rule_text](env), "eligibility"
            for (dec, oid), (cust, cat, ts) in declines.items():
                if cust != customer:
                    continue
                if oid == o.offer_id:
                    assert t - ts >= policy.cooldown.offer_days * DAY, "offer cooldown"
                if cat == row.category:
                    assert t - ts >= policy.cooldown.category_days * DAY, "category cooldown"
            shown_log.append((customer, d.decision_id, o.offer_id, row.category, channel, t))
        # caps, recomputed from the answers themselves (not from the store)
        mine = [s for s in shown_log if s[0] == customer]
        for ch, cap in policy.caps.items():
            times = {dec: ts for _, dec, _, _, chan, ts in mine if chan == ch}
            assert max_in_window(list(times.values()), cap.days) <= cap.max, f"cap {ch}"
        out = {dec: ts for _, dec, _, _, chan, ts in mine if chan in policy.outbound.channels}
        assert max_in_window(list(out.values()), policy.outbound.days) <= policy.outbound.max, "outbound cap"
        for oid in {s[2] for s in mine}:
            times = [ts for _, _, o, _, _, ts in mine if o == oid]
            assert max_in_window(times, policy.offer_cap.days) <= policy.offer_cap.max, "offer cap"


# ----------------------------------------------------------------------------- concurrency


def test_concurrent_decisions_never_exceed_a_cap(make_store) -> None:
    """8 workers x 500 decisions for 3 customers through one Arbiter and one store."""
    store = make_store()
    policy = parse_policy("[caps]\nweb = { max = 4, days = 1 }\nemail = { max = 2, days = 7 }\n[offer_cap]\nmax = 2\ndays = 2\n")
    offers = make_offers([{"offer_id": f"o{i}", "category": f"c{i % 4}", "value": 5.0 + i} for i in range(8)])
    arb = arbiter_for(offers, store, policy)
    clock, lock = itertools.count(), threading.Lock()
    answers, errors = [], []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(500):
                with lock:
                    now = T0 + timedelta(minutes=5 * next(clock))
                d = arb.decide(f"c{rng.integers(3)}", ["web", "email"][rng.integers(2)], now,
                               {f"o{i}": 0.3 for i in range(8)}, k=2, rng=rng, consents={"email": True})
                with lock:
                    answers.append(d)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(answers) == 4000
    shown = sorted((d.decision_id, o.offer_id) for d in answers for o in d.offers)
    stored = []
    for c in range(3):
        contacts = store.export(f"c{c}")["contacts"]
        stored += [(x["decision_id"], x["offer_id"]) for x in contacts]
        for ch, cap in policy.caps.items():
            times = {x["decision_id"]: to_epoch(x["ts"]) for x in contacts if x["channel"] == ch}
            assert max_in_window(list(times.values()), cap.days) <= cap.max
        for oid in {x["offer_id"] for x in contacts}:
            times = [to_epoch(x["ts"]) for x in contacts if x["offer_id"] == oid]
            assert max_in_window(times, policy.offer_cap.days) <= policy.offer_cap.max
    assert sorted(stored) == shown and len(shown) > 100


def test_context_names_are_the_documented_ones() -> None:
    assert CONTEXT_NAMES == {"channel", "hour", "day_of_week", "page_category", "device"}


def test_contract_example_rule_compiles_against_the_feature_set() -> None:
    """The rule names come from `features.customer_feature_names()` plus the context names."""
    features = pytest.importorskip("features")
    if not hasattr(features, "customer_feature_names"):
        pytest.skip("features.customer_feature_names() not available")
    offers = make_offers([{"offer_id": "x", "eligibility": 'lifecycle in ["at_risk", "lapsed"] and tenure_days > 30'}])
    rules = compile_offer_rules(offers, features.customer_feature_names())
    assert rules["x"].names == {"lifecycle", "tenure_days"}

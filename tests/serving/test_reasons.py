"""Reasons in plain words (serving/reasons.py): one sentence per code, next to the codes everywhere."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from features import CANDIDATE_FEATURES, customer_feature_names
from serving import reasons
from serving.decision import REASON_CODES
from serving.catalogue import compile_offer_rules
from serving.policy import ContactPolicy
from serving.ranking import Arbiter

NOW = datetime(2025, 3, 1, 10)


def _offers() -> pd.DataFrame:
    return pd.DataFrame({
        "offer_id": ["o-home", "o-travel"],
        "name": ["Home", "Travel"],
        "category": ["home", "travel"],
        "kind": ["upsell", "retention"],
        "channels": [("email", "web"), ("web",)],
        "value": [50.0, 80.0],
        "cost": [1.0, 1.0],
        "valid_from": pd.to_datetime(["2025-01-01", "2025-01-01"]),
        "valid_to": pd.to_datetime(["2025-12-31", "2025-02-01"]),
        "eligibility": [None, "tenure_days > 30"],
    })


def _arbiter(policy: ContactPolicy) -> Arbiter:
    offers = _offers()
    return Arbiter(policy, offers, compile_offer_rules(offers, customer_feature_names()))


def test_every_model_input_has_its_sentence() -> None:
    # A feature added without a sentence would read "name = value" to a marketer.
    missing = [name for name in CANDIDATE_FEATURES if name not in reasons.FEATURE_SENTENCES]
    assert missing == []
    for name in CANDIDATE_FEATURES:
        text = reasons.feature_fact(name, 1.0, "travel")
        assert text and "=" not in text and "_" not in text, (name, text)


@pytest.mark.parametrize(("name", "value", "category", "expected"), [
    ("offer_cat_views_7d", 3.0, "travel", "viewed Travel 3 times in the last 7 days"),
    ("offer_cat_views_7d", 1.0, "travel", "viewed Travel once in the last 7 days"),
    ("offer_cat_days_since_purchase", 40.0, "home", "bought Home 40 days ago"),
    ("offer_cat_days_since_purchase", 9999.0, "home", "never bought Home"),
    ("recency_days", 9999.0, "home", "has never bought"),
    ("ctx_page_category_match", 1.0, "travel", "browsing Travel right now"),
    ("ctx_page_category_match", 0.0, "travel", "not browsing Travel right now"),
    ("acceptance_rate", 0.25, "books", "accepted 25% of past offers"),
    ("stage_kind_code", 5 * 5 + 3.0, "books", "a retention offer for a customer active in the last 2 weeks who has bought before"),
    ("stage_kind_code", 4 * 5 + 0.0, "books", "an acquisition offer for a customer not active for over 4 months who has never bought"),
    ("lifecycle_code", float("nan"), "books", "lifecycle code: unknown"),
])
def test_feature_facts(name: str, value: float, category: str, expected: str) -> None:
    assert reasons.feature_fact(name, value, category) == expected


def test_contribution_text_says_which_way() -> None:
    assert reasons.contribution_text("offer_cat_views_7d", 3, +0.35, "travel") == \
        "viewed Travel 3 times in the last 7 days - makes acceptance more likely"
    assert reasons.contribution_text("offer_cat_views_7d", 0, -0.2, "travel").endswith("makes acceptance less likely")
    # Without the value (a caller that has only the code), the feature is named.
    assert reasons.contribution_text_of("offer_cat_views_7d:+0.35", "travel") == \
        "offer cat views 7d - makes acceptance more likely"


def test_every_suppression_code_has_its_sentence() -> None:
    policy = ContactPolicy.model_validate({"caps": {"email": {"max": 2, "days": 7}}, "quiet_hours": {"channels": ["sms"]}})
    arbiter = _arbiter(policy)
    texts = {code: arbiter.suppression("o-home", code, "email").reason_text for code in REASON_CODES}
    assert texts["cap_channel"] == "email cap reached (2 in 7 days)"
    assert texts["consent"] == "no consent for email"
    assert texts["validity"] == "not valid now (valid from 2025-01-01 to 2025-12-31)"
    assert texts["diversity"] == f"a Home offer ranks higher (at most {policy.arbitration.max_per_category} per category)"
    assert arbiter.suppression("o-travel", "eligibility", "web").reason_text == "does not meet the offer's rule: tenure_days > 30"
    assert texts["cooldown_category"] == f"declined a Home offer in the last {policy.cooldown.category_days} days"
    for code, text in texts.items():  # every code has a sentence of its own, not the code itself
        assert text and text != code.replace("_", " ") and "_" not in text, (code, text)
    # The same shared record per (offer, reason, channel); another channel names its own cap.
    assert arbiter.suppression("o-home", "cap_channel", "email") is arbiter.suppression("o-home", "cap_channel", "email")
    assert arbiter.suppression("o-home", "consent", "web").reason_text == "no consent for web"


def test_every_suppression_code_has_one_entry_with_its_setting() -> None:
    """One table (`SUPPRESSIONS`) says each reason in words and names the setting behind it (the
    console shows both); no code is missing from it, and nothing else writes these sentences."""
    from serving.reasons import SUPPRESSIONS, suppression_setting

    assert set(SUPPRESSIONS) == set(REASON_CODES)
    policy = ContactPolicy.model_validate({"caps": {"email": {"max": 2, "days": 7}}, "quiet_hours": {"channels": ["sms"]}})
    offer = _arbiter(policy).catalogue.by_id["o-home"]
    settings = {code: suppression_setting(code, offer, "email", policy) for code in REASON_CODES}
    assert settings["cap_channel"].endswith("max 2 in 7 days on email")
    assert settings["consent"].startswith("consent.opt_in_channels = [")
    assert settings["validity"] == "offer valid from 2025-01-01 to 2025-12-31"
    assert all(settings.values()), [code for code, text in settings.items() if not text]


def test_a_decision_carries_codes_and_texts_in_the_same_order() -> None:
    arbiter = _arbiter(ContactPolicy())
    d = arbiter.decide("c1", "web", NOW, {"o-home": 0.3, "o-travel": 0.9}, consents={"web": True}, k=2, rng=0)
    assert [o.offer_id for o in d.offers] == ["o-home"]
    offer = d.offers[0]
    assert len(offer.reason_texts) == len(offer.reasons)
    assert offer.reasons[-1] == "best expected value"
    assert offer.reason_texts[-1] == "the highest expected value among the offers allowed"
    (travel,) = d.suppressed
    assert (travel.reason, travel.reason_text) == ("validity", "not valid now (valid from 2025-01-01 to 2025-02-01)")
    dumped = d.model_dump(mode="json")  # what /recommend answers
    assert dumped["offers"][0]["reason_texts"] == offer.reason_texts
    assert dumped["suppressed"][0]["reason_text"] == travel.reason_text


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("attr_price", 1.19, "price 1.19 at this moment"),
    ("attr_price_over_mean", 0.9, "price 0.90x the mean of the offers in this decision"),
    ("attr_price_minus_min", 0.2, "price 0.2 above the lowest of the offers in this decision"),
    ("attr_display_flag_rank", 2.0, "display flag higher than 2 of the offers in this decision"),
])
def test_decision_time_attributes_are_said_in_words(name: str, value: float, expected: str) -> None:
    assert reasons.feature_fact(name, value, "travel") == expected

"""The what-if's starting draft: a policy written as TOML reads back equal through the typed loader."""

from __future__ import annotations

from pathlib import Path

from console.policy_toml import policy_to_toml
from serving.policy import ContactPolicy, load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[2]


def test_default_policy_round_trips() -> None:
    policy = ContactPolicy()
    assert parse_policy(policy_to_toml(policy)) == policy


def test_repository_policy_round_trips() -> None:
    policy = load_policy(ROOT / "policy.toml")
    assert parse_policy(policy_to_toml(policy)) == policy


def test_changed_levers_round_trip() -> None:
    text = '[arbitration.offer_weights]\n"o-travel-city" = 1.5\n[arbitration.exploration]\nrate = 0.2\n' \
           '[caps]\nemail = { max = 5, days = 3 }\n'
    policy = parse_policy(text)
    again = parse_policy(policy_to_toml(policy))
    assert again == policy and again.arbitration.offer_weights == {"o-travel-city": 1.5}

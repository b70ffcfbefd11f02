"""The policy file: defaults, and errors that name the key or the line."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from nbo.errors import ConfigError
from serving.policy import ContactPolicy, load_policy, parse_policy

REPO_POLICY = Path(__file__).resolve().parents[2] / "policy.toml"


def test_repo_policy_file_has_the_documented_defaults() -> None:
    p = load_policy(REPO_POLICY)
    assert {ch: (c.max, c.days) for ch, c in p.caps.items()} == {
        "email": (2, 7),
        "sms": (1, 14),
        "push": (3, 7),
        "mail": (1, 30),
        "web": (10, 1),
        "app": (10, 1),
    }
    assert (p.outbound.max, p.outbound.days, set(p.outbound.channels)) == (4, 7, {"email", "sms", "push", "mail"})
    assert (p.offer_cap.max, p.offer_cap.days) == (3, 30)
    assert (p.cooldown.offer_days, p.cooldown.category_days) == (30, 7)
    assert (p.quiet_hours.start, p.quiet_hours.end, set(p.quiet_hours.channels)) == ("21:00", "08:00", {"sms", "push"})
    assert set(p.consent.opt_in_channels) == {"email", "sms", "push"}
    assert p.arbitration.exploration.rate == 0.05
    assert p.arbitration.exploration.method == "epsilon_greedy"
    assert p.arbitration.weight("any", "retention") == 1.0
    # the file and the model defaults agree
    assert p.model_dump(exclude={"arbitration"}) == ContactPolicy().model_dump(exclude={"arbitration"})


def test_policy_is_frozen() -> None:
    p = ContactPolicy()
    with pytest.raises(Exception):
        p.offer_cap = p.offer_cap  # type: ignore[misc]


def test_weights_multiply_kind_and_offer() -> None:
    p = parse_policy('[arbitration.kind_weights]\nretention = 2.0\n[arbitration.offer_weights]\n"o-1" = 0.5\n')
    assert p.arbitration.weight("o-1", "retention") == 1.0
    assert p.arbitration.weight("o-2", "retention") == 2.0
    assert p.arbitration.weight("o-1", "upsell") == 0.5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[caps]\nemail = { max = 2, days = 7 \n", "line 2"),  # TOML syntax error names the line
        ("[caps]\nemial = { max = 2, days = 7 }\n", "caps.emial"),
        ("[caps]\nemail = { max = -1, days = 7 }\n", "caps.email.max"),
        ("[caps]\nemail = { max = 1, days = 0 }\n", "caps.email.days"),
        ("[offer_cap]\nmax = 3\n", "offer_cap.days"),
        ("[quiet_hours]\nstart = \"25:00\"\n", "quiet_hours.start"),
        ("[arbitration.exploration]\nrate = 1.5\n", "arbitration.exploration.rate"),
        ("[arbitration.exploration]\nmethod = \"thompson\"\n", "arbitration.exploration.method"),
        ("[arbitration.kind_weights]\nretension = 1.0\n", "arbitration.kind_weights.retension"),
        ("[consent]\nopt_in_channels = [\"fax\"]\n", "consent.opt_in_channels.0"),
        ("colour = \"blue\"\n", "colour"),
    ],
)
def test_bad_policy_names_key_or_line(text: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_missing_policy_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("hour", "minute", "quiet"),
    [(20, 59, False), (21, 0, True), (23, 30, True), (0, 0, True), (7, 59, True), (8, 0, False), (12, 0, False)],
)
def test_quiet_hours_wrap_midnight(hour: int, minute: int, quiet: bool) -> None:
    q = ContactPolicy().quiet_hours
    assert q.is_quiet("sms", datetime(2026, 1, 1, hour, minute)) is quiet
    assert q.is_quiet("email", datetime(2026, 1, 1, hour, minute)) is False


def test_longest_window() -> None:
    assert ContactPolicy().longest_window_days == 30
    assert parse_policy("[cooldown]\noffer_days = 60\n").longest_window_days == 60


def test_error_messages_name_each_key_exactly() -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy("[caps]\nemial = { max = 2, days = 7 }\nweb = { max = -1, days = 1 }\n")
    msg = str(info.value)
    assert msg.startswith("<policy>: key '")  # the default source name
    parts = msg.removeprefix("<policy>: ").split("; ")
    assert len(parts) == 2
    assert any(p.startswith("key 'caps.emial': ") for p in parts)
    assert any(p.startswith("key 'caps.web.max': ") for p in parts)
    with pytest.raises(ConfigError, match="^policy.toml: key 'colour': "):
        parse_policy('colour = "blue"\n', "policy.toml")


def test_a_policy_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes('# caf\u00e9 policy\n[offer_cap]\nmax = 3\ndays = 30\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(info.value) == f"{path}: policy file is not UTF-8 text"
    path.write_text('# caf\u00e9 policy\n[offer_cap]\nmax = 2\ndays = 30\n', encoding="utf-8")
    assert load_policy(path).offer_cap.max == 2

"""`[[programmes]]` and `[programme_settings]` of policy.toml: typed, validated, one error naming the key."""

from __future__ import annotations

import pytest

from nbo.errors import ConfigError
from serving.policy import BrowseTrigger, ContactPolicy, EventTrigger, LifecycleTrigger, parse_policy

EXAMPLE = """
[[programmes]]
name = "browse-abandon"
channels = ["email", "push"]
trigger = { kind = "browse_without_purchase", hours = 24, categories = ["travel"] }

[[programmes]]
name = "welcome"
channels = ["email"]
trigger = { kind = "lifecycle", to = "first_purchase" }

[[programmes]]
name = "search-follow-up"
channels = ["sms"]
trigger = { kind = "event", type = "search" }

[programme_settings]
complaint_pause_hours = 48
"""


def test_programmes_are_off_unless_configured() -> None:
    p = ContactPolicy()
    assert p.programmes == () and p.programme_settings.complaint_pause_hours == 72.0


def test_the_documented_example_parses() -> None:
    p = parse_policy(EXAMPLE)
    browse, welcome, search = p.programmes
    assert browse.trigger == BrowseTrigger(kind="browse_without_purchase", hours=24.0, categories=("travel",))
    assert browse.channels == ("email", "push")
    assert welcome.trigger == LifecycleTrigger(kind="lifecycle", to="first_purchase")
    assert search.trigger == EventTrigger(kind="event", type="search")
    assert p.programme_settings.complaint_pause_hours == 48.0


def test_a_policy_with_programmes_round_trips_through_the_consoles_writer() -> None:
    from console.policy_toml import policy_to_toml

    p = parse_policy(EXAMPLE)
    assert parse_policy(policy_to_toml(p)) == p


BAD = '[[programmes]]\nname = "p"\n'


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (BAD + 'channels = ["email"]\ntrigger = { kind = "birthday" }\n', ("programmes.0.trigger", "birthday")),
        (BAD + 'trigger = { kind = "event", type = "search" }\n', ("programmes.0.channels", "required")),
        (BAD + 'channels = []\ntrigger = { kind = "event", type = "search" }\n', ("programmes.0.channels",)),
        (BAD + 'channels = ["web"]\ntrigger = { kind = "event", type = "search" }\n', ("programmes.0.channels", "outbound")),
        (BAD + 'channels = ["email"]\ntrigger = { kind = "browse_without_purchase", hours = -2 }\n',
         ("programmes.0.trigger.browse_without_purchase.hours", "greater than 0")),
        (BAD + 'channels = ["email"]\ntrigger = { kind = "event", type = "tweet" }\n', ("programmes.0.trigger.event.type",)),
        (BAD + 'channels = ["email"]\ntrigger = { kind = "event", type = "search", categories = ["trvel"] }\n',
         ("programmes.0.trigger.event.categories", "trvel")),
        (BAD + 'channels = ["email"]\ntrigger = { kind = "lifecycle", to = "new" }\n', ("programmes.0.trigger.lifecycle.to",)),
        (BAD + 'channels = ["email"]\ntrigger = { kind = "event", type = "search" }\ncolour = 1\n', ("programmes.0.colour",)),
        ('[programme_settings]\ncomplaint_pause_hours = -1\n', ("programme_settings.complaint_pause_hours",)),
        ('[programme_settings]\nsweep_lookback_hours = 0\n', ("programme_settings.sweep_lookback_hours",)),
        (BAD + 'channels = ["email"]\ntrigger = { kind = "event", type = "search" }\n' + BAD
         + 'channels = ["sms"]\ntrigger = { kind = "event", type = "search" }\n', ("'p' is used twice",)),
    ],
)
def test_bad_programme_config_is_one_error_naming_the_key(text: str, names: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as err:
        parse_policy(text, "policy.toml")
    message = str(err.value)
    assert message.startswith("policy.toml: ") and "\n" not in message
    for name in names:
        assert name in message, message

"""Rule-set variants of a contact policy: the whole policy, its fatigue caps alone, its repeat rules
alone, or neither. Running the oracle under each tells a marketer what each family of rules is
worth in a world (docs/evaluation.md)."""

from __future__ import annotations

from collections.abc import Callable

from serving.caps import without_family
from serving.policy import ContactPolicy


def without_repeat_rules(policy: ContactPolicy) -> ContactPolicy:
    """The same policy without its repeat rules: no per-offer cap and no decline cooldowns, so the
    best offer may be made again and again. Its fatigue caps (per channel and outbound), consent,
    quiet hours, eligibility and arbitration are unchanged."""
    return without_family(policy, "repeat")  # each cap kind of the family, from serving.caps


def without_fatigue_caps(policy: ContactPolicy) -> ContactPolicy:
    """The same policy without its fatigue caps (per channel and outbound): a customer may be
    contacted at every opportunity. Repeat rules, consent, quiet hours, eligibility and
    arbitration are unchanged."""
    return without_family(policy, "fatigue")


def uncapped(policy: ContactPolicy) -> ContactPolicy:
    """The same policy without its fatigue caps and without its repeat rules (consent, quiet
    hours, eligibility and arbitration unchanged)."""
    return without_fatigue_caps(without_repeat_rules(policy))


def greedy(policy: ContactPolicy) -> ContactPolicy:
    """The same policy without exploration."""
    arb = policy.arbitration
    return policy.model_copy(update={"arbitration": arb.model_copy(
        update={"exploration": arb.exploration.model_copy(update={"rate": 0.0})})})


#: The contact policy a closed-loop policy runs under, by the suffix of its name: the whole policy,
#: its fatigue caps alone, its repeat rules alone, or neither. Running the oracle under each tells
#: a marketer what each family of rules is worth in a world (docs/evaluation.md).
RULE_SETS: dict[str, Callable[[ContactPolicy], ContactPolicy]] = {
    "": lambda policy: policy,
    "_fatigue_caps": without_repeat_rules,
    "_repeat_rules": without_fatigue_caps,
    "_uncapped": uncapped,
}

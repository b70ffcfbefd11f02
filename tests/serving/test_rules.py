"""The rule language: semantics, missing values, vectorised evaluation, hostile input."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbo.errors import ConfigError
from serving.rules import MAX_RULE_CHARS, RuleError, compile_rule

NAMES = {"lifecycle", "tenure_days", "spend", "loyalty_member", "channel", "hour"}


@pytest.mark.parametrize(
    ("rule", "values", "expected"),
    [
        ('lifecycle in ["at_risk", "lapsed"] and tenure_days > 30', {"lifecycle": "at_risk", "tenure_days": 31}, True),
        ('lifecycle in ["at_risk", "lapsed"] and tenure_days > 30', {"lifecycle": "at_risk", "tenure_days": 30}, False),
        ('lifecycle in ["at_risk", "lapsed"] and tenure_days > 30', {"lifecycle": "new", "tenure_days": 99}, False),
        ('lifecycle not in ("new",)', {"lifecycle": "loyal"}, True),
        ("tenure_days >= 10 or spend > 100", {"tenure_days": 1, "spend": 150.0}, True),
        ("not (spend > 100)", {"spend": 50}, True),
        ("spend / tenure_days > 2", {"spend": 100, "tenure_days": 10}, True),
        ("spend - 2 * tenure_days == -10", {"spend": 10, "tenure_days": 10}, True),
        ("10 < tenure_days <= 20", {"tenure_days": 20}, True),
        ("10 < tenure_days <= 20", {"tenure_days": 21}, False),
        ("loyalty_member", {"loyalty_member": True}, True),
        ("loyalty_member == False", {"loyalty_member": False}, True),
        ('channel == "email" and hour < 21', {"channel": "email", "hour": 9}, True),
        ("tenure_days > -5", {"tenure_days": -1}, True),
        ("", {}, True),
        # missing values: comparisons unknown, never true, even under `not`
        ("tenure_days > 30", {"tenure_days": None}, False),
        ("tenure_days > 30", {"tenure_days": float("nan")}, False),
        ("not (tenure_days > 30)", {"tenure_days": None}, False),
        ("tenure_days > 30", {}, False),
        ("tenure_days > 30 or spend > 1", {"tenure_days": None, "spend": 2}, True),
        ("tenure_days == None", {"tenure_days": None}, True),
        ("tenure_days != None", {"tenure_days": 3}, True),
        ("spend / tenure_days > 1", {"spend": 3, "tenure_days": 0}, False),  # division by zero is missing
        ('spend > "a"', {"spend": 3}, False),  # type mismatch is unknown
        ('lifecycle in ["a"]', {"lifecycle": None}, False),
        ("tenure_days > 30", {"tenure_days": np.int64(31)}, True),
    ],
)
def test_semantics(rule: str, values: dict, expected: bool) -> None:
    assert compile_rule(rule, NAMES).evaluate(values) is expected


@pytest.mark.parametrize(
    ("rule", "construct", "column"),
    [
        ("__import__('os')", "function call", 1),
        ("().__class__", "attribute access", 1),
        ("a.b", "attribute access", 1),
        ("tenure_days > 3 and spend[0] > 1", "subscript", 21),
        ("lambda: 1", "lambda", 1),
        ("[x for x in spend]", "comprehension", 1),
        ("f'{spend}' == 'x'", "f-string", 1),
        ("spend ** 2 > 1", "operator Pow", 1),
        ("spend > 1 if tenure_days else 0", "conditional expression", 1),
        ("tenure_days > 30 and tenure > 1", "unknown name 'tenure'", 22),
        ("__class__ == 1", "dunder name", 1),
        ("spend in spend", "'in' needs a list", 10),
        ("spend in [tenure_days]", "list elements must be constants", 11),
        ("(spend := 3)", "assignment expression", 2),
        ("{1: 2}", "construct Dict", 1),
        ("spend > 1 > ", "syntax error", None),
    ],
)
def test_rejected_rules_name_construct_and_column(rule: str, construct: str, column: int | None) -> None:
    with pytest.raises(RuleError) as info:
        compile_rule(rule, NAMES)
    assert construct in str(info.value)
    assert isinstance(info.value, ConfigError)
    if column is not None:
        assert info.value.column == column
        assert f"column {column}" in str(info.value)


@pytest.mark.parametrize(
    "rule",
    [
        "spend" + " + spend" * 1_000,  # too long
        "x" * 1_000_000,  # huge
        "spend" + "+(spend" * 45 + ")" * 45 + " > 1",  # deeply nested parentheses
        "(" * 250 + "spend" + ")" * 250,  # beyond the parser's own nesting limit
        "-" * 1_500 + "spend > 1",  # deep unary chain
        "not " * 450 + "spend > 1",  # deep not chain
        "spend + " * 240 + "1 > 0",  # many nodes (under the length limit)
        "spend in [" + ", ".join(["1"] * 600) + "]",  # huge list
    ],
)
def test_huge_or_deep_rules_are_rejected_fast(rule: str) -> None:
    start = time.perf_counter()
    with pytest.raises(RuleError):
        compile_rule(rule, NAMES)
    assert time.perf_counter() - start < 0.2


def test_length_limit_is_the_documented_one() -> None:
    ok = "spend > 1" + " " * (MAX_RULE_CHARS - 9)
    assert compile_rule(ok, NAMES).evaluate({"spend": 2})
    with pytest.raises(RuleError, match="longer than"):
        compile_rule(ok + " ", NAMES)


def test_rule_reports_the_names_it_reads() -> None:
    assert compile_rule("tenure_days > 1 or spend < 2", NAMES).names == {"tenure_days", "spend"}


def test_evaluate_frame_matches_known_rows() -> None:
    frame = pd.DataFrame(
        {
            "lifecycle": pd.Series(["at_risk", "lapsed", None, "new", "at_risk"], dtype="str"),
            "tenure_days": [31, np.nan, 50, 100, 5],
        }
    )
    rule = compile_rule('lifecycle in ["at_risk", "lapsed"] and tenure_days > 30', NAMES)
    assert rule.evaluate_frame(frame).tolist() == [True, False, False, False, False]
    assert compile_rule("not (tenure_days > 30)", NAMES).evaluate_frame(frame).tolist() == [
        False,
        False,
        False,
        False,
        True,
    ]
    assert compile_rule("", NAMES).evaluate_frame(frame).tolist() == [True] * 5


_RULES = [
    "tenure_days > 30",
    "not (tenure_days > 30) or spend <= 2.5",
    'lifecycle in ["at_risk", "lapsed"] and not (spend < 1)',
    'lifecycle not in ["new"] or tenure_days == None',
    "spend / tenure_days >= 0.5 and loyalty_member",
    "-spend + tenure_days * 2 != 4 and (loyalty_member == False or spend > 3)",
    '0 < tenure_days < 40 and lifecycle != "lapsed"',
    'spend > "x" or tenure_days - spend < 0',
]
_num = st.one_of(st.none(), st.just(float("nan")), st.integers(-5, 60).map(float), st.floats(-10, 10, allow_nan=False))
_row = st.fixed_dictionaries(
    {
        "tenure_days": _num,
        "spend": _num,
        "lifecycle": st.sampled_from([None, "new", "at_risk", "lapsed", "loyal"]),
        "loyalty_member": st.sampled_from([True, False]),
    }
)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(_row, min_size=1, max_size=12), rule_text=st.sampled_from(_RULES))
def test_evaluate_frame_agrees_with_evaluate(rows: list[dict], rule_text: str) -> None:
    rule = compile_rule(rule_text, NAMES)
    frame = pd.DataFrame(rows)
    frame["lifecycle"] = frame["lifecycle"].astype("str").where(frame["lifecycle"].notna(), None)
    expected = [rule.evaluate(r) for r in rows]
    assert rule.evaluate_frame(frame).tolist() == expected


def test_oracle_on_missing_under_not() -> None:
    """Kleene logic: `not` of an unknown comparison stays unknown, so the rule is False."""
    rule = compile_rule("not (spend > 3) and not (tenure_days < 1)", NAMES)
    assert rule.evaluate({"spend": 1, "tenure_days": 5}) is True
    assert rule.evaluate({"spend": 1, "tenure_days": math.nan}) is False

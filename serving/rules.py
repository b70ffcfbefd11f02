"""A small, safe rule language for eligibility and segments.

    lifecycle in ["at_risk", "lapsed"] and tenure_days > 30

A rule is parsed by `ast.parse(text, mode="eval")` and the tree is checked against a strict
whitelist, then turned into a tree of Python closures. Nothing is ever passed to eval/exec/compile,
so a rule can only read the names it was compiled with and compute booleans and numbers.

Grammar (see docs/policy.md): `or`, `and`, `not`; comparisons `== != < <= > >=` (chains allowed)
and `in` / `not in` against a list or tuple of constants; `+ - * /` on numbers; unary `-`/`+`;
parentheses; names; constants (strings, numbers, True, False, None).

Missing values (None, NaN) follow three-valued logic: a comparison with a missing value is
"unknown", `not unknown` is unknown, `False and unknown` is False, `True or unknown` is True, and a
rule whose result is unknown is False. So a missing value never makes a customer eligible, even
under `not`. `x == None` / `x != None` test for a missing value and are never unknown.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nbo.errors import ConfigError
from serving.rule_nodes import (
    Node,
    all_of,
    any_of,
    arithmetic,
    as_truth,
    comparison,
    const,
    membership,
    minus,
    negation,
    truthy,
    variable,
)

#: Context fields available to every rule, next to the customer features.
CONTEXT_NAMES: frozenset[str] = frozenset({"channel", "hour", "day_of_week", "page_category", "device"})

MAX_RULE_CHARS = 2_000
MAX_NODES = 400
MAX_DEPTH = 40


class RuleError(ConfigError):
    """A rule that cannot be compiled; `column` is the 1-based column of the offending construct."""

    def __init__(self, text: str, message: str, column: int | None = None) -> None:
        self.text = text
        self.column = column
        shown = text if len(text) <= 80 else text[:77] + "..."
        where = f" at column {column}" if column is not None else ""
        super().__init__(f"rule {shown!r}: {message}{where}")


# ----------------------------------------------------------------------------- compiler
_CMP = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_CONSTANT_TYPES = (str, int, float, bool, type(None))




@dataclass
class _Compiler:
    text: str
    known: frozenset[str]
    lead: int = 0  # characters stripped from the start of the text before parsing
    names: set[str] = field(default_factory=set)
    count: int = 0

    def fail(self, node: ast.AST | None, message: str) -> RuleError:
        col = getattr(node, "col_offset", None)
        return RuleError(self.text, message, None if col is None else col + 1 + self.lead)

    def value(self, node: ast.AST, depth: int) -> Node:
        return self.node(node, depth)

    def truth(self, node: ast.AST, depth: int) -> Node:
        n = self.node(node, depth)
        if n.is_truth:
            return n
        return truthy(n)

    def node(self, node: ast.AST, depth: int) -> Node:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(node, f"rule too large (more than {MAX_NODES} elements)")
        if depth > MAX_DEPTH:
            raise self.fail(node, f"rule nested too deeply (more than {MAX_DEPTH} levels)")
        d = depth + 1
        if isinstance(node, ast.BoolOp):
            parts = [self.truth(v, d) for v in node.values]
            return all_of(parts) if isinstance(node.op, ast.And) else any_of(parts)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return negation(self.truth(node.operand, d))
            if isinstance(node.op, ast.USub | ast.UAdd):
                operand = self.value(node.operand, d)
                if operand.is_truth:
                    raise self.fail(node, "unary minus/plus needs a number, not a condition")
                return minus(operand) if isinstance(node.op, ast.USub) else operand
            raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")
        if isinstance(node, ast.Compare):
            return self.compare(node, d)
        if isinstance(node, ast.BinOp):
            op = _ARITH.get(type(node.op))
            if op is None:
                raise self.fail(node, f"operator {type(node.op).__name__} is not allowed (only + - * /)")
            left, right = self.value(node.left, d), self.value(node.right, d)
            if left.is_truth or right.is_truth:
                raise self.fail(node, "arithmetic needs numbers, not conditions")
            return arithmetic(op, left, right)
        if isinstance(node, ast.Name):
            name = node.id
            if name.startswith("__") or name.endswith("__"):
                raise self.fail(node, f"dunder name {name!r} is not allowed")
            if name not in self.known:
                raise self.fail(node, f"unknown name {name!r}")
            self.names.add(name)
            return variable(name)
        if isinstance(node, ast.Constant):
            value = node.value
            if not isinstance(value, _CONSTANT_TYPES):
                raise self.fail(node, f"constant of type {type(value).__name__} is not allowed")
            if isinstance(value, int) and not isinstance(value, bool):
                try:
                    value = float(value)
                except OverflowError:
                    raise self.fail(node, "number too large") from None
            return const(value)
        if isinstance(node, ast.List | ast.Tuple):
            raise self.fail(node, "a list is only allowed on the right of 'in' / 'not in'")
        what = {
            ast.Attribute: "attribute access",
            ast.Call: "function call",
            ast.Subscript: "subscript",
            ast.Lambda: "lambda",
            ast.JoinedStr: "f-string",
            ast.ListComp: "comprehension",
            ast.SetComp: "comprehension",
            ast.DictComp: "comprehension",
            ast.GeneratorExp: "comprehension",
            ast.IfExp: "conditional expression",
            ast.NamedExpr: "assignment expression",
            ast.Starred: "starred expression",
        }.get(type(node), f"construct {type(node).__name__}")
        raise self.fail(node, f"{what} is not allowed")

    def literal_list(self, node: ast.AST, depth: int) -> tuple[object, ...]:
        if not isinstance(node, ast.List | ast.Tuple):
            raise self.fail(node, "'in' needs a list or tuple of constants on its right")
        items = []
        for elt in node.elts:
            self.count += 1
            if self.count > MAX_NODES:
                raise self.fail(elt, f"rule too large (more than {MAX_NODES} elements)")
            neg = False
            if isinstance(elt, ast.UnaryOp) and isinstance(elt.op, ast.USub | ast.UAdd):
                neg, elt = isinstance(elt.op, ast.USub), elt.operand
            if not isinstance(elt, ast.Constant) or not isinstance(elt.value, _CONSTANT_TYPES):
                raise self.fail(elt, "list elements must be constants")
            value = elt.value
            if isinstance(value, int | float) and not isinstance(value, bool):
                try:
                    value = -float(value) if neg else float(value)
                except OverflowError:
                    raise self.fail(elt, "number too large") from None
            elif neg:
                raise self.fail(elt, "unary minus needs a number")
            items.append(value)
        return tuple(items)

    def compare(self, node: ast.Compare, depth: int) -> Node:
        parts: list[Node] = []
        left = self.value(node.left, depth)
        for op, right_ast in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                if left.is_truth:
                    raise self.fail(node, "'in' needs a value on its left, not a condition")
                items = self.literal_list(right_ast, depth)
                parts.append(membership(left, items, negate=isinstance(op, ast.NotIn)))
                right = None
            elif type(op) in _CMP:
                right = self.value(right_ast, depth)
                if left.is_truth or right.is_truth:
                    raise self.fail(node, "compare values, not conditions (use parentheses with and/or)")
                parts.append(comparison(_CMP[type(op)], left, right, negate=isinstance(op, ast.NotEq)))
            else:
                raise self.fail(node, f"comparison {type(op).__name__} is not allowed")
            if right is None and len(node.ops) > 1:
                raise self.fail(node, "'in' / 'not in' cannot be chained with other comparisons")
            left = right  # type: ignore[assignment]
        return parts[0] if len(parts) == 1 else all_of(parts)


# ----------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Rule:
    """A compiled rule. `evaluate` for one customer, `evaluate_frame` for many."""

    text: str
    names: frozenset[str]
    _root: Node = field(repr=False, compare=False)

    def evaluate(self, values: Mapping[str, object]) -> bool:
        """True only if the rule is definitely true for these values (unknown -> False)."""
        return self._root.scalar(values) is True

    def evaluate_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """One boolean per row of `frame` (columns are names), same semantics as `evaluate`."""
        is_true, _ = as_truth(self._root.frame(frame), len(frame))
        return np.asarray(is_true, dtype=bool)


def _depth_ok(tree: ast.AST, text: str) -> None:
    """Iterative depth/size check before the recursive compiler runs."""
    stack = [(tree, 0)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH + 2:
            col = getattr(node, "col_offset", None)
            raise RuleError(text, f"rule nested too deeply (more than {MAX_DEPTH} levels)", None if col is None else col + 1)
        if seen > 4 * MAX_NODES:
            raise RuleError(text, f"rule too large (more than {MAX_NODES} elements)")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def compile_rule(text: str, known_names: set[str] | frozenset[str]) -> Rule:
    """Check `text` against the whitelist and compile it; `known_names` are the names it may read.

    Raises `RuleError` (a `ConfigError`) naming the unknown name or forbidden construct and its
    column. An empty or blank rule means "everyone" (always True).
    """
    if not isinstance(text, str):
        raise RuleError(str(text), "a rule must be text")
    if len(text) > MAX_RULE_CHARS:
        raise RuleError(text, f"rule longer than {MAX_RULE_CHARS} characters ({len(text)})")
    if not text.strip():
        return Rule(text, frozenset(), truthy(const(True)))
    lead = len(text) - len(text.lstrip())
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise RuleError(text, f"syntax error: {exc.msg}", None if exc.offset is None else exc.offset + lead) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise RuleError(text, f"cannot parse ({type(exc).__name__})") from None
    _depth_ok(tree, text)
    compiler = _Compiler(text, frozenset(known_names), lead)
    root = compiler.truth(tree.body, 0)
    return Rule(text, frozenset(compiler.names), root)

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
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nbo.errors import ConfigError

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


# ----------------------------------------------------------------------------- scalar evaluation
# Value nodes return a Python value (float, str, bool) or None for missing.
# Truth nodes return True, False or None (unknown).

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


def _norm(value: object) -> object:
    """Normalise one input value: None/NaN/NA -> None, numpy scalars -> Python."""
    if value is None:
        return None
    if isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        f = float(value)
        return None if math.isnan(f) else f
    try:
        if pd.isna(value):  # type: ignore[arg-type]
            return None
    except (TypeError, ValueError):
        pass
    return value


def _is_number(v: object) -> bool:
    return isinstance(v, float | int) and not isinstance(v, str)


@dataclass
class _Node:
    """One compiled node: a scalar closure and a frame closure."""

    scalar: Callable[[Mapping[str, object]], object]
    frame: Callable[[pd.DataFrame], object]
    is_truth: bool
    is_none: bool = False  # the constant None


# ----------------------------------------------------------------------------- compiler


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

    def value(self, node: ast.AST, depth: int) -> _Node:
        return self.node(node, depth)

    def truth(self, node: ast.AST, depth: int) -> _Node:
        n = self.node(node, depth)
        if n.is_truth:
            return n
        return _truthy(n)

    def node(self, node: ast.AST, depth: int) -> _Node:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(node, f"rule too large (more than {MAX_NODES} elements)")
        if depth > MAX_DEPTH:
            raise self.fail(node, f"rule nested too deeply (more than {MAX_DEPTH} levels)")
        d = depth + 1
        if isinstance(node, ast.BoolOp):
            parts = [self.truth(v, d) for v in node.values]
            return _and(parts) if isinstance(node.op, ast.And) else _or(parts)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return _not(self.truth(node.operand, d))
            if isinstance(node.op, ast.USub | ast.UAdd):
                operand = self.value(node.operand, d)
                if operand.is_truth:
                    raise self.fail(node, "unary minus/plus needs a number, not a condition")
                return _neg(operand) if isinstance(node.op, ast.USub) else operand
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
            return _arith(op, left, right)
        if isinstance(node, ast.Name):
            name = node.id
            if name.startswith("__") or name.endswith("__"):
                raise self.fail(node, f"dunder name {name!r} is not allowed")
            if name not in self.known:
                raise self.fail(node, f"unknown name {name!r}")
            self.names.add(name)
            return _name(name)
        if isinstance(node, ast.Constant):
            value = node.value
            if not isinstance(value, _CONSTANT_TYPES):
                raise self.fail(node, f"constant of type {type(value).__name__} is not allowed")
            if isinstance(value, int) and not isinstance(value, bool):
                try:
                    value = float(value)
                except OverflowError:
                    raise self.fail(node, "number too large") from None
            return _const(value)
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

    def compare(self, node: ast.Compare, depth: int) -> _Node:
        parts: list[_Node] = []
        left = self.value(node.left, depth)
        for op, right_ast in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                if left.is_truth:
                    raise self.fail(node, "'in' needs a value on its left, not a condition")
                items = self.literal_list(right_ast, depth)
                parts.append(_member(left, items, negate=isinstance(op, ast.NotIn)))
                right = None
            elif type(op) in _CMP:
                right = self.value(right_ast, depth)
                if left.is_truth or right.is_truth:
                    raise self.fail(node, "compare values, not conditions (use parentheses with and/or)")
                parts.append(_compare(_CMP[type(op)], left, right, negate=isinstance(op, ast.NotEq)))
            else:
                raise self.fail(node, f"comparison {type(op).__name__} is not allowed")
            if right is None and len(node.ops) > 1:
                raise self.fail(node, "'in' / 'not in' cannot be chained with other comparisons")
            left = right  # type: ignore[assignment]
        return parts[0] if len(parts) == 1 else _and(parts)


# ----------------------------------------------------------------------------- node builders
# Frame closures return: for value nodes a pd.Series or a scalar; for truth nodes a pair of numpy
# bool arrays (is_true, is_false); unknown is neither.


def _const(value: object) -> _Node:
    return _Node(lambda m: value, lambda f: value, is_truth=False, is_none=value is None)


def _name(name: str) -> _Node:
    def scalar(m: Mapping[str, object]) -> object:
        return _norm(m.get(name))

    def frame(f: pd.DataFrame) -> object:
        if name not in f.columns:
            return pd.Series(np.nan, index=f.index, dtype=float)
        return f[name]

    return _Node(scalar, frame, is_truth=False)


def _series_missing(v: object, n: int) -> np.ndarray:
    if isinstance(v, pd.Series):
        return v.isna().to_numpy(dtype=bool)
    missing = v is None or (isinstance(v, float) and math.isnan(v))
    return np.full(n, missing)


def _truthy(n: _Node) -> _Node:
    if n.is_truth:
        return n

    def scalar(m: Mapping[str, object]) -> object:
        v = n.scalar(m)
        return None if v is None else bool(v)

    def frame(f: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        v = n.frame(f)
        rows = len(f)
        missing = _series_missing(v, rows)
        if isinstance(v, pd.Series):
            vals = np.array([bool(x) if not miss else False for x, miss in zip(v.tolist(), missing, strict=True)])
            vals = vals.astype(bool) if rows else np.zeros(0, dtype=bool)
        else:
            vals = np.full(rows, bool(v) if v is not None else False)
        return vals & ~missing, ~vals & ~missing

    return _Node(scalar, frame, is_truth=True)


def _as_truth(v: object, rows: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(v, tuple):
        return v
    b = bool(v)
    return np.full(rows, b), np.full(rows, not b)


def _and(parts: list[_Node]) -> _Node:
    scalars = [p.scalar for p in parts]

    def scalar(m: Mapping[str, object]) -> object:
        unknown = False
        for s in scalars:
            r = s(m)
            if r is False:
                return False
            if r is None:
                unknown = True
        return None if unknown else True

    def frame(f: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        rows = len(f)
        t, fa = np.ones(rows, dtype=bool), np.zeros(rows, dtype=bool)
        for p in parts:
            pt, pf = _as_truth(p.frame(f), rows)
            t &= pt
            fa |= pf
        return t & ~fa, fa

    return _Node(scalar, frame, is_truth=True)


def _or(parts: list[_Node]) -> _Node:
    scalars = [p.scalar for p in parts]

    def scalar(m: Mapping[str, object]) -> object:
        unknown = False
        for s in scalars:
            r = s(m)
            if r is True:
                return True
            if r is None:
                unknown = True
        return None if unknown else False

    def frame(f: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        rows = len(f)
        t, fa = np.zeros(rows, dtype=bool), np.ones(rows, dtype=bool)
        for p in parts:
            pt, pf = _as_truth(p.frame(f), rows)
            t |= pt
            fa &= pf
        return t, fa & ~t

    return _Node(scalar, frame, is_truth=True)


def _not(n: _Node) -> _Node:
    inner = n.scalar

    def scalar(m: Mapping[str, object]) -> object:
        r = inner(m)
        return None if r is None else not r

    def frame(f: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        t, fa = _as_truth(n.frame(f), len(f))
        return fa, t

    return _Node(scalar, frame, is_truth=True)


def _to_numeric_series(v: object, index: pd.Index) -> object:
    if isinstance(v, pd.Series):
        if v.dtype == bool:
            return v.astype(float)
        if pd.api.types.is_numeric_dtype(v.dtype):
            return v.astype(float)
        return pd.Series(np.nan, index=index, dtype=float)  # text columns: arithmetic is missing
    if _is_number(v):
        return float(v)  # type: ignore[arg-type]
    return np.nan


def _neg(n: _Node) -> _Node:
    inner = n.scalar

    def scalar(m: Mapping[str, object]) -> object:
        v = inner(m)
        return -float(v) if _is_number(v) else None

    def frame(f: pd.DataFrame) -> object:
        v = _to_numeric_series(n.frame(f), f.index)
        return -v

    return _Node(scalar, frame, is_truth=False)


def _arith(op: Callable[[object, object], object], left: _Node, right: _Node) -> _Node:
    ls, rs = left.scalar, right.scalar

    def scalar(m: Mapping[str, object]) -> object:
        a, b = ls(m), rs(m)
        if not (_is_number(a) and _is_number(b)):
            return None
        try:
            r = float(op(a, b))  # type: ignore[arg-type]
        except (ZeroDivisionError, OverflowError):
            return None
        return None if math.isnan(r) or math.isinf(r) else r

    def frame(f: pd.DataFrame) -> object:
        a = _to_numeric_series(left.frame(f), f.index)
        b = _to_numeric_series(right.frame(f), f.index)
        with np.errstate(all="ignore"):
            r = op(a, b)
        if isinstance(r, pd.Series):
            return r.where(np.isfinite(r.to_numpy(dtype=float)), np.nan)
        r = float(r)  # type: ignore[arg-type]
        return r if math.isfinite(r) else np.nan

    return _Node(scalar, frame, is_truth=False)


def _compare(op: Callable[[object, object], object], left: _Node, right: _Node, negate: bool) -> _Node:
    ls, rs = left.scalar, right.scalar
    none_test = left.is_none or right.is_none
    if none_test:
        other = right if left.is_none else left
        os_ = other.scalar

        def scalar_none(m: Mapping[str, object]) -> object:
            missing = os_(m) is None
            return not missing if negate else missing

        def frame_none(f: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
            missing = _series_missing(other.frame(f), len(f))
            is_true = ~missing if negate else missing
            return is_true, ~is_true

        return _Node(scalar_none, frame_none, is_truth=True)

    def scalar(m: Mapping[str, object]) -> object:
        a, b = ls(m), rs(m)
        if a is None or b is None:
            return None
        try:
            return bool(op(a, b))
        except TypeError:
            return None

    def frame(f: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        rows = len(f)
        a, b = left.frame(f), right.frame(f)
        known = ~(_series_missing(a, rows) | _series_missing(b, rows))
        if not isinstance(a, pd.Series) and not isinstance(b, pd.Series):
            r = scalar({})  # two constants
            if r is None:
                return np.zeros(rows, dtype=bool), np.zeros(rows, dtype=bool)
            return _as_truth(r, rows)
        try:
            res = np.asarray(op(a, b), dtype=bool)
        except TypeError:
            res = _elementwise(op, a, b, rows)
            known &= res[1]
            res = res[0]
        return res & known, ~res & known

    return _Node(scalar, frame, is_truth=True)


def _elementwise(op: Callable[[object, object], object], a: object, b: object, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Slow path for mixed types: compare element by element, TypeError -> unknown."""
    av = a.tolist() if isinstance(a, pd.Series) else [a] * rows
    bv = b.tolist() if isinstance(b, pd.Series) else [b] * rows
    res, ok = np.zeros(rows, dtype=bool), np.zeros(rows, dtype=bool)
    for i, (x, y) in enumerate(zip(av, bv, strict=True)):
        x, y = _norm(x), _norm(y)
        if x is None or y is None:
            continue
        try:
            res[i] = bool(op(x, y))
            ok[i] = True
        except TypeError:
            pass
    return res, ok


def _member(left: _Node, items: tuple[object, ...], negate: bool) -> _Node:
    ls = left.scalar
    hashable = frozenset(items)

    def scalar(m: Mapping[str, object]) -> object:
        v = ls(m)
        if v is None:
            return None
        r = v in hashable
        return not r if negate else r

    def frame(f: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        rows = len(f)
        v = left.frame(f)
        missing = _series_missing(v, rows)
        if isinstance(v, pd.Series):
            found = np.array([x in hashable for x in (_norm(x) for x in v.tolist())], dtype=bool)
            if not rows:
                found = np.zeros(0, dtype=bool)
        else:
            found = np.full(rows, _norm(v) in hashable)
        if negate:
            found = ~found
        return found & ~missing, ~found & ~missing

    return _Node(scalar, frame, is_truth=True)


# ----------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Rule:
    """A compiled rule. `evaluate` for one customer, `evaluate_frame` for many."""

    text: str
    names: frozenset[str]
    _root: _Node = field(repr=False, compare=False)

    def evaluate(self, values: Mapping[str, object]) -> bool:
        """True only if the rule is definitely true for these values (unknown -> False)."""
        return self._root.scalar(values) is True

    def evaluate_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """One boolean per row of `frame` (columns are names), same semantics as `evaluate`."""
        is_true, _ = _as_truth(self._root.frame(frame), len(frame))
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
        return Rule(text, frozenset(), _truthy(_const(True)))
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

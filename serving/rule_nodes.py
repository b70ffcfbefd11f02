"""The evaluation side of a compiled rule (`serving/rules.py` compiles; this module evaluates).

Each node of a rule is a pair of closures: `scalar` on one mapping of values (one customer, online)
and `frame` on a DataFrame (many customers, batch); both follow the same three-valued logic, so a
rule gives the same answer online and in batch (tests/serving/test_rules.py checks it row by row).
Missing values (None, NaN) make a comparison "unknown"; a rule whose result is unknown is False.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

# ----------------------------------------------------------------------------- values
# Value nodes return a Python value (float, str, bool) or None for missing.
# Truth nodes return True, False or None (unknown).

def normalise(value: object) -> object:
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
class Node:
    """One compiled node: a scalar closure and a frame closure."""

    scalar: Callable[[Mapping[str, object]], object]
    frame: Callable[[pd.DataFrame], object]
    is_truth: bool
    is_none: bool = False  # the constant None


# ----------------------------------------------------------------------------- node builders
# Frame closures return: for value nodes a pd.Series or a scalar; for truth nodes a pair of numpy
# bool arrays (is_true, is_false); unknown is neither.


def const(value: object) -> Node:
    return Node(lambda m: value, lambda f: value, is_truth=False, is_none=value is None)


def variable(name: str) -> Node:
    def scalar(m: Mapping[str, object]) -> object:
        return normalise(m.get(name))

    def frame(f: pd.DataFrame) -> object:
        if name not in f.columns:
            return pd.Series(np.nan, index=f.index, dtype=float)
        return f[name]

    return Node(scalar, frame, is_truth=False)


def _series_missing(v: object, n: int) -> np.ndarray:
    if isinstance(v, pd.Series):
        return v.isna().to_numpy(dtype=bool)
    missing = v is None or (isinstance(v, float) and math.isnan(v))
    return np.full(n, missing)


def truthy(n: Node) -> Node:
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

    return Node(scalar, frame, is_truth=True)


def as_truth(v: object, rows: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(v, tuple):
        return v
    b = bool(v)
    return np.full(rows, b), np.full(rows, not b)


def all_of(parts: list[Node]) -> Node:
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
            pt, pf = as_truth(p.frame(f), rows)
            t &= pt
            fa |= pf
        return t & ~fa, fa

    return Node(scalar, frame, is_truth=True)


def any_of(parts: list[Node]) -> Node:
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
            pt, pf = as_truth(p.frame(f), rows)
            t |= pt
            fa &= pf
        return t, fa & ~t

    return Node(scalar, frame, is_truth=True)


def negation(n: Node) -> Node:
    inner = n.scalar

    def scalar(m: Mapping[str, object]) -> object:
        r = inner(m)
        return None if r is None else not r

    def frame(f: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        t, fa = as_truth(n.frame(f), len(f))
        return fa, t

    return Node(scalar, frame, is_truth=True)


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


def minus(n: Node) -> Node:
    inner = n.scalar

    def scalar(m: Mapping[str, object]) -> object:
        v = inner(m)
        return -float(v) if _is_number(v) else None

    def frame(f: pd.DataFrame) -> object:
        v = _to_numeric_series(n.frame(f), f.index)
        return -v

    return Node(scalar, frame, is_truth=False)


def arithmetic(op: Callable[[object, object], object], left: Node, right: Node) -> Node:
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

    return Node(scalar, frame, is_truth=False)


def comparison(op: Callable[[object, object], object], left: Node, right: Node, negate: bool) -> Node:
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

        return Node(scalar_none, frame_none, is_truth=True)

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
            return as_truth(r, rows)
        try:
            res = np.asarray(op(a, b), dtype=bool)
        except TypeError:
            res = _elementwise(op, a, b, rows)
            known &= res[1]
            res = res[0]
        return res & known, ~res & known

    return Node(scalar, frame, is_truth=True)


def _elementwise(op: Callable[[object, object], object], a: object, b: object, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Slow path for mixed types: compare element by element, TypeError -> unknown."""
    av = a.tolist() if isinstance(a, pd.Series) else [a] * rows
    bv = b.tolist() if isinstance(b, pd.Series) else [b] * rows
    res, ok = np.zeros(rows, dtype=bool), np.zeros(rows, dtype=bool)
    for i, (x, y) in enumerate(zip(av, bv, strict=True)):
        x, y = normalise(x), normalise(y)
        if x is None or y is None:
            continue
        try:
            res[i] = bool(op(x, y))
            ok[i] = True
        except TypeError:
            pass
    return res, ok


def membership(left: Node, items: tuple[object, ...], negate: bool) -> Node:
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
            found = np.array([x in hashable for x in (normalise(x) for x in v.tolist())], dtype=bool)
            if not rows:
                found = np.zeros(0, dtype=bool)
        else:
            found = np.full(rows, normalise(v) in hashable)
        if negate:
            found = ~found
        return found & ~missing, ~found & ~missing

    return Node(scalar, frame, is_truth=True)

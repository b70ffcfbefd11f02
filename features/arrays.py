"""Array primitives of the feature code: timestamps as ages in days, strings as integer codes,
and per-customer counts with numpy `bincount`.

Every feature module counts through these, never a per-customer `apply`, so a million customers
and twenty million events take seconds. Rows are addressed by integer customer positions
(`positions`) and categories by their position in the declared list (`codes`).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.config import NEVER_DAYS

#: Nanoseconds in a day.
DAY_NS = 86_400 * 10**9


def age_days(ts: pd.Series | np.ndarray, as_of: pd.Timestamp) -> np.ndarray:
    """Days (float) from each timestamp to `as_of`; positive for the past, NaN for NaT."""
    values = np.asarray(ts, dtype="datetime64[ns]")
    raw = values.view("i8")
    out = (as_of.value - raw) / DAY_NS
    out[np.isnat(values)] = np.nan
    return out


#: Above this many values, string lookups go through Arrow's hash kernels (C++) instead of Python.
_ARROW_MIN_ROWS = 10_000
#: Up to this many values, `codes` looks each one up in a dict instead of factorizing first.
_FEW = 256


@functools.lru_cache(maxsize=64)
def _vocabulary_map(vocabulary: tuple[str, ...]) -> dict[str, int]:
    return {v: i for i, v in enumerate(vocabulary)}


def _arrow_strings(values: object) -> pa.Array | pa.ChunkedArray:
    """Values as an Arrow string array; zero-copy for pandas' pyarrow-backed `str` columns."""
    if isinstance(values, pd.Series | pd.Index):
        values = values.array
    arr = pa.array(values, from_pandas=True) if not isinstance(values, pa.Array | pa.ChunkedArray) else values
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    return arr


def lookup(values: pd.Series | np.ndarray, keys: tuple[str, ...] | list[str] | pd.Index) -> np.ndarray:
    """Position of each value among `keys` (distinct strings), -1 for empty or absent values."""
    n = len(values)
    if n >= _ARROW_MIN_ROWS:
        arr = _arrow_strings(values)
        value_set = _arrow_strings(keys) if isinstance(keys, pd.Index) else pa.array(list(keys), type=arr.type)
        if isinstance(value_set, pa.ChunkedArray):
            value_set = value_set.combine_chunks()
        found = pc.index_in(arr, value_set=value_set.cast(arr.type))
        return found.fill_null(-1).to_numpy().astype(np.int64, copy=False)
    raw, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    known = keys if isinstance(keys, dict) else {k: i for i, k in enumerate(keys)}
    table = np.fromiter((known.get(u, -1) for u in uniques), dtype=np.int64, count=len(uniques))
    return np.append(table, -1)[raw]  # raw == -1 (empty) -> last slot -> -1


def codes(values: pd.Series | np.ndarray, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Position of each value in `vocabulary` (int16), -1 for empty or unknown values."""
    if len(values) >= _ARROW_MIN_ROWS:
        return lookup(values, vocabulary).astype(np.int16)
    if isinstance(values, np.ndarray) and len(values) <= _FEW:  # one customer's rows: a dict beats factorize
        known = _vocabulary_map(vocabulary)
        return np.fromiter((known.get(v, -1) if isinstance(v, str) else -1 for v in values.tolist()), dtype=np.int16, count=len(values))
    raw, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    known = _vocabulary_map(vocabulary)
    table = np.fromiter((known.get(u, -1) for u in uniques), dtype=np.int16, count=len(uniques))
    return np.append(table, np.int16(-1))[raw]


def positions(index: pd.Index, values: pd.Series | np.ndarray) -> np.ndarray:
    """Position of each value in `index` (unique ids), -1 when absent.

    A small index (the service's block of customers, up to `_FEW`) is looked up in a dict: pandas'
    `get_indexer` builds a hash table of the index and converts the values on every call (~180 us
    for 2-8 ids and 50-200 contact rows, against ~17-50 us; docs/service.md §7)."""
    if len(index) <= _FEW and len(values) < _ARROW_MIN_ROWS:
        known = {k: i for i, k in enumerate(index.tolist())}
        return np.fromiter((known.get(v, -1) for v in values.tolist()), dtype=np.int64, count=len(values))
    if len(index) == 1:
        return np.where(np.asarray(values, dtype=object) == index[0], 0, -1)
    if len(values) >= _ARROW_MIN_ROWS:
        return lookup(values, index)
    return index.get_indexer(np.asarray(values, dtype=object))


def column_values(column: object) -> object:
    """A column's values without a copy: the ExtensionArray of a Series, else an object array."""
    return column.array if isinstance(column, pd.Series) else np.asarray(column, dtype=object)


def is_any(values: np.ndarray, targets: list[int]) -> np.ndarray:
    """`np.isin` for integer codes and a few targets (no sort or table: ~40 µs less per call)."""
    out = np.zeros(len(values), dtype=bool)
    for t in targets:
        out |= values == t
    return out


def count(cust: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Rows (or sums of `weights`) per customer position 0..n-1, as float64."""
    return np.bincount(cust, weights=weights, minlength=n).astype(np.float64, copy=False)


def per_category(cust: np.ndarray, cat: np.ndarray, n: int, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(categories, customers) counts (or sums of `weights`); category-major so that each feature
    column is contiguous."""
    known = cat >= 0
    flat = cat[known].astype(np.int64) * n + cust[known]
    w = None if weights is None else weights[known]
    return np.bincount(flat, weights=w, minlength=n * k).reshape(k, n).astype(np.float64)


def per_category_last_age(cust: np.ndarray, cat: np.ndarray, age: np.ndarray, n: int, k: int) -> np.ndarray:
    """(categories, customers) age in days of the most recent row; NEVER_DAYS when there is none."""
    known = cat >= 0
    return last_age(cat[known].astype(np.int64) * n + cust[known], age[known], n * k).reshape(k, n)


def runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(key, length) of each run of equal consecutive `keys`. A customer's events of one day
    usually sit next to each other (a session), so the runs are far fewer than the keys."""
    keys = np.asarray(keys)
    if not len(keys):
        return keys, np.zeros(0, dtype=np.int64)
    start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[start], np.diff(np.r_[start, len(keys)])


def distinct(keys: np.ndarray) -> np.ndarray:
    """The distinct values of integer `keys`, in no particular order: runs collapsed, then a hash
    table (pandas), not `np.unique`'s sort (~9x faster on millions of keys; the counts built on it
    do not care about the order)."""
    return pd.unique(runs(keys)[0])


def distinct_days(cust: np.ndarray, age: np.ndarray, n: int, group: np.ndarray | None = None, groups: int = 1) -> np.ndarray:
    """(groups, customers) number of distinct days (24-hour periods counted back from as_of) with a row.

    Days are counted from `as_of`, not calendar days, so the value is a function of (data, as_of).
    """
    day = np.floor(age).astype(np.int64)
    g = np.zeros(len(cust), dtype=np.int64) if group is None else group.astype(np.int64)
    if group is not None and (g < 0).any():  # rows outside every group are not counted
        keep = g >= 0
        cust, day, g = cust[keep], day[keep], g[keep]
    start = _day_blocks(cust, day)
    if start is not None:  # each (customer, day) is one block of rows: no hash table
        if group is None:
            return np.bincount(cust[start], minlength=n).reshape(1, n).astype(np.float64)
        block = _block_of(start, len(cust))
        seen = np.flatnonzero(np.bincount(block * groups + g, minlength=len(start) * groups))
        return np.bincount((seen % groups) * n + cust[start][seen // groups],
                           minlength=groups * n).reshape(groups, n).astype(np.float64)
    width = int(day.max()) + 1 if len(day) else 1
    key = distinct((g * n + cust) * width + day)
    return np.bincount(key // width, minlength=groups * n).reshape(groups, n).astype(np.float64)


def main_category_days(cust: np.ndarray, age: np.ndarray, cat: np.ndarray, n: int, k: int) -> np.ndarray:
    """(categories, customers) number of days on which the category had most of the customer's rows
    (declared categories only; a tie goes to the category declared first).

    One day is one draw of the customer's interest: a session strays into other categories now
    and then, and counting every category seen on a day (`distinct_days`) counts those strays as
    whole days of interest.
    """
    known = cat >= 0
    if not known.any():
        return np.zeros((k, n))
    day = np.floor(age[known]).astype(np.int64)
    cust, cat = cust[known], cat[known]
    start = _day_blocks(cust, day)
    if start is not None:  # each (customer, day) is one block of rows: rows per (block, category)
        hits = np.bincount(_block_of(start, len(cust)) * k + cat, minlength=len(start) * k).reshape(len(start), k)
        return per_category(cust[start], hits.argmax(axis=1), n, k)  # argmax: ties to the first declared
    width = int(day.max()) + 1
    key = ((cust.astype(np.int64) * width + day) * k) + cat
    first, length = runs(key)
    code, uniq = pd.factorize(first)
    hits = np.bincount(code, weights=length, minlength=len(uniq)).astype(np.int64)  # rows per key
    group, category = uniq // k, uniq % k
    order = np.lexsort((category, -hits, group))  # per day: most rows first, then declared order
    first = np.ones(len(order), dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    win = order[first]
    return per_category(group[win] // width, category[win], n, k)


def _day_blocks(cust: np.ndarray, day: np.ndarray) -> np.ndarray | None:
    """Where each (customer, day) block of rows starts, when the rows are grouped by customer
    (ascending) and each customer's days never rise (rows in time order, as the point-in-time
    builders read them): then every (customer, day) is one run of rows and counting distinct
    days needs no hash table. None when the rows are not in that order (the caller hashes)."""
    if not len(cust):
        return np.zeros(0, dtype=np.int64)
    cust = np.asarray(cust, dtype=np.int64)
    if day.min() < 0:
        return None
    same = cust[1:] == cust[:-1]
    if not ((cust[1:] >= cust[:-1]).all() and (~same | (day[1:] <= day[:-1])).all()):
        return None
    return np.flatnonzero(np.r_[True, ~same | (day[1:] != day[:-1])])


def _block_of(start: np.ndarray, rows: int) -> np.ndarray:
    """The block number of each of `rows` rows, from the blocks' first rows `start`."""
    marks = np.zeros(rows, dtype=np.int64)
    marks[start[1:]] = 1
    return np.cumsum(marks)


def last_age(cust: np.ndarray, age: np.ndarray, n: int) -> np.ndarray:
    """Age in days of each customer's most recent row; NEVER_DAYS when there is none."""
    out = np.full(n, np.inf)
    np.minimum.at(out, cust, age)
    out[np.isinf(out)] = NEVER_DAYS
    return out



class RowsByOwner:
    """The rows of a table grouped by their owner (a customer position), table order within one
    owner: `expand` lists the rows of many owners at once, one block per requested owner (an owner
    asked twice gets its rows twice). The point-in-time builders use it to give every (customer,
    moment) row the customer's own rows, in the order the per-moment code reads them."""

    def __init__(self, owner: np.ndarray, owners: int) -> None:
        owner = np.asarray(owner, dtype=np.int64)
        mine = np.flatnonzero(owner >= 0)
        self.order = mine[np.argsort(owner[mine], kind="stable")]
        grouped = owner[self.order]
        self.start = np.searchsorted(grouped, np.arange(owners), side="left")
        self.stop = np.searchsorted(grouped, np.arange(owners), side="right")

    def expand(self, wanted: np.ndarray, stop: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(request row, table row) of every row owned by `wanted[i]`, request-major; `stop`: each
        request's end within `order` (default: all the owner's rows)."""
        wanted = np.asarray(wanted, dtype=np.int64)
        first = self.start[wanted]
        size = (self.stop[wanted] if stop is None else stop) - first
        request = np.repeat(np.arange(len(wanted)), size)
        offset = np.arange(len(request)) - np.repeat(np.cumsum(size) - size, size)
        return request, self.order[np.repeat(first, size) + offset]

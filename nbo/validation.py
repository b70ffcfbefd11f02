"""Checking one table's raw columns against the data contract (`nbo/contract.py`).

`validate_frame` coerces each column to its declared type (ids to text, timestamps to tz-naive UTC,
numbers, booleans, channel lists) and applies the table's own rules; a violation is a `DataError`
naming the table, the column, how many rows are wrong and one example value. Checks are vectorised
(10 million events validate in seconds). Reading files and whole-dataset checks are in `nbo/data.py`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from nbo.contract import ATTRIBUTE_NAME, ATTRIBUTE_PREFIX, ColumnSpec, TableSpec
from nbo.errors import DataError
from nbo.vocab import CONTACT_CHANNELS

TS_DTYPE = "datetime64[ns]"
STR_DTYPE = "str"
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}




def _example(values: pd.Series) -> str:
    value = values.iloc[0]
    if hasattr(value, "item"):
        value = value.item()
    return repr(value[:60]) if isinstance(value, str) else repr(value)


def _fail(spec: TableSpec, col: ColumnSpec, bad: pd.Series, what: str) -> DataError:
    return DataError(spec.name, f"{len(bad)} row(s) {what}, e.g. {_example(bad)}", column=col.name)


def _as_str(spec: TableSpec, col: ColumnSpec, raw: pd.Series) -> pd.Series:
    if raw.dtype == object:
        non_str = raw[raw.notna() & ~raw.map(lambda v: isinstance(v, str))]
        if len(non_str):
            raise _fail(spec, col, non_str, "have a value that is not text")
    elif not (pd.api.types.is_string_dtype(raw.dtype) or raw.isna().all()):
        if pd.api.types.is_float_dtype(raw.dtype) or pd.api.types.is_bool_dtype(raw.dtype):
            raise _fail(spec, col, raw.dropna(), f"have type {raw.dtype} instead of text")
        raw = raw.astype(object).where(raw.notna(), None).map(lambda v: v if v is None else str(v))
    out = raw.astype(STR_DTYPE)
    if col.allowed is not None:
        allowed = set(col.allowed)
        present = out.dropna()
        uniques = pd.unique(present)
        unknown = [u for u in uniques if u not in allowed]
        if unknown:
            bad = present[present.isin(unknown)]
            raise _fail(spec, col, bad, f"have a value outside {{{', '.join(col.allowed)}}}")
    if col.max_length is not None:
        lengths = out.str.len()
        too_long = out[lengths > col.max_length]
        if len(too_long):
            raise _fail(spec, col, too_long, f"have a value longer than {col.max_length} characters")
    if not col.nullable:
        empty = out.isna() | (out.str.strip() == "")
        if empty.any():
            raise _fail(spec, col, raw[empty].fillna("<empty>"), "have an empty value")
    return out


def _as_float(spec: TableSpec, col: ColumnSpec, raw: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(raw.dtype):
        raise _fail(spec, col, raw, "have a boolean instead of a number")
    num = pd.to_numeric(raw, errors="coerce") if not pd.api.types.is_numeric_dtype(raw.dtype) else raw
    num = num.astype("float64")
    unparseable = num.isna() & raw.notna()
    if unparseable.any():
        raise _fail(spec, col, raw[unparseable], "have a value that is not a number")
    if np.isinf(num).any():
        raise _fail(spec, col, raw[np.isinf(num)], "have an infinite value")
    if not col.nullable and num.isna().any():
        raise _fail(spec, col, raw[num.isna()].fillna("<empty>").astype(str), "have an empty value")
    if col.min_value is not None and (num < col.min_value).any():
        raise _fail(spec, col, num[num < col.min_value], f"have a value below {col.min_value:g}")
    if col.max_value is not None and (num > col.max_value).any():
        raise _fail(spec, col, num[num > col.max_value], f"have a value above {col.max_value:g}")
    return num


def _as_bool(spec: TableSpec, col: ColumnSpec, raw: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(raw.dtype) and not raw.isna().any():
        return raw.astype(bool)
    text = raw.astype(object).map(lambda v: str(v).strip().lower() if v is not None and v == v else None)
    truth = text.map(lambda v: True if v in _TRUE else (False if v in _FALSE else None))
    bad = truth.isna()
    if bad.any():
        raise _fail(spec, col, raw[bad].fillna("<empty>"), "have a value that is not a boolean (true/false)")
    return truth.astype(bool)


def _as_ts(spec: TableSpec, col: ColumnSpec, raw: pd.Series) -> pd.Series:
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        out = _in_ns_range(spec, col, raw.dt.tz_convert("UTC").dt.tz_localize(None), raw)
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        out = _in_ns_range(spec, col, raw, raw)
    elif pd.api.types.is_numeric_dtype(raw.dtype) and not raw.isna().all():
        raise _fail(spec, col, raw.dropna(), "have a number instead of an ISO-8601 timestamp")
    else:
        text = raw.astype(object).where(raw.notna(), None)
        present = text.dropna().astype(str).str.strip()
        aware = present.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
        # Each part keeps the resolution pandas parsed it at (nanoseconds when the text has them,
        # else microseconds, which hold any year 1..9999): a value outside the nanosecond range of
        # a Dataset is then named as such below, not "unparseable" or a crash.
        parts = [_parse_ts(present[mask]) for mask in (aware, ~aware) if mask.any()]
        for part in parts:
            bad = part.isna()
            if bad.any():
                alone = _parse_ts(present.loc[part.index[bad]])  # parsed with nanoseconds beside it?
                if alone.notna().any():
                    _in_ns_range(spec, col, alone.dropna().dt.tz_localize(None), present.loc[alone.dropna().index])
                raise _fail(spec, col, present.loc[part.index[bad]], "have a value that is not a parseable timestamp")
        if aware.any() and not aware.all():
            minority = present[~aware] if (~aware).sum() <= aware.sum() else present[aware]
            raise _fail(
                spec, col, minority, "mix timezone-aware and naive timestamps (the column must be one or the other)"
            )
        out = pd.Series(pd.NaT, index=raw.index, dtype=TS_DTYPE)
        for part in parts:
            out.loc[part.index] = _in_ns_range(spec, col, part.dt.tz_localize(None), present.loc[part.index])
    out = out.astype(TS_DTYPE)
    if not col.nullable and out.isna().any():
        raise _fail(spec, col, raw[out.isna()].astype(object).fillna("<empty>"), "have an empty value")
    return out


def _parse_ts(text: pd.Series) -> pd.Series:
    try:
        return pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        try:
            return pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
        except (ValueError, TypeError, OverflowError):
            return pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")


#: The span of `datetime64[ns]`, the timestamp type of a Dataset.
TS_MIN, TS_MAX = pd.Timestamp.min.ceil("D"), pd.Timestamp.max.floor("D")


def _in_ns_range(spec: TableSpec, col: ColumnSpec, values: pd.Series, shown: pd.Series) -> pd.Series:
    """`values` (tz-naive UTC, any resolution) as `datetime64[ns]`; a value beyond the years
    1677-2262 that type holds (e.g. a 9999-12-31 "no end" sentinel) is refused, naming it."""
    outside = values.notna() & ((values < TS_MIN) | (values > TS_MAX))
    if outside.any():
        raise _fail(
            spec, col, shown[outside].astype(str),
            f"have a timestamp outside the supported range {TS_MIN:%Y-%m-%d} to {TS_MAX:%Y-%m-%d}",
        )
    return values.astype(TS_DTYPE)


def _as_channels(spec: TableSpec, col: ColumnSpec, raw: pd.Series) -> pd.Series:
    def split(value: object) -> tuple[str, ...] | None:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(",", "|").split("|")]
        else:
            try:
                parts = [str(p).strip() for p in value]  # type: ignore[union-attr]
            except TypeError:
                return None
        return tuple(p for p in parts if p)

    lists = raw.map(split)
    empty = lists.map(lambda v: not v)
    if empty.any():
        raise _fail(spec, col, raw[empty].astype(object).fillna("<empty>"), "list no channel")
    allowed = set(CONTACT_CHANNELS)
    unknown = lists.map(lambda v: any(c not in allowed for c in v))
    if unknown.any():
        bad = lists[unknown].map(lambda v: next(c for c in v if c not in allowed))
        raise _fail(spec, col, bad, f"name a channel outside {{{', '.join(CONTACT_CHANNELS)}}}")
    return lists.map(lambda v: tuple(dict.fromkeys(v)))


def _as_timezone(spec: TableSpec, col: ColumnSpec, raw: pd.Series) -> pd.Series:
    """Text that names an IANA time zone (`zoneinfo`), or empty."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    out = _as_str(spec, col, raw)
    out = out.where(out.str.strip() != "")  # blank: not known
    unknown = []
    for name in pd.unique(out.dropna()):
        try:
            ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            unknown.append(name)
    if unknown:
        raise _fail(spec, col, out[out.isin(unknown)], "have a value that is not an IANA time zone name (e.g. 'Europe/Paris')")
    return out


_CONVERTERS = {
    "str": _as_str,
    "float": _as_float,
    "bool": _as_bool,
    "ts": _as_ts,
    "channels": _as_channels,
    "timezone": _as_timezone,
}


def validate_frame(spec: TableSpec, raw: pd.DataFrame) -> pd.DataFrame:
    """Check one table against its spec and return it with contract types; raise `DataError`."""
    missing = [c for c in spec.required_columns if c not in raw.columns]
    if missing:
        have = ", ".join(map(str, raw.columns[:12])) or "none"
        raise DataError(spec.name, f"missing column(s) {', '.join(missing)} (columns found: {have})")
    raw = raw.reset_index(drop=True)
    out = {}
    for col in spec.columns:
        if col.name in raw.columns:  # an optional column that is absent stays absent
            out[col.name] = _CONVERTERS[col.kind](spec, col, raw[col.name])
    for name in spec.attribute_names(raw.columns):
        col = _attribute_spec(spec, name)
        out[col.name] = _as_float(spec, col, raw[col.name])
    extra = [c for c in raw.columns if c not in out]
    frame = pd.DataFrame(out, index=raw.index)
    for c in extra:
        frame[c] = raw[c]
    if spec.key:
        dup = frame.duplicated(list(spec.key), keep="first")
        if dup.any():
            example = frame.loc[dup, list(spec.key)].iloc[0].tolist()
            shown = example[0] if len(example) == 1 else tuple(map(str, example))
            raise DataError(
                spec.name,
                f"{int(dup.sum())} duplicate key row(s) on ({', '.join(spec.key)}), e.g. {shown!r}",
            )
    _table_rules(spec.name, frame)
    return frame


def _attribute_spec(spec: TableSpec, name: str) -> ColumnSpec:
    """The check of column `<prefix><name>` (its name must be a valid attribute name)."""
    family = spec.attribute_columns
    assert family is not None
    column = f"{family.name}{name}"
    if not re.fullmatch(ATTRIBUTE_NAME, name):
        raise DataError(
            spec.name,
            "an attribute column is named `attr_` then lower-case letters, digits and `_` (a letter "
            "first, at most 32)",
            column=column,
        )
    return ColumnSpec(column, family.kind, nullable=True, min_value=family.min_value, required=False)


def _attributes_per_decision(table: str, frame: pd.DataFrame, columns: list[str]) -> None:
    """Every decision gives each attribute for all its candidates or for none."""
    for column in columns:
        given = frame[column].notna()
        if given.all() or not given.any():
            continue
        per = given.groupby(frame["decision_id"].to_numpy(), sort=False).agg(["sum", "size"])
        partial = per[(per["sum"] > 0) & (per["sum"] < per["size"])]
        if len(partial):
            raise DataError(
                table,
                f"{len(partial)} decision(s) give it for some candidates only (a decision gives an "
                f"attribute for all its candidates or for none), e.g. decision {str(partial.index[0])!r}",
                column=column,
            )


def _table_rules(table: str, frame: pd.DataFrame) -> None:
    """Rules across columns of one table."""
    if table == "events" and "amount" not in frame.columns:
        bought = frame["type"] == "purchase"
        if bought.any():
            raise DataError(
                table,
                f"{int(bought.sum())} purchase row(s) but no amount column; add `amount` "
                "(currency units, empty where unknown)",
                column="amount",
            )
    if table == "offers":
        _refuse(table, frame, frame["valid_to"] < frame["valid_from"], "valid_to", "row(s) end before they start",
                "offer_id")
    if table == "offers" and "incentive" in frame.columns:
        has = frame["incentive"].notna() & (frame["incentive"] != "")
        cost = frame["incentive_cost"] if "incentive_cost" in frame.columns else pd.Series(np.nan, index=frame.index)
        _refuse(table, frame, has & cost.isna(), "incentive_cost", "incentive variant(s) without an incentive_cost",
                "offer_id", ": say what the incentive gives away per acceptance")
        base = frame["base_offer_id"] if "base_offer_id" in frame.columns else pd.Series(None, index=frame.index)
        _refuse(table, frame, has & ~base.isin(frame.loc[~has, "offer_id"]), "base_offer_id",
                "incentive variant(s) whose base_offer_id is not a plain offer of the table", "offer_id")
    if table == "no_offers":
        _refuse(table, frame, frame["propensity"] <= 0, "propensity",
                "row(s) have propensity 0; a decision made no contact with probability in (0, 1]")
    if table == "contacts":
        _refuse(table, frame, frame["propensity"] <= 0, "propensity",
                "row(s) have propensity 0; a shown offer was chosen with probability in (0, 1]")
        _attributes_per_decision(table, frame, [c for c in frame.columns if str(c).startswith(ATTRIBUTE_PREFIX)])
        _refuse(table, frame, frame["outcome_ts"].notna() & (frame["outcome_ts"] < frame["ts"]), "outcome_ts",
                "row(s) have an outcome before the contact")


def _refuse(table: str, frame: pd.DataFrame, bad: pd.Series, column: str, what: str, example: str = "decision_id",
            after: str = "") -> None:
    """Raise the `DataError` "N {what}, e.g. offer|decision 'id'{after}" when any row is `bad`."""
    if bad.any():
        noun = "offer" if example == "offer_id" else "decision"
        raise DataError(table, f"{int(bad.sum())} {what}, e.g. {noun} {frame.loc[bad, example].iloc[0]!r}{after}",
                        column=column)

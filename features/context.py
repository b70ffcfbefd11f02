"""Request-context candidate columns: the channel, time, device and session of the request, and
how the channel fits where the customer shows up.

The request path (one context for all offers, cached per context on the prepared offers) and
training (one context per logged exposure) both come through `context_columns`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from features.config import DEVICES, Context
from features.definitions import FeatureGroup
from features.offers import OfferArrays
from nbo.vocab import CONTACT_CHANNELS

CONTEXT = FeatureGroup(
    "context",
    (
        "ctx_channel_code",
        "ctx_hour_of_day",
        "ctx_day_of_week",
        "ctx_device_code",
        "ctx_session_length",
        "ctx_page_category_match",
        "ctx_session_category_match",
        "ctx_offer_on_channel",
    ),
)
CONTEXT_COLUMNS: tuple[str, ...] = CONTEXT.columns()
#: Context x customer: the contact channel against where the customer shows up.
CONTEXT_FIT = FeatureGroup("context_fit", ("ctx_channel_habit",))


def context_columns(
    offers: OfferArrays,
    offer_pos: np.ndarray,
    *,
    channel: np.ndarray,
    hour: np.ndarray,
    day_of_week: np.ndarray,
    device: np.ndarray | None = None,
    page_category: np.ndarray | None = None,
    session_categories: tuple[str, ...] | list[tuple[str, ...]] = (),
) -> dict[str, np.ndarray]:
    """Context features of rows, each an offer (position in `offers`, -1 unknown) seen in a context.

    Every argument but `offers` has one value per row; `session_categories` is either one tuple
    shared by all rows or one tuple per row. A row whose channel is None has no context (NaN).
    The request path (one context for all offers) and training (one context per logged exposure)
    both come here, so context features have one implementation.
    """
    n = len(offer_pos)
    channel = np.asarray(channel, dtype=object)
    has = np.fromiter((c is not None for c in channel), dtype=bool, count=n)
    ch = np.fromiter((CONTACT_CHANNELS.index(c) if c is not None else -1 for c in channel), dtype=np.int64, count=n)
    known = offer_pos >= 0
    pos = np.where(known, offer_pos, 0)
    raw_cat = offers.raw_category[pos] if len(offers) else np.full(n, None, dtype=object)
    if device is None:
        dev = np.full(n, float(DEVICES.index("unknown")))
    else:
        dev = np.fromiter((DEVICES.index(d or "unknown") for d in device), dtype=np.float64, count=n)
    if page_category is None:
        page = np.zeros(n, dtype=bool)
    else:
        page = np.fromiter((bool(p) and c == p for c, p in zip(raw_cat, page_category, strict=True)),
                           dtype=bool, count=n)
    if isinstance(session_categories, tuple):
        session = np.isin(raw_cat, list(session_categories)) if session_categories else np.zeros(n, dtype=bool)
        length = np.full(n, float(len(session_categories)))
    else:
        session = np.fromiter((c in s for c, s in zip(raw_cat, session_categories, strict=True)), dtype=bool, count=n)
        length = np.fromiter((len(s) for s in session_categories), dtype=np.float64, count=n)
    on = offers.on_channel[pos, np.maximum(ch, 0)] if len(offers) else np.zeros(n, dtype=bool)
    out = {
        "ctx_channel_code": ch.astype(np.float64),
        "ctx_hour_of_day": np.asarray(hour, dtype=np.float64),
        "ctx_day_of_week": np.asarray(day_of_week, dtype=np.float64),
        "ctx_device_code": dev,
        "ctx_session_length": length,
        "ctx_page_category_match": (page & known).astype(np.float64),
        "ctx_session_category_match": (session & known).astype(np.float64),
        "ctx_offer_on_channel": (on & known).astype(np.float64),
    }
    for name in out:
        out[name] = np.where(has, out[name], np.nan)
    return out


def channel_habit(channel_code: np.ndarray, online_share: np.ndarray) -> np.ndarray:
    """How well the contact channel fits where the customer shows up: the online visit share for a
    web or app banner, one minus it for paper mail (store-goers read their post), NaN for the
    other channels and for rows without a context."""
    ch = np.asarray(channel_code, dtype=np.float64)
    share = np.asarray(online_share, dtype=np.float64)
    site = (ch == _CHANNEL_CODE["web"]) | (ch == _CHANNEL_CODE["app"])
    return np.where(site, share, np.where(ch == _CHANNEL_CODE["mail"], 1.0 - share, np.nan))


def context_fit(channel_code: np.ndarray, online_share: np.ndarray) -> dict[str, np.ndarray]:
    """The `CONTEXT_FIT` columns (context x customer, so per row, never cached with the context)."""
    return {"ctx_channel_habit": channel_habit(channel_code, online_share)}


_CHANNEL_CODE = {c: float(i) for i, c in enumerate(CONTACT_CHANNELS)}
_CONTEXT_CACHE_SIZE = 4096


def context_rows(
    context: Context | Mapping[str, Context] | None,
    customers: pd.Index,
    offers: OfferArrays,
    as_of: pd.Timestamp,
) -> dict[str, np.ndarray]:
    n_c, n_o = len(customers), len(offers)
    if n_c == 0 or n_o == 0:
        return {name: np.zeros(0) for name in CONTEXT_COLUMNS}
    if n_c == 1 and isinstance(context, Context):  # one request: the cached block itself, no copies
        return _context_block(context, offers, as_of)
    if isinstance(context, Context) or context is None:
        per_customer = [context]
        repeat = n_c
    else:
        per_customer = [context.get(c) for c in customers]
        repeat = 1
    cols: dict[str, list[np.ndarray]] = {name: [] for name in CONTEXT_COLUMNS}
    for ctx in per_customer:
        if ctx is None:
            for name in CONTEXT_COLUMNS:
                cols[name].append(np.full(n_o, np.nan))
            continue
        block = _context_block(ctx, offers, as_of)
        for name in CONTEXT_COLUMNS:
            cols[name].append(block[name])
    return {name: np.tile(np.concatenate(parts), repeat) for name, parts in cols.items()}


def _context_block(ctx: Context, offers: OfferArrays, as_of: pd.Timestamp) -> dict[str, np.ndarray]:
    """Context columns of every offer in one context, from `offers.context_cache` (read only)."""
    n_o = len(offers)
    hour = as_of.hour if ctx.hour_of_day is None else ctx.hour_of_day
    dow = as_of.day_of_week if ctx.day_of_week is None else ctx.day_of_week
    session = tuple(ctx.session_categories)
    key = (ctx.channel, float(hour), float(dow), ctx.device, ctx.page_category, session)
    block = offers.context_cache.get(key)
    if block is None:
        block = context_columns(
            offers,
            np.arange(n_o),
            channel=np.full(n_o, ctx.channel, dtype=object),
            hour=np.full(n_o, float(hour)),
            day_of_week=np.full(n_o, float(dow)),
            device=np.full(n_o, ctx.device, dtype=object),
            page_category=np.full(n_o, ctx.page_category, dtype=object),
            session_categories=session,
        )
        if len(offers.context_cache) >= _CONTEXT_CACHE_SIZE:
            offers.context_cache.clear()
        offers.context_cache[key] = block
    return block

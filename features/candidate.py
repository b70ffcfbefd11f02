"""Customer x offer features: affinity, exposure history, offer attributes and request context.

The same function serves training, batch scoring and one online request. It works on numpy arrays
(one row per customer x offer pair, customer-major) so one customer x 50 offers costs about a
millisecond. Contact-history columns are recomputed here from the `contacts` passed in, so the
online service can pass a materialised customer row together with the live contact log.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.config import CATEGORIES, DECAY_HALF_LIVES, DEVICES, NEVER_DAYS, Context, check_as_of
from features.customer import (
    CONTACT_HISTORY_COLUMNS,
    ContactArrays,
    codes,
    contact_history,
    encode_contacts,
    encode_contacts_at,
    lookup,
)
from nbo.errors import NboError
from nbo.vocab import CONTACT_CHANNELS, OFFER_KINDS, OUTCOMES

#: Customer columns copied onto every candidate row (the propensity model sees them).
CUSTOMER_COLUMNS_FOR_CANDIDATES: tuple[str, ...] = (
    "recency_days",
    "tenure_days",
    "purchases_30d",
    "purchases_365d",
    "spend_365d",
    "avg_basket_365d",
    "r_score",
    "f_score",
    "m_score",
    "categories_bought_365d",
    "top_category_share_365d",
    "abandoned_carts_30d",
    "days_since_web_visit",
    "days_since_app_visit",
    "days_since_activity",
    "active_days_30d",
    "active_days_365d",
    "silence_score",
    "silence_surprise",
    "activity_trend_30d",
    "online_visit_share_365d",
    "views_365d",
    "online_spend_share_365d",
    "lifecycle_code",
    "loyalty_member",
    "contacts_7d",
    "contacts_30d",
    "outbound_contacts_7d",
    "days_since_last_contact",
    "acceptance_rate",
    "accepts_total",
    "declines_total",
    "ignores_total",
    *(f"pressure_{ch}" for ch in CONTACT_CHANNELS),
    "pressure_total",
)

PAIR_COLUMNS: tuple[str, ...] = (
    "offer_cat_views_30d",
    "offer_cat_searches_30d",
    "offer_cat_cart_adds_30d",
    "offer_cat_views_7d",
    "offer_cat_searches_7d",
    "offer_cat_cart_adds_7d",
    "offer_cat_view_share_365d",
    *(f"offer_cat_browse_hl{h}d" for h in DECAY_HALF_LIVES),
    "offer_cat_days_since_browse",
    "offer_cat_days_since_purchase",
    "offer_cat_day_share_365d",
    "offer_cat_day_share_smoothed_365d",
    "offer_cat_main_day_share_365d",
    "offer_cat_purchases_365d",
    "offer_cat_purchase_share_365d",
    "offer_cat_bought_30d",
    "offer_cat_is_top",
    "offer_cat_is_next",
    "offer_exposures",
    "offer_accepts",
    "offer_declines",
    "offer_ignores",
    "offer_days_since_exposure",
    "offer_cat_declines",
    "offer_cat_exposures",
    "offer_cat_accepts",
    "offer_cat_clicks",
    "stage_kind_code",
)
OFFER_COLUMNS: tuple[str, ...] = (
    *(f"offer_kind_{k}" for k in OFFER_KINDS),
    "offer_kind_code",
    "offer_category_code",
    "offer_value",
    "offer_cost",
)
CONTEXT_COLUMNS: tuple[str, ...] = (
    "ctx_channel_code",
    "ctx_hour_of_day",
    "ctx_day_of_week",
    "ctx_device_code",
    "ctx_session_length",
    "ctx_page_category_match",
    "ctx_session_category_match",
    "ctx_offer_on_channel",
)
#: Context x customer: the contact channel against where the customer shows up.
CONTEXT_FIT_COLUMNS: tuple[str, ...] = ("ctx_channel_habit",)
CANDIDATE_COLUMNS: tuple[str, ...] = (
    *CUSTOMER_COLUMNS_FOR_CANDIDATES, *PAIR_COLUMNS, *OFFER_COLUMNS, *CONTEXT_COLUMNS, *CONTEXT_FIT_COLUMNS
)
#: Upper edges (days since the last activity) of the recency part of the relationship stage in
#: `stage_kind_code`: active in the last 2 weeks, month, 2 months, 4 months, or longer ago.
STAGE_RECENCY_EDGES: tuple[float, ...] = (14.0, 30.0, 60.0, 120.0)
#: Prior of `offer_cat_main_day_share_365d`: days of interest credited to every category before
#: any is seen (a new customer is equally likely to care about each).
MAIN_DAY_PRIOR: float = 0.5


_CATEGORY_STEMS: tuple[str, ...] = (
    "page_views_30d",
    "product_views_30d",
    "searches_30d",
    "cart_adds_30d",
    "purchases_30d",
    "purchases_365d",
    "page_views_7d",
    "product_views_7d",
    "searches_7d",
    "cart_adds_7d",
    "views_365d",
    *(f"browse_hl{h}d" for h in DECAY_HALF_LIVES),
    "days_since_browse",
    "days_since_purchase",
    "active_days_365d",
    "main_days_365d",
)
_CUSTOMER_INPUTS: tuple[str, ...] = (
    *(c for c in CUSTOMER_COLUMNS_FOR_CANDIDATES if c not in CONTACT_HISTORY_COLUMNS),
    "top_category_code",
    "next_category_code",
    "purchases_total",
)


_LAYOUT: list[tuple[pd.Index, tuple[str, ...], np.ndarray]] = []


def _column_positions(columns: pd.Index, names: tuple[str, ...]) -> np.ndarray:
    """Positions of `names` among `columns`. The last layout is remembered (and compared with a
    vectorised `Index.equals`): the online path slices rows out of one materialised frame."""
    cached = _LAYOUT[0] if _LAYOUT else None  # read once: another thread may replace it
    if cached is not None and cached[1] == names and (cached[0] is columns or cached[0].equals(columns)):
        return cached[2]
    where = {c: i for i, c in enumerate(columns)}
    missing = [n for n in names if n not in where]
    if missing:
        raise NboError(f"customer features lack column(s) {', '.join(missing[:8])}; use build_customer_features")
    found = np.array([where[n] for n in names], dtype=np.int64)
    _LAYOUT[:] = [(columns, names, found)]
    return found


@dataclass(frozen=True)
class CustomerRows:
    """Materialised customer rows as one float64 block (numeric columns only).

    The online service builds it once from the materialised frame and passes a row slice of it to
    `candidate_matrix` per request: no DataFrame is built or indexed per request. Same values as
    the frame's columns converted to float64.
    """

    ids: np.ndarray  # object, one per row
    columns: pd.Index
    values: np.ndarray  # (rows, columns) float64

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> CustomerRows:
        numeric = [c for c in frame.columns if frame[c].dtype.kind in "fiub"]
        values = frame[numeric].to_numpy(np.float64, na_value=np.nan) if numeric else np.zeros((len(frame), 0))
        return cls(frame.index.to_numpy(dtype=object), pd.Index(numeric), values)

    def take(self, rows: np.ndarray) -> CustomerRows:
        return CustomerRows(self.ids[rows], self.columns, self.values[rows])

    def __len__(self) -> int:
        return len(self.ids)


@functools.lru_cache(maxsize=8)
def _per_category_names(categories: tuple[str, ...]) -> tuple[str, ...]:
    return (*_CUSTOMER_INPUTS, *(f"{cat}_{stem}" for stem in _CATEGORY_STEMS for cat in categories))


class _CustomerArrays:
    """The customer columns this module reads, pulled out of the frame in one block."""

    def __init__(self, frame: pd.DataFrame | CustomerRows, categories: tuple[str, ...]) -> None:
        self.categories = categories
        names = _per_category_names(categories)
        where = _column_positions(frame.columns, names)
        if isinstance(frame, CustomerRows):
            block = frame.values[:, where]
        else:
            block = frame.iloc[:, where].to_numpy(dtype=np.float64)
        self.columns = {name: block[:, i] for i, name in enumerate(_CUSTOMER_INPUTS)}
        self._per_cat = block[:, len(_CUSTOMER_INPUTS) :]

    def matrix(self, *stems: str) -> np.ndarray:
        """(customers, categories + 1): sum of per-category columns; the last column (undeclared) is 0."""
        k = len(self.categories)
        n = self._per_cat.shape[0]
        mat = np.zeros((n, k + 1))
        for stem in stems:
            j = _CATEGORY_STEMS.index(stem)
            mat[:, :k] += self._per_cat[:, j * k : (j + 1) * k]
        return mat


@dataclass(frozen=True)
class OfferArrays:
    """An offer catalogue decoded once into arrays (see `prepare_offers`)."""

    ids: np.ndarray  # object
    position: dict[str, int]
    raw_category: np.ndarray  # object, the category text
    category_code: np.ndarray  # index in `categories`, -1 undeclared
    category_group: np.ndarray  # equal numbers for equal category text
    kind_code: np.ndarray
    value: np.ndarray
    cost: np.ndarray
    on_channel: np.ndarray  # (offers, CONTACT_CHANNELS) bool
    categories: tuple[str, ...]
    #: Context features of all offers per request context (see `_context_rows`): requests repeat
    #: a few contexts, and these columns depend on nothing else. Bounded; never mutated in place.
    context_cache: dict[tuple[object, ...], dict[str, np.ndarray]] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.ids)


def prepare_offers(offers: pd.DataFrame | OfferArrays, categories: tuple[str, ...] = CATEGORIES) -> OfferArrays:
    """Decode the offers table once; the online service keeps the result until the catalogue changes."""
    if isinstance(offers, OfferArrays):
        if offers.categories != categories:
            raise NboError("offers were prepared with another category list")
        return offers
    ids = offers["offer_id"].to_numpy(dtype=object)
    raw_category = offers["category"].to_numpy(dtype=object)
    group, _ = pd.factorize(raw_category)
    channels = offers["channels"].to_numpy()
    on_channel = np.array([[ch in chans for ch in CONTACT_CHANNELS] for chans in channels], dtype=bool)
    return OfferArrays(
        ids=ids,
        position={o: i for i, o in enumerate(ids)},
        raw_category=raw_category,
        category_code=codes(raw_category, categories).astype(np.int64),
        category_group=group.astype(np.int64),
        kind_code=codes(offers["kind"].to_numpy(dtype=object), OFFER_KINDS).astype(np.int64),
        value=offers["value"].to_numpy(dtype=np.float64),
        cost=offers["cost"].to_numpy(dtype=np.float64),
        on_channel=on_channel.reshape(len(ids), len(CONTACT_CHANNELS)),
        categories=categories,
    )


def _offer_positions(offers: OfferArrays, values: object) -> np.ndarray:
    """Position of each contact's offer among the offers, -1 when absent."""
    if len(values) < _SMALL:  # a dict beats building a hash table for one customer's contacts
        where = offers.position
        return np.fromiter((where.get(v, -1) for v in np.asarray(values, dtype=object)), dtype=np.int64, count=len(values))
    return lookup(values, list(offers.ids))


_SMALL = 4096


def _exposures(c: ContactArrays, n_c: int, offers: OfferArrays) -> dict[str, np.ndarray]:
    """Per (customer, offer) pair: exposures and outcomes before as_of; declines per offer category."""
    n_o = len(offers)
    offer_cat = offers.category_group
    offer_pos = _offer_positions(offers, c.offer_id[c.rows])
    known = offer_pos >= 0
    pair = c.cust[known] * n_o + offer_pos[known]
    size = n_c * n_o
    out = {"offer_exposures": np.bincount(pair, minlength=size).astype(np.float64)}
    outcome, final = c.outcome[known], c.final[known]
    for value, name in (("accepted", "offer_accepts"), ("declined", "offer_declines"), ("ignored", "offer_ignores")):
        hit = final & (outcome == OUTCOMES.index(value))
        out[name] = np.bincount(pair[hit], minlength=size).astype(np.float64)
    last = np.full(size, np.inf)
    np.minimum.at(last, pair, c.age[known])
    last[np.isinf(last)] = NEVER_DAYS
    out["offer_days_since_exposure"] = last
    # Exposures and answers per (customer, offer category): a click or an acceptance in a category
    # is interest in it. Contacts of offers absent from `offers` are not counted.
    n_k = int(offer_cat.max()) + 1 if len(offer_cat) else 1
    cat_key = c.cust[known] * n_k + offer_cat[offer_pos[known]]
    rows = np.repeat(np.arange(n_c), n_o)
    cols = np.tile(offer_cat, n_c)
    for name, hit in (
        ("offer_cat_declines", final & (outcome == OUTCOMES.index("declined"))),
        ("offer_cat_exposures", None),
        ("offer_cat_accepts", final & (outcome == OUTCOMES.index("accepted"))),
        ("offer_cat_clicks", final & (outcome == OUTCOMES.index("clicked"))),
    ):
        keys = cat_key if hit is None else cat_key[hit]
        by_cat = np.bincount(keys, minlength=n_c * n_k).reshape(n_c, n_k)
        out[name] = by_cat[rows, cols].astype(np.float64)
    return out


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


def stage_kind_code(days_since_activity: np.ndarray, purchases_total: np.ndarray, kind_code: np.ndarray) -> np.ndarray:
    """The customer's relationship stage crossed with the offer's kind, as one category code.

    Stage: the recency bucket of the last activity (`STAGE_RECENCY_EDGES`: <= 14, 30, 60, 120 days,
    or longer / never), plus 5 for a customer who has bought before. Code: stage x number of
    offer kinds + kind code (0-49); NaN for an unknown kind or a customer without features.
    Offer kinds are meant for stages (a retention offer for someone going quiet, an acquisition
    offer for someone who never bought): one categorical column lets the model learn a shift per
    (stage, kind) pair from few rows, where splitting on recency and kind separately needs many.
    """
    edges = np.asarray(STAGE_RECENCY_EDGES)
    days = np.asarray(days_since_activity, dtype=np.float64)
    bought = np.asarray(purchases_total, dtype=np.float64) >= 1
    stage = np.searchsorted(edges, days, side="left") + np.where(bought, len(edges) + 1, 0)
    code = (stage * len(OFFER_KINDS) + np.asarray(kind_code)).astype(np.float64)
    return np.where((np.asarray(kind_code) >= 0) & ~np.isnan(days), code, np.nan)


def channel_habit(channel_code: np.ndarray, online_share: np.ndarray) -> np.ndarray:
    """How well the contact channel fits where the customer shows up: the online visit share for a
    web or app banner, one minus it for paper mail (store-goers read their post), NaN for the
    other channels and for rows without a context."""
    ch = np.asarray(channel_code, dtype=np.float64)
    share = np.asarray(online_share, dtype=np.float64)
    site = (ch == _CHANNEL_CODE["web"]) | (ch == _CHANNEL_CODE["app"])
    return np.where(site, share, np.where(ch == _CHANNEL_CODE["mail"], 1.0 - share, np.nan))


_CHANNEL_CODE = {c: float(i) for i, c in enumerate(CONTACT_CHANNELS)}
_CONTEXT_CACHE_SIZE = 4096


def _context_rows(
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


def candidate_matrix(
    customer_features: pd.DataFrame | CustomerRows,
    offers: pd.DataFrame | OfferArrays,
    contacts: pd.DataFrame | Mapping[str, np.ndarray] | ContactArrays,
    context: Context | Mapping[str, Context] | None,
    as_of: pd.Timestamp,
    *,
    categories: tuple[str, ...] = CATEGORIES,
    dtype: type[np.floating] = np.float64,
) -> np.ndarray:
    """The candidate features as one array (rows customer-major, columns `CANDIDATE_COLUMNS`).

    What `build_candidate_features` returns without the DataFrame around it: the online service
    passes `dtype=np.float32` and feeds the result straight to the model (every value is computed
    in float64 and rounded once when written, exactly as `astype(np.float32)` of the float64
    matrix). `offers` may be prepared once with `prepare_offers` (saves ~0.5 ms per call).

    Each column is written once into one preallocated block (column-major while filling, so every
    write is contiguous; one transposing copy at the end): no dict of columns stacked afterwards,
    and the customer columns are repeated over the offers as one block. For one customer the ids
    go to the contact code as a one-element array, not a `pd.Index` (~10 us per request).
    """
    as_of = check_as_of(as_of)
    offers = prepare_offers(offers, categories)
    ids = customer_features.ids if isinstance(customer_features, CustomerRows) else customer_features.index.to_numpy(dtype=object)
    # `encode_contacts` / `contact_history` read only `len` and `[0]` of a one-customer index.
    customers = ids if len(ids) == 1 else pd.Index(ids, name="customer_id", dtype=object)
    n_c, n_o = len(customers), len(offers)
    n = n_c * n_o
    if not n:
        return np.empty((0, len(CANDIDATE_COLUMNS)), dtype=dtype)
    rows = np.repeat(np.arange(n_c), n_o)
    offer_idx = np.tile(np.arange(n_o), n_c)
    # Pre-encoded contacts (`encode_contacts_at`) carry each row's own moment; else seen from as_of.
    encoded = contacts if isinstance(contacts, ContactArrays) else encode_contacts(contacts, customers, as_of)
    history = contact_history(encoded, customers, as_of)
    cust = _CustomerArrays(customer_features, categories)
    block = np.empty((len(CANDIDATE_COLUMNS), n), dtype=dtype)  # one row per column while filling
    col = _CANDIDATE_INDEX

    def put(name: str, values: np.ndarray) -> None:
        block[col[name]] = values

    per_customer = np.array(
        [history[name] if name in CONTACT_HISTORY_COLUMNS else cust.columns[name] for name in CUSTOMER_COLUMNS_FOR_CANDIDATES]
    )  # (customer columns, customers), float64
    block[: len(CUSTOMER_COLUMNS_FOR_CANDIDATES)] = per_customer if n_o == 1 else np.repeat(per_customer, n_o, axis=1)

    declared = offers.category_code[offer_idx]
    slot = np.where(declared >= 0, declared, len(categories))
    put("offer_cat_views_30d", cust.matrix("page_views_30d", "product_views_30d")[rows, slot])
    put("offer_cat_searches_30d", cust.matrix("searches_30d")[rows, slot])
    put("offer_cat_cart_adds_30d", cust.matrix("cart_adds_30d")[rows, slot])
    put("offer_cat_views_7d", cust.matrix("page_views_7d", "product_views_7d")[rows, slot])
    put("offer_cat_searches_7d", cust.matrix("searches_7d")[rows, slot])
    put("offer_cat_cart_adds_7d", cust.matrix("cart_adds_7d")[rows, slot])
    year_views = cust.matrix("views_365d")[rows, slot]
    total_views = cust.columns["views_365d"][rows]
    put("offer_cat_view_share_365d", np.divide(year_views, total_views, out=np.zeros(n), where=total_views > 0))
    for h in DECAY_HALF_LIVES:
        put(f"offer_cat_browse_hl{h}d", cust.matrix(f"browse_hl{h}d")[rows, slot])
    undeclared = declared < 0
    for stem in ("days_since_browse", "days_since_purchase"):
        put(f"offer_cat_{stem}", np.where(undeclared, NEVER_DAYS, cust.matrix(stem)[rows, slot]))
    cat_days = cust.matrix("active_days_365d")
    all_days = cat_days.sum(axis=1)[rows]
    put("offer_cat_day_share_365d", np.divide(cat_days[rows, slot], all_days, out=np.zeros(n), where=all_days > 0))
    # Laplace-smoothed: a customer seen on one day is not 100% into that category (an undeclared
    # category gets 0).
    k = len(categories)
    put("offer_cat_day_share_smoothed_365d", np.where(undeclared, 0.0, (cat_days[rows, slot] + 1.0) / (all_days + k)))
    # Days the category led the customer's browsing and purchases, shrunk towards 1/k: the
    # posterior mean of the customer's interest in it (an undeclared category gets 0).
    main_days = cust.matrix("main_days_365d")
    all_main = main_days.sum(axis=1)[rows]
    put("offer_cat_main_day_share_365d",
        np.where(undeclared, 0.0, (main_days[rows, slot] + MAIN_DAY_PRIOR) / (all_main + MAIN_DAY_PRIOR * k)))
    bought = cust.matrix("purchases_365d")[rows, slot]
    put("offer_cat_purchases_365d", bought)
    total = cust.columns["purchases_365d"][rows]
    put("offer_cat_purchase_share_365d", np.divide(bought, total, out=np.zeros(n), where=total > 0))
    put("offer_cat_bought_30d", cust.matrix("purchases_30d")[rows, slot] > 0)
    put("offer_cat_is_top", (cust.columns["top_category_code"][rows] == declared) & (declared >= 0))
    put("offer_cat_is_next", (cust.columns["next_category_code"][rows] == declared) & (declared >= 0))
    for name, values in _exposures(encoded, n_c, offers).items():
        put(name, values)

    kind = offers.kind_code[offer_idx]
    put("stage_kind_code", stage_kind_code(cust.columns["days_since_activity"][rows], cust.columns["purchases_total"][rows], kind))
    for j, name in enumerate(OFFER_KINDS):
        put(f"offer_kind_{name}", kind == j)
    put("offer_kind_code", kind)
    put("offer_category_code", declared)
    put("offer_value", offers.value[offer_idx])
    put("offer_cost", offers.cost[offer_idx])
    context_cols = _context_rows(context, customers, offers, as_of)
    for name, values in context_cols.items():
        put(name, values)
    # From the float64 inputs (not from `block`, which may be float32 already).
    put("ctx_channel_habit", channel_habit(context_cols["ctx_channel_code"], cust.columns["online_visit_share_365d"][rows]))
    return np.ascontiguousarray(block.T)


_CANDIDATE_INDEX: dict[str, int] = {name: j for j, name in enumerate(CANDIDATE_COLUMNS)}


def build_candidate_features(
    customer_features: pd.DataFrame,
    offers: pd.DataFrame | OfferArrays,
    contacts: pd.DataFrame,
    context: Context | Mapping[str, Context] | None,
    as_of: pd.Timestamp,
    *,
    categories: tuple[str, ...] = CATEGORIES,
) -> pd.DataFrame:
    """One row per (customer_id, offer_id), customer-major in the order of the inputs.

    `customer_features` is the output of `build_customer_features` (or its materialised rows);
    its contact-history columns are recomputed from `contacts` as of `as_of`. `context` is one
    `Context` for every customer, a mapping customer_id -> Context (missing ids get NaN context
    features), or None (all context features NaN).
    """
    offers = prepare_offers(offers, categories)
    block = candidate_matrix(customer_features, offers, contacts, context, as_of, categories=categories)
    n_c, n_o = len(customer_features), len(offers)
    frame = pd.DataFrame(block, columns=list(CANDIDATE_COLUMNS))
    frame.insert(0, "offer_id", pd.array(np.tile(offers.ids, n_c), dtype="str"))
    customer_ids = np.repeat(customer_features.index.to_numpy(dtype=object), n_o)
    frame.insert(0, "customer_id", pd.array(customer_ids, dtype="str"))
    return frame


def build_exposure_features(
    customer_features: pd.DataFrame,
    offers: pd.DataFrame | OfferArrays,
    contacts: pd.DataFrame,
    exposures: pd.DataFrame,
    as_of: pd.Timestamp,
    *,
    categories: tuple[str, ...] = CATEGORIES,
) -> pd.DataFrame:
    """Training rows: one per exposure (same order), the candidate features of its (customer, offer):
    customer columns from `customer_features` (the snapshot as of `as_of`), contact-history columns
    from `contacts` as of the exposure's own time (what the service sees: a materialised row plus
    the live contact log), and the context the exposure had: its channel, hour and weekday, and, when
    `exposures` has the columns `page_category` / `session_categories` (see
    `features.session.exposure_sessions`), its page and session (device: unknown).

    Equals `build_candidate_features(customer row, offers, contacts, Context(channel=...,
    hour_of_day=..., day_of_week=..., page_category=..., session_categories=...), exposure ts)` row
    for row (tested). Every exposure must be at or after `as_of` (the point-in-time join:
    features strictly before the exposure). Exposures of customers absent from `customer_features`
    (e.g. signed up after `as_of`) get NaN customer and customer x offer columns.
    """
    as_of = check_as_of(as_of)
    offers = prepare_offers(offers, categories)
    ts = exposures["ts"]
    early = ts < as_of
    if early.any():
        raise NboError(f"{int(early.sum())} exposure(s) happen before as_of {as_of}; features would see them")
    opos = _offer_positions(offers, exposures["offer_id"].to_numpy(dtype=object))
    if (opos < 0).any():
        missing = exposures["offer_id"].to_numpy(dtype=object)[opos < 0][0]
        raise NboError(f"{int((opos < 0).sum())} exposure(s) of an offer not in offers, e.g. {missing!r}")
    customers = pd.Index(customer_features.index.to_numpy(dtype=object), dtype=object)
    exposure_customers = exposures["customer_id"].to_numpy(dtype=object)
    cpos = customers.get_indexer(exposure_customers)
    n_e, n_o = len(exposures), len(offers)
    if len(customers) and n_e:
        # One row per opportunity (customer, moment): its customer's snapshot row, and the contact
        # log as the service would see it then (contacts strictly before it). Exposures sharing an
        # opportunity (every offer scored for one visit, as the closed-loop simulation asks) share
        # its candidate block instead of building one block of all offers per exposure.
        moments = ts.to_numpy(dtype="datetime64[ns]")
        moment_code, moment_values = pd.factorize(moments.view(np.int64))
        opportunity = pd.factorize(pd.factorize(exposure_customers)[0] * len(moment_values) + moment_code)[0]
        first = np.unique(opportunity, return_index=True)[1]  # each opportunity's first exposure
        per_opportunity = CustomerRows.from_frame(customer_features).take(np.where(cpos >= 0, cpos, 0)[first])
        seen = encode_contacts_at(contacts, exposure_customers[first], moments[first])
        block = candidate_matrix(per_opportunity, offers, seen, None, as_of, categories=categories)
        rows = block[opportunity * n_o + opos]
    else:
        rows = np.full((n_e, len(CANDIDATE_COLUMNS)), np.nan)
    column = _CANDIDATE_INDEX
    unknown = cpos < 0
    if unknown.any():
        rows[np.ix_(unknown, [column[c] for c in (*CUSTOMER_COLUMNS_FOR_CANDIDATES, *PAIR_COLUMNS)])] = np.nan
    for j, name in enumerate(OFFER_KINDS):  # offer columns do not depend on the customer
        rows[:, column[f"offer_kind_{name}"]] = offers.kind_code[opos] == j
    rows[:, column["offer_kind_code"]] = offers.kind_code[opos]
    rows[:, column["offer_category_code"]] = offers.category_code[opos]
    rows[:, column["offer_value"]] = offers.value[opos]
    rows[:, column["offer_cost"]] = offers.cost[opos]
    context = context_columns(
        offers,
        opos,
        channel=exposures["channel"].to_numpy(dtype=object),
        hour=ts.dt.hour.to_numpy(),
        day_of_week=ts.dt.day_of_week.to_numpy(),
        page_category=exposures["page_category"].to_numpy(dtype=object) if "page_category" in exposures else None,
        session_categories=(
            [tuple(s) for s in exposures["session_categories"]] if "session_categories" in exposures else ()
        ),
    )
    for name, values in context.items():
        rows[:, column[name]] = values
    rows[:, column["ctx_channel_habit"]] = channel_habit(
        rows[:, column["ctx_channel_code"]], rows[:, column["online_visit_share_365d"]]
    )
    frame = pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS))
    frame.insert(0, "offer_id", pd.array(offers.ids[opos], dtype="str"))
    frame.insert(0, "customer_id", pd.array(exposures["customer_id"].to_numpy(dtype=object), dtype="str"))
    return frame

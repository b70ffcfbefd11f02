"""The on-site context of logged exposures, rebuilt from the events that preceded them.

At request time the caller of the online service says which page the customer is on and which
categories the current session has visited (`Context.page_category`, `Context.session_categories`).
A logged web or app exposure had the same context, and the events table still holds it: the events
on the exposure's channel in the `window` before it. Training rebuilds it here, so the model learns
from the same context columns the service fills (point in time: only events strictly before the
exposure are read).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Events on the exposure's channel at most this long before it form its session.
SESSION_WINDOW = pd.Timedelta(minutes=30)
_ON_SITE = ("web", "app")


def exposure_sessions(
    events: pd.DataFrame, exposures: pd.DataFrame, window: pd.Timedelta = SESSION_WINDOW
) -> pd.DataFrame:
    """`page_category` and `session_categories` of each exposure (same order and index).

    For an exposure on `web` or `app`: the customer's events on that channel with
    `ts - window <= event ts < ts`; `page_category` is the category of the latest of them (None if
    it has none), `session_categories` the distinct non-empty categories in order of first visit.
    Other channels, or no such events: None and an empty tuple (what the service sees when the
    caller passes no page or session).
    """
    n = len(exposures)
    page = np.full(n, None, dtype=object)
    session: list[tuple[str, ...]] = [()] * n
    channel = exposures["channel"].to_numpy(dtype=object)
    on_site = np.flatnonzero(np.isin(channel, _ON_SITE))
    if "channel" not in events.columns:  # optional in the contract: no event is known to be on site
        site_events = events.iloc[:0]
    else:
        site_events = events[events["channel"].isin(_ON_SITE)]
    if len(on_site) and len(site_events):
        ev_cust = site_events["customer_id"].to_numpy(dtype=object)
        ex_cust = exposures["customer_id"].to_numpy(dtype=object)[on_site]
        codes, _ = pd.factorize(np.concatenate([ev_cust, ex_cust]))
        m = len(ev_cust)
        ev_key = codes[:m].astype(np.int64) * 2 + (site_events["channel"].to_numpy(dtype=object) == "app")
        ex_key = codes[m:].astype(np.int64) * 2 + (channel[on_site] == "app")
        ev_ts = site_events["ts"].to_numpy(dtype="datetime64[ns]").view(np.int64)
        order = np.lexsort((ev_ts, ev_key))
        ev_key, ev_ts = ev_key[order], ev_ts[order]
        if "category" in site_events.columns:
            ev_cat = site_events["category"].to_numpy(dtype=object, na_value=None)[order]
        else:  # optional in the contract: the session's pages are known, their categories not
            ev_cat = np.full(len(order), None, dtype=object)
        ex_ts = exposures["ts"].to_numpy(dtype="datetime64[ns]").view(np.int64)[on_site]
        start = np.searchsorted(ev_key, ex_key, side="left")
        end = np.searchsorted(ev_key, ex_key, side="right")
        span = window.value
        for i in np.flatnonzero(end > start):
            a, b = start[i], end[i]
            block = ev_ts[a:b]
            hi = a + np.searchsorted(block, ex_ts[i], side="left")
            lo = a + np.searchsorted(block, ex_ts[i] - span, side="left")
            if hi <= lo:
                continue
            cats = [c for c in ev_cat[lo:hi] if isinstance(c, str) and c]
            row = on_site[i]
            last = ev_cat[hi - 1]
            page[row] = last if isinstance(last, str) and last else None
            session[row] = tuple(dict.fromkeys(cats))
    return pd.DataFrame(
        {
            "page_category": pd.Series(page, index=exposures.index, dtype=object),
            "session_categories": pd.Series(session, index=exposures.index, dtype=object),
        }
    )

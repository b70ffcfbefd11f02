"""What the data looks like: summaries and charts the exploration notebook shows.

The notebook only calls these; anything it needs lives here, tested, so the notebook cannot rot
into a second source of truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbo.data import TABLE_NAMES, Dataset
from nbo.vocab import LIFECYCLE_STAGES


def table_summary(data: Dataset) -> pd.DataFrame:
    """Rows, customers covered and time span of each table."""
    rows = []
    for name in TABLE_NAMES:
        frame = data.table(name)
        ts_col = {"customers": "signup_ts", "offers": "valid_from"}.get(name, "ts")
        ts = frame[ts_col] if ts_col in frame else pd.Series(dtype="datetime64[ns]")
        rows.append({
            "table": name,
            "rows": len(frame),
            "customers": frame["customer_id"].nunique() if "customer_id" in frame else np.nan,
            "from": ts.min() if len(ts) else pd.NaT,
            "to": ts.max() if len(ts) else pd.NaT,
        })
    return pd.DataFrame(rows).set_index("table")


def event_mix(data: Dataset) -> pd.DataFrame:
    """Events by type and channel: where online and offline behaviour meet."""
    return data.events.pivot_table(index="type", columns="channel", values="customer_id", aggfunc="count",
                                   fill_value=0, observed=True)


def contact_outcomes(data: Dataset) -> pd.DataFrame:
    """Contacts and acceptance rate per channel."""
    contacts = data.contacts
    if contacts.empty:
        return pd.DataFrame(columns=["contacts", "acceptance_rate"])
    grouped = contacts.groupby("channel", observed=True)["outcome"]
    return pd.DataFrame({"contacts": grouped.size(), "acceptance_rate": grouped.apply(lambda s: (s == "accepted").mean())})


def rfm_chart(features: pd.DataFrame) -> Figure:
    """Distributions of recency, frequency and monetary value among customers who bought."""
    buyers = features[features["purchases_365d"] > 0]
    fig = Figure(figsize=(12, 3.5))
    axes = fig.subplots(1, 3)
    axes[0].hist(buyers["recency_days"].clip(upper=365), bins=40)
    axes[0].set(title="recency (days since last purchase)", xlabel="days")
    axes[1].hist(buyers["purchases_365d"].clip(upper=buyers["purchases_365d"].quantile(0.99)), bins=30)
    axes[1].set(title="frequency (purchases, 365 d)")
    axes[2].hist(np.log10(buyers["spend_365d"].clip(lower=1)), bins=40)
    axes[2].set(title="monetary (log10 spend, 365 d)")
    fig.tight_layout()
    return fig


def lifecycle_funnel(features: pd.DataFrame) -> pd.Series:
    """Customers per lifecycle stage, in lifecycle order."""
    counts = features["lifecycle"].value_counts()
    return counts.reindex(list(LIFECYCLE_STAGES), fill_value=0)


def lifecycle_chart(features: pd.DataFrame) -> Figure:
    """The lifecycle funnel as a horizontal bar chart (new at the top, lapsed at the bottom)."""
    funnel = lifecycle_funnel(features)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.barh(funnel.index[::-1], funnel.values[::-1], color="tab:blue")
    for y, v in enumerate(funnel.values[::-1]):
        ax.text(v, y, f" {v:,}", va="center", fontsize=8)
    ax.set(title="lifecycle stages", xlabel="customers")
    fig.tight_layout()
    return fig

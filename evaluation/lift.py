"""Lift against the control group (issue 21 item 5): what contacts added over doing nothing.

Read from a data directory's randomised log (docs/data.md): every contact (`contacts`) is a
treated decision; every decision of the universal control group (`no_offers` with reason
`control`; with `baseline="randomised"` also the randomised no-offer draws, `explore`) is a
control decision. A decision's outcome is what its customer buys within `window_days` after it
(`events` purchases in (ts, ts + window]): a conversion (0/1) and revenue (the purchases'
amounts, currency units). Decisions whose window has not closed by the end of the data are left
out, and so are decisions outside [since, until).

Segments: the whole log, each channel, each programme (the offers' `kind`) and each offer.
Channels, programmes and the whole log count any purchase; an offer counts purchases of its own
category (the control decisions' purchases of that category are its baseline). Only channels with
control decisions can be measured (the control group holds consent channels: a web banner has no
"not shown" twin); contacts on other channels are counted as `unmeasured_contacts`.

Estimate per segment, with n_T contacts and control decisions on the same channels:

    incremental conversions = (mean conversion of the contacts - mean of the control) x n_T
    incremental revenue     = (mean revenue of the contacts - mean of the control) x n_T

with a 95 % confidence interval from the normal approximation of the difference in means. The
variance of each mean is clustered by customer (one customer's decisions are not independent):
var = sum over customers of (Y_i - mean x N_i)^2 / (sum N_i)^2, with Y_i the customer's summed
outcome and N_i their decisions in the group.

Also: a Qini curve over offers (offers ranked by incremental conversions per contact, best
first; x: the share of measured contacts, y: the incremental conversions of the offers so far)
and the incremental revenue week by week with its interval and running total.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbo.data import Dataset
from nbo.errors import NboError

Z95 = 1.959963984540054
BASELINES = {"control": ("control",), "randomised": ("control", "explore")}


@dataclass(frozen=True)
class LiftReport:
    """The lift figures (`as_dict`: the JSON), the Qini curve over offers and the weekly series."""

    summary: dict[str, object]
    segments: list[dict[str, object]]
    qini: pd.DataFrame  # share_of_contacts, incremental_conversions, offer_id
    over_time: pd.DataFrame  # week, contacts, incremental_revenue, low, high, cumulative

    def as_dict(self) -> dict[str, object]:
        return {
            "summary": self.summary,
            "segments": self.segments,
            "qini": {"x": "share of measured contacts, offers ranked by incremental conversions per contact",
                     "points": _records(self.qini)},
            "over_time": _records(self.over_time),
        }

    def figures(self) -> dict[str, Figure]:
        return {"qini": qini_chart(self.qini), "over_time": over_time_chart(self.over_time)}


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    out = frame.copy()
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            out[c] = out[c].dt.strftime("%Y-%m-%d")
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
            for r in out.to_dict("records")]


def _outcomes(rows: pd.DataFrame, buys: pd.DataFrame, window: pd.Timedelta, by_category: bool) -> pd.DataFrame:
    """Conversion and revenue of each row within its window: any purchase, or (`by_category`)
    one of the row's `category`."""
    keys = ["customer_id", "category"] if by_category else ["customer_id"]
    left = rows[[*keys, "ts"]].reset_index(drop=True).assign(row=lambda f: np.arange(len(f)))
    both = left.merge(buys[[*keys, "buy_ts", "amount"]], on=keys, how="inner")
    hit = both[(both["buy_ts"] > both["ts"]) & (both["buy_ts"] <= both["ts"] + window)]
    revenue = hit.groupby("row")["amount"].sum().reindex(np.arange(len(rows)), fill_value=0.0).to_numpy(np.float64)
    converted = np.zeros(len(rows))
    converted[hit["row"].unique()] = 1.0
    return pd.DataFrame({"conversion": converted, "revenue": revenue})


def _mean_var(customers: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean of `y` and its variance clustered by customer (module docstring)."""
    if len(y) == 0:
        return float("nan"), float("nan")
    frame = pd.DataFrame({"c": customers, "y": y})
    by = frame.groupby("c")["y"].agg(["sum", "size"])
    mean = float(y.mean())
    var = float(((by["sum"] - mean * by["size"]) ** 2).sum() / len(y) ** 2)
    return mean, var


def _estimate(treated: pd.DataFrame, control: pd.DataFrame, column: str) -> dict[str, float | None]:
    mt, vt = _mean_var(treated["customer_id"].to_numpy(), treated[column].to_numpy())
    mc, vc = _mean_var(control["customer_id"].to_numpy(), control[column].to_numpy())
    n = len(treated)
    diff = mt - mc
    half = Z95 * np.sqrt(vt + vc)
    nums = {"contacts_mean": mt, "control_mean": mc, "incremental": diff * n, "low": (diff - half) * n,
            "high": (diff + half) * n, "per_contact": diff}
    return {k: (float(v) if np.isfinite(v) else None) for k, v in nums.items()}


def lift(data: Dataset, since: pd.Timestamp | None = None, until: pd.Timestamp | None = None,
         window_days: int = 7, baseline: str = "control") -> LiftReport:
    """The lift of the log's contacts against the control decisions (module docstring)."""
    if baseline not in BASELINES:
        raise NboError(f"--baseline {baseline!r}: use one of {', '.join(BASELINES)}")
    if window_days < 1:
        raise NboError("--window-days must be at least 1")
    if since is not None and until is not None and since >= until:
        raise NboError(f"--since {since} is not before --until {until}")
    if data.contacts.empty:
        raise NboError("the data has no contacts: nothing to measure")
    no_offers = data.no_offers
    if no_offers is None or no_offers.empty:
        raise NboError("the data has no no_offers table: there is no control group to measure lift against "
                       "(log one: [control_group] share in policy.toml, docs/policy.md)")
    window = pd.Timedelta(days=window_days)
    events = data.events
    end = max(events["ts"].max() if len(events) else pd.Timestamp.min, data.contacts["ts"].max())

    def period(frame: pd.DataFrame) -> pd.DataFrame:
        keep = frame["ts"] + window <= end
        if since is not None:
            keep &= frame["ts"] >= since
        if until is not None:
            keep &= frame["ts"] < until
        return frame[keep]

    offers = data.offers.set_index("offer_id")
    contacts = period(data.contacts)[["decision_id", "customer_id", "offer_id", "channel", "ts"]].copy()
    control = period(no_offers[no_offers["reason"].isin(BASELINES[baseline])])[["decision_id", "customer_id", "channel", "ts"]].copy()
    if control.empty:
        raise NboError(f"no {baseline} decisions without contact whose {window_days}-day window closed in the period: "
                       "nothing to measure lift against")
    contacts["category"] = offers["category"].reindex(contacts["offer_id"]).to_numpy()
    contacts["kind"] = offers["kind"].reindex(contacts["offer_id"]).to_numpy()
    measured = contacts["channel"].isin(set(control["channel"]))
    unmeasured = int((~measured).sum())
    contacts = contacts[measured].reset_index(drop=True)
    if contacts.empty:
        raise NboError("no contact in the period is on a channel with control decisions: nothing to measure")
    buys = events.loc[events["type"] == "purchase", ["customer_id", "category", "ts", "amount"]].rename(columns={"ts": "buy_ts"})
    buys["amount"] = pd.to_numeric(buys["amount"], errors="coerce").fillna(0.0)
    contacts = pd.concat([contacts, _outcomes(contacts, buys, window, by_category=False)], axis=1)
    control = pd.concat([control.reset_index(drop=True), _outcomes(control, buys, window, by_category=False)], axis=1)

    segments: list[dict[str, object]] = []

    def add(level: str, name: str, treated: pd.DataFrame, base: pd.DataFrame, outcome: str) -> dict[str, object]:
        row = {"level": level, "name": name, "outcome": outcome, "contacts": len(treated), "control_decisions": len(base),
               "conversions": _estimate(treated, base, "conversion"), "revenue": _estimate(treated, base, "revenue")}
        segments.append(row)
        return row

    total = add("total", "all", contacts, control, "any purchase")
    for ch, part in contacts.groupby("channel", sort=True):
        add("channel", str(ch), part, control[control["channel"] == ch], "any purchase")
    for kind, part in contacts.groupby("kind", sort=True):
        add("programme", str(kind), part, control[control["channel"].isin(set(part["channel"]))], "any purchase")
    # Offers: purchases of the offer's own category, the control decisions' purchases of it as baseline.
    cat_contacts = _outcomes(contacts, buys, window, by_category=True)
    per_offer = contacts[["customer_id", "offer_id", "category", "channel"]].assign(**cat_contacts)
    offer_rows = []
    for oid, part in per_offer.groupby("offer_id", sort=True):
        base = control[control["channel"].isin(set(part["channel"]))][["customer_id", "ts"]].copy()
        base["category"] = part["category"].iloc[0]
        base = pd.concat([base.reset_index(drop=True), _outcomes(base, buys, window, by_category=True)], axis=1)
        row = add("offer", str(oid), part, base, f"purchase of {part['category'].iloc[0]}")
        offer_rows.append((str(oid), len(part), row["conversions"]["incremental"] or 0.0,
                           row["conversions"]["per_contact"] or 0.0))
    # Qini over offers: best incremental conversion per contact first.
    offer_rows.sort(key=lambda r: (-r[3], r[0]))
    n = sum(r[1] for r in offer_rows)
    qini = pd.DataFrame({
        "share_of_contacts": np.r_[0.0, np.cumsum([r[1] for r in offer_rows]) / n],
        "incremental_conversions": np.r_[0.0, np.cumsum([r[2] for r in offer_rows])],
        "offer_id": ["", *[r[0] for r in offer_rows]],
    })
    # Week by week (weeks starting on Monday), the same estimator on each week's decisions.
    weeks = []
    c_week = control["ts"].dt.to_period("W-SUN").dt.start_time
    for week, part in contacts.groupby(contacts["ts"].dt.to_period("W-SUN").dt.start_time, sort=True):
        est = _estimate(part, control[c_week == week], "revenue")
        weeks.append({"week": week, "contacts": len(part), "incremental_revenue": est["incremental"],
                      "low": est["low"], "high": est["high"]})
    over_time = pd.DataFrame(weeks)
    over_time["cumulative"] = over_time["incremental_revenue"].astype(float).fillna(0.0).cumsum()
    summary = {
        "since": str(since) if since is not None else None, "until": str(until) if until is not None else None,
        "first_decision": str(min(contacts["ts"].min(), control["ts"].min())),
        "last_decision": str(max(contacts["ts"].max(), control["ts"].max())),
        "window_days": window_days, "baseline": baseline, "baseline_reasons": list(BASELINES[baseline]),
        "contacts": len(contacts), "control_decisions": len(control), "unmeasured_contacts": unmeasured,
        "incremental_conversions": total["conversions"], "incremental_revenue": total["revenue"],
        "interval": "95 %, normal approximation of a difference in means, variances clustered by customer",
        "currency": "the data's amounts (events.amount)",
    }
    return LiftReport(summary, segments, qini, over_time)


def qini_chart(qini: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(qini["share_of_contacts"], qini["incremental_conversions"], marker=".", label="offers, best first")
    ax.plot([0, 1], [0, float(qini["incremental_conversions"].iloc[-1])], "k--", label="random order")
    ax.set(xlabel="share of measured contacts", ylabel="incremental conversions", title="Qini curve over offers")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def over_time_chart(over_time: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    if len(over_time):
        x = over_time["week"]
        ax.bar(x, over_time["incremental_revenue"].astype(float).fillna(0.0), width=5, label="week (95 % interval)",
               yerr=None, alpha=0.6)
        low, high = over_time["low"].astype(float), over_time["high"].astype(float)
        ax.vlines(x, low, high, color="grey", linewidth=1)
        ax.plot(x, over_time["cumulative"], color="C1", label="running total")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(xlabel="week of the decision", ylabel="incremental revenue", title="Incremental revenue vs the control group")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig

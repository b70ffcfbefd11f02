"""The console's charts, drawn on the server by matplotlib as SVG (text as paths: no font is loaded).

A page embeds a chart as `<img src="data:image/svg+xml;base64,...">`: an SVG shown as an image
runs no script, and nothing is fetched from anywhere.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbo.vocab import LIFECYCLE_STAGES, ONLINE_CHANNELS

OUTCOME_COLOURS = {"accepted": "#1a7f37", "clicked": "#2f6fd0", "declined": "#c0392b", "ignored": "#8c8c8c",
                   "pending": "#d4a017"}


def svg_data_uri(fig: Figure) -> str:
    """The figure as an SVG data URI (no creation date: the same chart gives the same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def timeline_chart(events: pd.DataFrame, contacts: pd.DataFrame, stages: pd.DataFrame) -> str | None:
    """Lifecycle stage over time (top) above the customer's events and contacts (bottom)."""
    if not len(events) and not len(contacts) and not len(stages):
        return None
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1.4])
    if len(stages):
        codes = [LIFECYCLE_STAGES.index(s) if s in LIFECYCLE_STAGES else np.nan for s in stages["lifecycle"]]
        top.step(pd.to_datetime(stages["as_of"]), codes, where="post", color="#444", marker="o", markersize=3)
    top.set_yticks(range(len(LIFECYCLE_STAGES)), LIFECYCLE_STAGES, fontsize=7)
    top.set_ylim(-0.5, len(LIFECYCLE_STAGES) - 0.5)
    top.set_title("lifecycle stage", fontsize=9, loc="left")
    lanes = {"online events": 2, "offline events": 1, "contacts": 0}
    if len(events):
        is_online = events["channel"].isin(ONLINE_CHANNELS) if "channel" in events else pd.Series(False, index=events.index)
        bought = (events["type"] == "purchase").to_numpy()
        for lane, mask in (("online events", is_online.to_numpy()), ("offline events", ~is_online.to_numpy())):
            ts = pd.to_datetime(events["ts"])
            bottom.scatter(ts[mask & ~bought], np.full((mask & ~bought).sum(), lanes[lane]), s=6, color="#7a8fa6",
                           alpha=0.6, linewidths=0)
            bottom.scatter(ts[mask & bought], np.full((mask & bought).sum(), lanes[lane]), s=28, color="#1f3b57",
                           marker="D", linewidths=0, label="purchase" if lane == "online events" else None)
    if len(contacts):
        for outcome, colour in OUTCOME_COLOURS.items():
            mask = (contacts["outcome"] == outcome).to_numpy() if "outcome" in contacts else np.zeros(len(contacts), bool)
            if mask.any():
                bottom.scatter(pd.to_datetime(contacts["ts"])[mask], np.zeros(mask.sum()), s=22, color=colour,
                               marker="s", linewidths=0, label=outcome)
    bottom.set_yticks(list(lanes.values()), list(lanes), fontsize=7)
    bottom.set_ylim(-0.6, 2.6)
    bottom.tick_params(axis="x", labelsize=7)
    handles, labels = bottom.get_legend_handles_labels()
    if handles:
        bottom.legend(handles, labels, fontsize=7, ncols=min(len(labels), 6), loc="upper left",
                      bbox_to_anchor=(0, -0.18), frameon=False)
    return svg_data_uri(fig)


def comparison_chart(days: Sequence[pd.DataFrame], names: Sequence[str]) -> str:
    """Cumulative net value of offers and active customers per day, one line per policy."""
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    styles = ("-", "--", ":")
    for i, (daily, name) in enumerate(zip(days, names, strict=True)):
        left.plot(daily["day"], daily["net_value_cum"], styles[i % 3], label=name)
        right.plot(daily["day"], daily["active_end_of_day"], styles[i % 3], label=name)
    left.set(title="cumulative net value of offers", xlabel="day")
    right.set(title="active customers", xlabel="day")
    left.legend(fontsize=8)
    return svg_data_uri(fig)


def ope_chart(estimates: dict[str, dict[str, dict[str, object]]], logged: dict[str, object]) -> str:
    """Off-policy estimates per decision (DR, SNIPS, IPS with 95 % intervals) of each policy, next
    to what the logging policy observed: value (left) and acceptance (right)."""
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, reward in zip(axes, ("value", "acceptance"), strict=True):
        labels, values, lows, highs = ["logged\n(observed)"], [logged[reward].value], [logged[reward].low], \
            [logged[reward].high]  # type: ignore[attr-defined]
        for policy, by_reward in estimates.items():
            for name in ("dr", "snips", "ips"):
                est = by_reward[reward][name]
                labels.append(f"{policy}\n{name.upper()}")
                values.append(est.value)  # type: ignore[attr-defined]
                lows.append(est.low)  # type: ignore[attr-defined]
                highs.append(est.high)  # type: ignore[attr-defined]
        x = np.arange(len(values))
        v = np.asarray(values, dtype=float)
        ax.errorbar(x, v, yerr=[v - np.asarray(lows, dtype=float), np.asarray(highs, dtype=float) - v], fmt="o",
                    capsize=4)
        ax.set_xticks(x, labels, fontsize=6, rotation=45, ha="right")
        ax.set_title(f"{reward} per logged decision (95 % CI)", fontsize=9)
    return svg_data_uri(fig)

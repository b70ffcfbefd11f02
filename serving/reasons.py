"""Reasons in plain words: the one place that says, for every reason code nbo gives, what it means.

A decision carries reason *codes* (stable, for programs: `offer_cat_views_7d:+0.35`, `cap_channel`)
and, next to them, *texts* for people ("viewed Travel 3 times in the last 7 days", "email cap
reached (2 in 7 days)"). Every sentence is written here, nowhere else:

- `contribution_text`: a shown offer's feature contribution, from the feature's value in the
  candidate row (the customer x this offer) and the offer's category, with its direction;
- `arbiter_text`: the arbiter's own reasons for showing an offer (best expected value,
  exploration, the offer's rule, retention value);
- `suppression_text`: why a candidate was left out, with the policy's or the catalogue's setting
  that removed it; `suppression_setting`: that setting as the console names it (`SUPPRESSIONS`:
  both, one entry per reason).

`FEATURE_SENTENCES` has one entry per model input (`features.CANDIDATE_FEATURES`); a test fails
when a feature is added without its sentence (it would read `name = value`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from nbo.contract import ATTRIBUTE_PREFIX
from nbo.vocab import CONTACT_CHANNELS, LIFECYCLE_STAGES, OFFER_KINDS
from serving.caps import CAP_KINDS, limits

if TYPE_CHECKING:
    from serving.caps import Limit
    from serving.catalogue import CatalogueOffer
    from serving.policy import ContactPolicy

#: The suppression reasons of the caps (each reads its cap's numbers).
CAP_REASONS = frozenset(kind.reason for kind in CAP_KINDS)
#: 9999 days is "never" in every days-since feature (docs/features.md).
NEVER_DAYS = 9999
_DEVICES = ("desktop", "mobile", "tablet", "unknown")  # features.config.DEVICES (the code's order)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
#: Recency buckets of `stage_kind_code` (features.stage.STAGE_RECENCY_EDGES: 14, 30, 60, 120 days).
_STAGE_RECENCY = ("active in the last 2 weeks", "active in the last month", "active in the last 2 months",
                  "active in the last 4 months", "not active for over 4 months")

Sentence = Callable[[float, str], str]  # (feature value, the offer's category) -> fact


# ------------------------------------------------------------------------------ formatting
def _n(v: float) -> str:
    """A count: whole numbers without decimals, others with one."""
    return f"{v:,.0f}" if abs(v - round(v)) < 1e-9 else f"{v:,.1f}"


def _times(v: float) -> str:
    return "once" if v == 1 else f"{_n(v)} times"


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def _money(v: float) -> str:
    return f"{v:,.2f}"


def _never(v: float) -> bool:
    return v >= NEVER_DAYS


def _days_ago(what: str, never: str) -> Sentence:
    return lambda v, c: never.format(cat=c) if _never(v) else f"{what.format(cat=c)} {_n(v)} days ago"


def _count(template: str) -> Sentence:
    """`template` with {n} (a count, "once" / "N times" with {times}) and {cat}."""
    return lambda v, c: template.format(n=_n(v), times=_times(v), cat=c)


def _share(template: str) -> Sentence:
    return lambda v, c: template.format(pct=_pct(v), cat=c)


def _flag(yes: str, no: str) -> Sentence:
    return lambda v, c: (yes if v >= 0.5 else no).format(cat=c)


def _code(names: tuple[str, ...], template: str) -> Sentence:
    def say(v: float, c: str) -> str:
        i = int(v)
        return template.format(name=names[i] if 0 <= i < len(names) else "unknown", cat=c)
    return say


def _kind(code: float) -> str:
    i = int(code)
    return OFFER_KINDS[i].replace("_", "-") if 0 <= i < len(OFFER_KINDS) else "unknown"


def _a(word: str) -> str:
    """`word` with its indefinite article."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _stage_kind(v: float, c: str) -> str:
    stage, kind = divmod(int(v), len(OFFER_KINDS))
    bought, recency = divmod(stage, len(_STAGE_RECENCY))
    who = "who has bought before" if bought else "who has never bought"
    kind_name = _kind(kind)
    return f"{_a(kind_name)} offer for a customer {_STAGE_RECENCY[min(recency, 4)]} {who}"


def _pressure(channel: str) -> Sentence:
    where = f"{channel} " if channel else ""
    return lambda v, c: f"recent {where}contact pressure {v:.1f} (contacts, each fading over 3 days)"


# ------------------------------------------------------------------------------ the sentences
#: Model input -> the fact it states about this customer and offer (`{cat}`: the offer's category).
FEATURE_SENTENCES: dict[str, Sentence] = {
    # the customer: purchases
    "recency_days": _days_ago("last bought", "has never bought"),
    "tenure_days": _count("customer for {n} days"),
    "purchases_30d": _count("{n} purchases in the last 30 days"),
    "purchases_365d": _count("{n} purchases in the last year"),
    "spend_365d": lambda v, c: f"spent {_money(v)} in the last year",
    "avg_basket_365d": lambda v, c: f"average basket {_money(v)} over the last year",
    "r_score": _count("recency score {n} of 5"),
    "f_score": _count("frequency score {n} of 5"),
    "m_score": _count("spend score {n} of 5"),
    "categories_bought_365d": _count("bought in {n} categories in the last year"),
    "top_category_share_365d": _share("{pct} of last year's purchases in their top category"),
    # the customer: visits and activity
    "abandoned_carts_30d": _count("{n} abandoned carts in the last 30 days"),
    "days_since_web_visit": _days_ago("last visited the website", "never visited the website"),
    "days_since_app_visit": _days_ago("last used the app", "never used the app"),
    "days_since_activity": _days_ago("last active", "never active"),
    "active_days_30d": _count("active on {n} days in the last 30 days"),
    "active_days_365d": _count("active on {n} days in the last year"),
    "silence_score": lambda v, c: f"silent for about {v:.0f} of their usual active days",
    "silence_surprise": lambda v, c: (f"an unusually long silence for this customer (surprise {v:.1f})" if v >= 5
                                      else f"a usual silence for this customer (surprise {v:.1f})"),
    "activity_trend_30d": lambda v, c: f"active over the last 30 days at {v:.1f}x their yearly pace",
    "online_visit_share_365d": _share("{pct} of last year's visit days online"),
    "views_365d": _count("{n} page and product views in the last year"),
    "online_spend_share_365d": _share("{pct} of last year's spend online"),
    "lifecycle_code": _code(LIFECYCLE_STAGES, "lifecycle stage: {name}"),
    "loyalty_member": _flag("loyalty member", "not a loyalty member"),
    # the customer: contacts and answers
    "contacts_7d": _count("contacted {n} times in the last 7 days"),
    "contacts_30d": _count("contacted {n} times in the last 30 days"),
    "outbound_contacts_7d": _count("{n} emails, texts, pushes or letters in the last 7 days"),
    "days_since_last_contact": _days_ago("last contacted", "never contacted"),
    "acceptance_rate": _share("accepted {pct} of past offers"),
    "accepts_total": _count("accepted {n} offers so far"),
    "declines_total": _count("declined {n} offers so far"),
    "ignores_total": _count("ignored {n} offers so far"),
    **{f"pressure_{ch}": _pressure(ch) for ch in CONTACT_CHANNELS},
    "pressure_total": _pressure(""),
    # the customer and the offer's category
    "offer_cat_views_30d": _count("viewed {cat} {times} in the last 30 days"),
    "offer_cat_searches_30d": _count("searched {cat} {times} in the last 30 days"),
    "offer_cat_cart_adds_30d": _count("added {cat} to the cart {times} in the last 30 days"),
    "offer_cat_views_7d": _count("viewed {cat} {times} in the last 7 days"),
    "offer_cat_searches_7d": _count("searched {cat} {times} in the last 7 days"),
    "offer_cat_cart_adds_7d": _count("added {cat} to the cart {times} in the last 7 days"),
    "offer_cat_view_share_365d": _share("{pct} of last year's views in {cat}"),
    "offer_cat_browse_hl1d": lambda v, c: f"browsed {c} in the last days (weighted count {v:.1f}, half-life 1 day)",
    "offer_cat_browse_hl3d": lambda v, c: f"browsed {c} recently (weighted count {v:.1f}, half-life 3 days)",
    "offer_cat_browse_hl7d": lambda v, c: f"browsed {c} in the last weeks (weighted count {v:.1f}, half-life 7 days)",
    "offer_cat_days_since_browse": _days_ago("browsed {cat}", "never browsed {cat}"),
    "offer_cat_days_since_purchase": _days_ago("bought {cat}", "never bought {cat}"),
    "offer_cat_day_share_365d": _share("{pct} of last year's active days in {cat}"),
    "offer_cat_day_share_smoothed_365d": _share("about {pct} of last year's active days in {cat}"),
    "offer_cat_main_day_share_365d": _share("{cat} was the main interest on about {pct} of their days"),
    "offer_cat_purchases_365d": _count("bought {cat} {times} in the last year"),
    "offer_cat_purchase_share_365d": _share("{pct} of last year's purchases in {cat}"),
    "offer_cat_bought_30d": _flag("bought {cat} in the last 30 days", "no {cat} purchase in the last 30 days"),
    "offer_cat_is_top": _flag("{cat} is their top category", "{cat} is not their top category"),
    "offer_cat_is_next": _flag("browses {cat} but has never bought it", "{cat} is not a new category they browse"),
    # the customer and this offer
    "offer_exposures": _count("shown this offer {times} before"),
    "offer_accepts": _count("accepted this offer {times} before"),
    "offer_declines": _count("declined this offer {times} before"),
    "offer_ignores": _count("ignored this offer {times} before"),
    "offer_days_since_exposure": _days_ago("shown this offer", "never shown this offer"),
    "offer_cat_declines": _count("declined {cat} offers {times}"),
    "offer_cat_exposures": _count("shown {cat} offers {times}"),
    "offer_cat_accepts": _count("accepted {cat} offers {times}"),
    "offer_cat_clicks": _count("clicked {cat} offers {times}"),
    "stage_kind_code": _stage_kind,
    # the customer's own choices (features.choice_history)
    "offer_last_chosen": _flag("chose this offer last time", "did not choose this offer last time"),
    "offer_cat_last_chosen": _flag("chose this offer last time in {cat}", "did not choose this offer last time in {cat}"),
    "offer_days_since_choice": _days_ago("last chose this offer", "never chose this offer"),
    "offer_choice_share": _share("chose this offer in {pct} of their choices"),
    "offer_cat_choice_share": _share("chose this offer in {pct} of their {cat} choices"),
    "offer_loyalty": lambda v, c: f"loyalty to this offer {v:.2f} of 1 (recent choices weigh more)",
    "customer_switch_rate": _share("changed offer in {pct} of their consecutive choices"),
    # the offer
    "offer_code": lambda v, c: "this particular offer",
    **{f"offer_kind_{k}": _flag(f"{_a(k.replace('_', '-'))} offer", f"not {_a(k.replace('_', '-'))} offer") for k in OFFER_KINDS},
    "offer_kind_code": lambda v, c: f"{_a(_kind(v))} offer",
    "offer_category_code": lambda v, c: f"{_a(c)} offer",
    "offer_value": lambda v, c: f"offer value {_money(v)}",
    "offer_cost": lambda v, c: f"offer cost {_money(v)}",
    # the request's context
    "ctx_channel_code": _code(CONTACT_CHANNELS, "on {name}"),
    "ctx_hour_of_day": lambda v, c: f"at {int(v):02d}:00",
    "ctx_day_of_week": _code(_WEEKDAYS, "on a {name}"),
    "ctx_device_code": lambda v, c: f"on {_a(_DEVICES[int(v)] if 0 <= int(v) < len(_DEVICES) else 'unknown')} device",
    "ctx_session_length": _count("{n} categories browsed in this session"),
    "ctx_page_category_match": _flag("browsing {cat} right now", "not browsing {cat} right now"),
    "ctx_session_category_match": _flag("browsed {cat} in this session", "has not browsed {cat} in this session"),
    "ctx_offer_on_channel": _flag("the offer is made for this channel", "the offer is not made for this channel"),
    "ctx_channel_habit": _share("{pct} of their visits are on this kind of channel"),
}


def _category(category: str | None) -> str:
    return category.replace("_", " ").capitalize() if category else "this category"


#: A decision-time attribute's model columns (features.offer_attributes.ATTRIBUTE_STATS): suffix ->
#: what the column says of the offer's attribute, next to the same decision's other candidates.
_ATTRIBUTE_SUFFIXES = (
    ("_over_mean", "{name} {v:.2f}x the mean of the offers in this decision"),
    ("_minus_min", "{name} {v:.4g} above the lowest of the offers in this decision"),
    ("_rank", "{name} higher than {v:.0f} of the offers in this decision"),
)


def _attribute_sentence(rest: str) -> Sentence:
    """The sentence of column `attr_<rest>` (a decision-time offer attribute, `nbo.contract`)."""
    for suffix, template in _ATTRIBUTE_SUFFIXES:
        if rest.endswith(suffix):
            name = rest[: -len(suffix)].replace("_", " ")
            return lambda v, c, t=template, n=name: t.format(name=n, v=v)
    name = rest.replace("_", " ")
    return lambda v, c: f"{name} {v:.4g} at this moment"


def feature_fact(name: str, value: float | None, category: str | None = None) -> str:
    """What feature `name` with `value` says about the customer and an offer of `category`
    (`value` None: not known to the caller, the feature is named; NaN: missing in the data)."""
    if value is None:
        return name.replace("_", " ")
    if math.isnan(value):
        return f"{name.replace('_', ' ')}: unknown"
    say = FEATURE_SENTENCES.get(name)
    if say is None and name.startswith(ATTRIBUTE_PREFIX):
        say = _attribute_sentence(name[len(ATTRIBUTE_PREFIX):])
    if say is None:
        return f"{name} = {float(value):.4g}"
    return say(float(value), _category(category))


def contribution_text(name: str, value: float | None, contribution: float, category: str | None = None) -> str:
    """A feature contribution in plain words: the fact, and which way it moved the score."""
    way = "makes acceptance more likely" if contribution > 0 else "makes acceptance less likely"
    return f"{feature_fact(name, value, category)} - {way}"


def contribution_text_of(code: str, category: str | None = None) -> str:
    """The plain words of a contribution code `name:+0.123` whose feature value is not at hand."""
    name, _, value = code.rpartition(":")
    try:
        contribution = float(value)
    except ValueError:
        return code
    return contribution_text(name, None, contribution, category)


# ------------------------------------------------------------------------------ the arbiter's reasons
#: The arbiter's own reason codes for a shown offer (after the contributions); see `arbiter_text`.
BEST_VALUE = "best expected value"
BEST_INCREMENTAL = "best incremental value"  # arbitration.objective = "uplift"
EXPLORED = "explored"
RETENTION = "retention value: churn_probability x customer_value"
ELIGIBILITY_PREFIX = "eligibility: "


def arbiter_text(code: str, churn_probability: float = 0.0) -> str:
    """The sentence of one of the arbiter's reason codes."""
    if code == BEST_VALUE:
        return "the highest expected value among the offers allowed"
    if code == BEST_INCREMENTAL:
        return "the highest incremental value (what the contact adds over no contact) among the offers allowed"
    if code == EXPLORED:
        return "shown to learn how the customer answers (exploration), not for the highest expected value"
    if code == RETENTION:
        return f"a retention offer, valued at the risk of losing the customer ({_pct(churn_probability)} churn risk)"
    if code.startswith(ELIGIBILITY_PREFIX):
        return f"meets the offer's rule: {code.removeprefix(ELIGIBILITY_PREFIX)}"
    return code


# ------------------------------------------------------------------------------ suppressions
@dataclass(frozen=True)
class Suppressed:
    """What a suppression's words are written from: the offer (None when not in the catalogue),
    the decision's channel, the policy in force and the cap behind the reason (caps only)."""

    offer: CatalogueOffer | None
    channel: str
    policy: ContactPolicy
    limit: Limit | None


@dataclass(frozen=True)
class SuppressionWords:
    """A suppression reason in plain words (`text`) and the setting of the policy or catalogue
    behind it (`setting`, shown by the console next to the code)."""

    text: Callable[[Suppressed], str]
    setting: Callable[[Suppressed], str]


def _cap_setting(s: Suppressed) -> str:
    lim = s.limit
    if lim is None:
        return ""
    doc = next(kind.doc for kind in CAP_KINDS if kind.reason == lim.reason)
    counted = f" on {', '.join(lim.channels)}" if lim.channels else ""
    return f"{doc}: max {lim.max} in {lim.days} days{counted}"


def _offer_category(s: Suppressed) -> str:
    return _category(s.offer.category if s.offer is not None else None)


def _rule_text(s: Suppressed) -> str | None:
    rule = s.offer.rule if s.offer is not None else None
    return rule.text if rule is not None else None


def _valid(s: Suppressed) -> str:
    if s.offer is None:
        return "not in the catalogue"
    return f"valid from {_day(s.offer.valid_from)} to {_day(s.offer.valid_to)}"


def _quiet(s: Suppressed) -> str:
    q = s.policy.quiet_hours
    return f"{q.start}-{q.end} {q.timezone}"


#: Every suppression reason nbo gives, in words, once. A cap reason reads its cap (`Suppressed.limit`).
SUPPRESSIONS: dict[str, SuppressionWords] = {
    "cap_channel": SuppressionWords(
        lambda s: f"{s.channel} cap reached ({s.limit.max} in {s.limit.days} days)", _cap_setting),
    "cap_outbound": SuppressionWords(
        lambda s: f"outbound cap reached ({s.limit.max} in {s.limit.days} days across {', '.join(s.limit.channels)})",
        _cap_setting),
    "cap_offer": SuppressionWords(
        lambda s: f"offer cap reached (shown {s.limit.max} times in {s.limit.days} days)", _cap_setting),
    "cooldown_offer": SuppressionWords(
        lambda s: f"declined this offer in the last {s.limit.days} days", _cap_setting),
    "cooldown_category": SuppressionWords(
        lambda s: f"declined {_a(_offer_category(s))} offer in the last {s.limit.days} days", _cap_setting),
    "consent": SuppressionWords(
        lambda s: f"no consent for {s.channel}",
        lambda s: f"consent.opt_in_channels = [{', '.join(s.policy.consent.opt_in_channels)}]: "
                  f"no opt-in (or withdrawn) for {s.channel}"),
    "quiet_hours": SuppressionWords(
        lambda s: f"quiet hours on {s.channel} ({_quiet(s)})",
        lambda s: f"quiet_hours: no {', '.join(s.policy.quiet_hours.channels)} from {s.policy.quiet_hours.start} "
                  f"to {s.policy.quiet_hours.end} {s.policy.quiet_hours.timezone}"),
    "validity": SuppressionWords(
        lambda s: f"not valid now ({_valid(s)})" if s.offer is not None else "not valid now",
        lambda s: f"offer {_valid(s)}"),
    "channel": SuppressionWords(
        lambda s: f"not offered on {s.channel}",
        lambda s: f"offer channels: {', '.join(sorted(s.offer.channels)) if s.offer is not None else '?'}"),
    "eligibility": SuppressionWords(
        lambda s: f"does not meet the offer's rule: {_rule_text(s)}" if _rule_text(s) else "does not meet the offer's rule",
        lambda s: f"eligibility rule: {_rule_text(s) or '(none)'}"),
    "min_value": SuppressionWords(
        lambda s: f"expected value below the minimum ({s.policy.arbitration.min_expected_value:g})",
        lambda s: f"arbitration.min_expected_value = {s.policy.arbitration.min_expected_value:g}"),
    "diversity": SuppressionWords(
        lambda s: f"{_a(_offer_category(s))} offer ranks higher (at most {s.policy.arbitration.max_per_category} per category)",
        lambda s: f"arbitration.max_per_category = {s.policy.arbitration.max_per_category}"),
    "control_group": SuppressionWords(
        lambda s: f"the customer is in the universal control group, never contacted on {s.channel}",
        lambda s: f"control_group: share {s.policy.control_group.share:g} on {', '.join(s.policy.control_group.channels)}"),
    "explore_no_offer": SuppressionWords(
        lambda s: "this decision was drawn to make no offer, to measure what doing nothing earns",
        lambda s: f"arbitration.exploration.no_offer_rate = {s.policy.arbitration.exploration.no_offer_rate:g}"),
    "incentive_variant": SuppressionWords(
        lambda s: "another incentive of this offer pays better for its cost (the cheapest that pays is kept)",
        lambda s: f"arbitration.incentive_hurdle = {s.policy.arbitration.incentive_hurdle:g}"),
    "invalid_score": SuppressionWords(
        lambda s: "the model's score was not a probability",
        lambda s: "the model's score was not a probability (NaN or outside [0, 1])"),
    "unknown_offer": SuppressionWords(
        lambda s: "not in the catalogue",
        lambda s: "not in the catalogue"),
}


def _suppressed(reason: str, offer: CatalogueOffer | None, channel: str, policy: ContactPolicy) -> Suppressed:
    lims = limits(policy, channel)
    limit = next((lim for lim in (*lims.contact, *lims.offer) if lim.reason == reason), None)
    return Suppressed(offer, channel, policy, limit)


def suppression_text(reason: str, offer: CatalogueOffer | None, channel: str, policy: ContactPolicy) -> str:
    """Why a candidate was left out, in plain words, with the setting that removed it.

    `offer`: the catalogue's offer (None for an offer not in the catalogue); `policy`: the
    contact policy in force; `channel`: the decision's channel.
    """
    words = SUPPRESSIONS.get(reason)
    context = _suppressed(reason, offer, channel, policy)
    if words is None or (reason in CAP_REASONS and context.limit is None):
        return reason.replace("_", " ")
    return words.text(context)


def suppression_setting(reason: str, offer: CatalogueOffer | None, channel: str, policy: ContactPolicy) -> str:
    """The policy setting or catalogue rule behind a suppression reason, as it stands now ("" when
    the reason has none)."""
    words = SUPPRESSIONS.get(reason)
    return words.setting(_suppressed(reason, offer, channel, policy)) if words is not None else ""


def _day(epoch_s: float) -> str:
    """A catalogue time (epoch seconds, UTC) as its date; "open" when missing."""
    if epoch_s is None or not math.isfinite(epoch_s):
        return "open"
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d")

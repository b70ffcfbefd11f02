"""The data contract: the five tables nbo reads, declared once.

Each table is a `TableSpec` of typed columns with their allowed values and its key. The loader
(`nbo.data`) checks files against these specs; docs/data.md documents the same specs with an
example row each. Timestamps are UTC: tz-aware values are converted to UTC and stored tz-naive;
tz-naive values are taken as UTC; a column that mixes the two is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nbo.vocab import (
    AGE_BANDS,
    CONTACT_CHANNELS,
    EVENT_CHANNELS,
    EVENT_TYPES,
    NO_OFFER_REASONS,
    OFFER_KINDS,
    OUTCOMES,
)

ColumnKind = Literal["str", "ts", "float", "bool", "int", "channels", "timezone"]


@dataclass(frozen=True)
class ColumnSpec:
    """One column: its kind, whether it may be empty, and the values it may take."""

    name: str
    kind: ColumnKind
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    min_value: float | None = None
    min_exclusive: bool = False  # True: values must be above `min_value` (documented so; nbo.data refuses the bound with its own message)
    max_value: float | None = None
    max_length: int | None = None
    doc: str = ""
    #: False: the column may be absent from the file (a real export rarely has it); when present,
    #: every rule above applies. `if_absent` says what nbo does without it.
    required: bool = True
    if_absent: str = ""
    #: False: the column's absence is the usual case (a feature some data has), not a limitation
    #: worth a line in `nbo.data.limitations`.
    absence_limits: bool = True


@dataclass(frozen=True)
class TableSpec:
    """One table: its columns (extra columns are kept and ignored) and its unique key.

    `required=False`: the file may be absent from a data directory; the `Dataset` then holds the
    table empty and `if_absent` says what nbo cannot do without it.
    """

    name: str
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...] = ()
    doc: str = ""
    example: dict[str, object] = field(default_factory=dict)
    required: bool = True
    if_absent: str = ""
    #: False: the file's absence is the usual case, not a limitation worth a line in `limitations`.
    absence_limits: bool = True
    #: Columns named `<prefix><name>` for any name (e.g. `contacts.attr_price`): how each is checked.
    #: Its `name` is the prefix. None: the table has no such family of columns.
    attribute_columns: ColumnSpec | None = None

    def attribute_names(self, columns: object) -> tuple[str, ...]:
        """The attribute names among `columns` (`attr_price` -> `price`), in their order."""
        if self.attribute_columns is None:
            return ()
        prefix = self.attribute_columns.name
        return tuple(str(c)[len(prefix):] for c in columns if str(c).startswith(prefix))

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


ID_MAX = 128
#: Decision-time offer attributes: `contacts.attr_<name>` columns, `/recommend`'s
#: `offer_attributes` and `nbo score --offer-attributes` (issue 20 item 2).
ATTRIBUTE_PREFIX = "attr_"
#: An attribute's name: lower-case letters, digits and `_`, starting with a letter, at most 32.
ATTRIBUTE_NAME = r"[a-z][a-z0-9_]{0,31}"

CUSTOMERS = TableSpec(
    name="customers",
    doc="One row per customer, what a marketer knows at signup.",
    key=("customer_id",),
    columns=(
        ColumnSpec("customer_id", "str", max_length=ID_MAX, doc="Stable pseudonymous id."),
        ColumnSpec("signup_ts", "ts", doc="When the relationship started (UTC)."),
        ColumnSpec(
            "region",
            "str",
            max_length=64,
            doc="Free text region code, e.g. `north`.",
            required=False,
            if_absent="not used by any model today",
        ),
        ColumnSpec(
            "age_band",
            "str",
            nullable=True,
            allowed=AGE_BANDS,
            doc="Declared age band.",
            required=False,
            if_absent="not used by any model today",
        ),
        ColumnSpec(
            "acquisition_channel",
            "str",
            allowed=EVENT_CHANNELS,
            doc="Where the customer signed up.",
            required=False,
            if_absent="not used by any model today",
        ),
        ColumnSpec(
            "loyalty_member",
            "bool",
            doc="Joined the loyalty programme at signup.",
            required=False,
            if_absent="the `loyalty_member` feature is missing (NaN) for every customer",
        ),
        ColumnSpec(
            "timezone",
            "timezone",
            nullable=True,
            max_length=64,
            doc="The customer's time zone, an IANA name such as `Europe/Paris` (empty: not known). Quiet "
            "hours and the best send hour are read in it (docs/policy.md).",
            required=False,
            if_absent="quiet hours and send hours are read in the policy's `quiet_hours.timezone` (UTC by default)",
            absence_limits=False,
        ),
    ),
    example={
        "customer_id": "c000042",
        "signup_ts": "2025-03-14T10:22:00Z",
        "region": "north",
        "age_band": "35-44",
        "acquisition_channel": "web",
        "loyalty_member": True,
    },
)

CONSENTS = TableSpec(
    name="consents",
    required=False,
    if_absent=(
        "no channel has an opt-in (`opt_in_*` features are 0): outbound channels that need one "
        "(email, sms, push) are never used"
    ),
    doc=(
        "Consent changes. At a given time the latest row per (customer, channel) wins; no row "
        "means no consent on channels that need opt-in (email, sms, push by default)."
    ),
    key=("customer_id", "channel", "ts"),
    columns=(
        ColumnSpec("customer_id", "str", max_length=ID_MAX),
        ColumnSpec("channel", "str", allowed=CONTACT_CHANNELS),
        ColumnSpec("granted", "bool", doc="True for an opt-in, False for a withdrawal."),
        ColumnSpec("ts", "ts"),
    ),
    example={"customer_id": "c000042", "channel": "email", "granted": True, "ts": "2025-03-14T10:22:00Z"},
)

EVENTS = TableSpec(
    name="events",
    doc="One log of online and offline behaviour.",
    columns=(
        ColumnSpec("customer_id", "str", max_length=ID_MAX),
        ColumnSpec("ts", "ts"),
        ColumnSpec(
            "channel",
            "str",
            allowed=EVENT_CHANNELS,
            nullable=True,
            doc=(
                "Where the event happened. Empty: unknown for this event (a source that does not record "
                "it; an event posted to `POST /events` or `nbo ingest` without one, re-exported): it counts "
                "in no per-channel column, as when the column is absent."
            ),
            required=False,
            if_absent=(
                "every event's channel is unknown: the per-channel columns (`days_since_web_visit`, "
                "`online_visit_share_365d`, ...) take their never-seen values and web/app exposures "
                "get no session context"
            ),
        ),
        ColumnSpec("type", "str", allowed=EVENT_TYPES),
        ColumnSpec(
            "category",
            "str",
            nullable=True,
            max_length=64,
            doc="Product category, open vocabulary.",
            required=False,
            if_absent="every event's category is empty: no per-category or offer-category affinity column counts it",
        ),
        ColumnSpec(
            "product_id",
            "str",
            nullable=True,
            max_length=ID_MAX,
            required=False,
            if_absent="not used by any model today",
        ),
        ColumnSpec(
            "amount",
            "float",
            nullable=True,
            min_value=0.0,
            doc="Purchase amount (currency units); empty for other types. A purchase with an "
            "empty amount counts as a purchase with no spend. The column is required when the "
            "table has a purchase.",
            required=False,
            if_absent="allowed only when no row is a purchase (spend columns are then 0)",
        ),
    ),
    example={
        "customer_id": "c000042",
        "ts": "2025-06-01T18:03:11Z",
        "channel": "web",
        "type": "purchase",
        "category": "travel",
        "product_id": "p-travel-017",
        "amount": 129.9,
    },
)

OFFERS = TableSpec(
    name="offers",
    doc="The offer catalogue.",
    required=False,
    if_absent=(
        "propensity training, recommendations (`/recommend`, `nbo score`) and policy evaluation "
        "are unavailable; churn and the purchase-history features work"
    ),
    key=("offer_id",),
    columns=(
        ColumnSpec("offer_id", "str", max_length=ID_MAX),
        ColumnSpec("name", "str", max_length=256),
        ColumnSpec("category", "str", max_length=64),
        ColumnSpec("kind", "str", allowed=OFFER_KINDS),
        ColumnSpec(
            "channels",
            "channels",
            doc="Channels the offer may be made on: a list in Parquet, `web|email` in CSV.",
        ),
        ColumnSpec("value", "float", min_value=0.0, doc="Margin earned if accepted (currency units)."),
        ColumnSpec("cost", "float", min_value=0.0, doc="Cost of one contact (currency units)."),
        ColumnSpec("valid_from", "ts"),
        ColumnSpec("valid_to", "ts"),
        ColumnSpec(
            "eligibility",
            "str",
            nullable=True,
            max_length=4096,
            doc="A rule over customer features and context; empty means everyone.",
        ),
        ColumnSpec(
            "base_offer_id",
            "str",
            nullable=True,
            max_length=ID_MAX,
            doc="For an incentive variant (the same offer with 10 % off, free delivery...): the plain "
            "offer it is a variant of; empty for a plain offer.",
            required=False,
            if_absent="every offer is a plain offer (no incentive variants)",
            absence_limits=False,
        ),
        ColumnSpec(
            "incentive",
            "str",
            nullable=True,
            max_length=64,
            doc="The variant's incentive, e.g. `pct10`, `free_delivery`; empty for a plain offer. "
            "A variant's `value` is the plain offer's margin less `incentive_cost`.",
            required=False,
            if_absent="every offer is a plain offer (no incentive variants)",
            absence_limits=False,
        ),
        ColumnSpec(
            "incentive_cost",
            "float",
            nullable=True,
            min_value=0.0,
            doc="What the incentive gives away per acceptance (currency units); required for every "
            "row with an incentive, empty or 0 for a plain offer.",
            required=False,
            if_absent="no incentive costs (no incentive variants)",
            absence_limits=False,
        ),
    ),
    example={
        "offer_id": "o-travel-city",
        "name": "City break -20%",
        "category": "travel",
        "kind": "cross_sell",
        "channels": ["web", "app", "email"],
        "value": 40.0,
        "cost": 0.05,
        "valid_from": "2025-01-01T00:00:00Z",
        "valid_to": "2026-12-31T23:59:59Z",
        "eligibility": "tenure_days > 30",
    },
)

CONTACTS = TableSpec(
    name="contacts",
    doc="Every offer shown or sent, with the probability with which the deciding policy chose it.",
    required=False,
    if_absent=(
        "propensity training and off-policy evaluation are unavailable; the contact-history "
        "features read as never contacted"
    ),
    key=("decision_id", "offer_id"),
    columns=(
        ColumnSpec("decision_id", "str", max_length=ID_MAX),
        ColumnSpec("customer_id", "str", max_length=ID_MAX),
        ColumnSpec("offer_id", "str", max_length=ID_MAX),
        ColumnSpec("channel", "str", allowed=CONTACT_CHANNELS),
        ColumnSpec("ts", "ts"),
        ColumnSpec(
            "propensity",
            "float",
            min_value=0.0,
            min_exclusive=True,
            max_value=1.0,
            doc="Probability in (0, 1] with which the logging policy chose this offer.",
        ),
        ColumnSpec("outcome", "str", allowed=OUTCOMES),
        ColumnSpec("outcome_ts", "ts", nullable=True, doc="When the outcome was observed; empty while pending."),
    ),
    attribute_columns=ColumnSpec(
        ATTRIBUTE_PREFIX,
        "float",
        nullable=True,
        min_value=0.0,
        doc=(
            "`attr_<name>` (any number of them; `<name>`: lower-case letters, digits and `_`, "
            "starting with a letter, at most 32): a numeric attribute of the offer as the customer "
            "faced it in this decision: its price, a discount, a display or feature flag (0/1). "
            "Finite and >= 0. A decision gives an attribute for all its candidates or for none "
            "(empty cells: not logged); given for some candidates only is refused. The propensity "
            "model learns from them, alone and relative to the decision's other candidates "
            "(docs/features.md); `/recommend` and `nbo score` take the current ones."
        ),
        required=False,
        if_absent="the propensity model has no decision-time offer attributes (no price response)",
    ),
    example={
        "decision_id": "d-000000017",
        "customer_id": "c000042",
        "offer_id": "o-travel-city",
        "channel": "email",
        "ts": "2025-06-02T09:00:00Z",
        "propensity": 0.125,
        "outcome": "accepted",
        "outcome_ts": "2025-06-03T20:14:00Z",
        "attr_price": 39.9,
    },
)

NO_OFFERS = TableSpec(
    name="no_offers",
    doc=(
        "Every decision that made no contact, with the probability of making none: together with "
        "`contacts` (the decisions that made one, `decision_id` shared by both numberings) the log is "
        "a randomised experiment. A decision is in one table or the other, never both. The "
        "probability is over the policy's randomisation, the control group's included: the "
        "universal control group is a random share of customers (by hashed id), so a decision on a "
        "control channel makes no contact with probability share + (1 - share) x P(no offer | not "
        "in control), whatever the customer's own group, and each offer in `contacts` carries "
        "(1 - share) x (1 - no-offer rate) x P(the offer | an offer is made)."
    ),
    required=False,
    absence_limits=False,
    if_absent=(
        "only decisions that made a contact are known: off-policy values are per contact made, and "
        "there is no control group to measure lift against"
    ),
    key=("decision_id",),
    columns=(
        ColumnSpec("decision_id", "str", max_length=ID_MAX),
        ColumnSpec("customer_id", "str", max_length=ID_MAX),
        ColumnSpec("channel", "str", allowed=CONTACT_CHANNELS, doc="The channel the decision was for."),
        ColumnSpec("ts", "ts", doc="When the decision was made (UTC)."),
        ColumnSpec(
            "reason",
            "str",
            allowed=NO_OFFER_REASONS,
            doc="`control`: the customer is in the universal control group of this channel; `explore`: "
            "a randomised no-offer draw; `policy`: nothing eligible, allowed or worth its cost.",
        ),
        ColumnSpec(
            "propensity",
            "float",
            min_value=0.0,
            min_exclusive=True,
            max_value=1.0,
            doc="Probability in (0, 1] that the deciding policy made no contact at this decision.",
        ),
    ),
    example={
        "decision_id": "d-000000018",
        "customer_id": "c000042",
        "channel": "email",
        "ts": "2025-06-02T09:00:00Z",
        "reason": "control",
        "propensity": 0.0525,
    },
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (CUSTOMERS, CONSENTS, EVENTS, OFFERS, CONTACTS, NO_OFFERS)}

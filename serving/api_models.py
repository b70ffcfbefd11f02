"""The HTTP API's shapes: the request bodies (strict: validated field by field, input never echoed)
and the response bodies of `/recommend`, `/feedback`, `/forget`, `/consents`, `/events`, `/customer`
and `/admin/reload`.

Used by the service's endpoints (`serving/service.py`) and by the Guard, which validates every
POST body before BentoML sees it (`serving/guard.py`). See docs/service.md §4.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from nbo.contract import ATTRIBUTE_NAME

from nbo.vocab import ContactChannel, EventChannel, EventType
from serving.decision import ShownOffer, Suppressed

#: The POST endpoints whose body must be a JSON object.
JSON_PATHS = frozenset({"/recommend", "/feedback", "/forget", "/consents", "/events", "/customer", "/admin/reload",
                        "/outbox/ack"})
#: Most events one `POST /events` body may carry (more: 400 naming `events`; split the batch).
MAX_EVENTS_PER_BODY = 1000


# ------------------------------------------------------------------------------ request models
class _Strict(BaseModel):
    # strict: "3" is not a k; forbid: a misspelt field is an error, not a silent default;
    # hide_input_in_errors: error messages (and logs) never echo the customer's data.
    model_config = ConfigDict(strict=True, extra="forbid", hide_input_in_errors=True)


class RequestContext(_Strict):
    page_category: StrictStr | None = Field(None, max_length=64)
    session_categories: list[Annotated[StrictStr, Field(max_length=64)]] = Field(default_factory=list, max_length=50)
    device: Literal["desktop", "mobile", "tablet", "unknown"] | None = None
    hour_of_day: StrictInt | None = Field(None, ge=0, le=23)
    day_of_week: StrictInt | None = Field(None, ge=0, le=6)


#: One decision-time attribute value: a finite number >= 0 (a price, a discount, a 0/1 flag).
AttributeValue = Annotated[float, Field(ge=0, allow_inf_nan=False)]
AttributeName = Annotated[StrictStr, Field(pattern=f"^{ATTRIBUTE_NAME}$")]
OfferKey = Annotated[StrictStr, Field(min_length=1, max_length=128)]


class RecommendRequest(_Strict):
    customer_id: StrictStr = Field(min_length=1, max_length=128)
    channel: ContactChannel
    k: StrictInt = Field(3, ge=1, le=20)
    context: RequestContext | None = None
    #: What the customer faces now per candidate offer: {offer_id: {name: value}} (docs/service.md).
    offer_attributes: dict[OfferKey, Annotated[dict[AttributeName, AttributeValue], Field(min_length=1, max_length=16)]] | None = Field(
        None, max_length=200)

    @field_validator("offer_attributes")
    @classmethod
    def _same_names(cls, value: dict[str, dict[str, float]] | None) -> dict[str, dict[str, float]] | None:
        """Every listed offer gives the same attributes: one given for some candidates only is refused."""
        if value:
            names = [frozenset(v) for v in value.values()]
            if any(n != names[0] for n in names):
                raise ValueError("an attribute is given for some candidates only; give every attribute for every listed offer")
        return value


class FeedbackRequest(_Strict):
    decision_id: StrictStr = Field(min_length=1, max_length=128)
    offer_id: StrictStr = Field(min_length=1, max_length=128)
    outcome: Literal["accepted", "declined", "ignored", "clicked"]


class ForgetRequest(_Strict):
    customer_id: StrictStr = Field(min_length=1, max_length=128)


class ConsentRequest(_Strict):
    """A consent grant (`granted: true`) or withdrawal observed now or earlier (issue 22 item 2)."""

    customer_id: StrictStr = Field(min_length=1, max_length=128)
    channel: ContactChannel
    granted: StrictBool
    #: When the customer gave or withdrew it: ISO 8601 with an offset (`Z`, `+02:00`), or without
    #: one, taken as UTC. Within [now - live_max_past_days, now + live_max_skew_s], else 422.
    ts: datetime


class EventIn(_Strict):
    """One event of the data contract's `events` table, with the id that makes posting it idempotent."""

    event_id: StrictStr = Field(min_length=1, max_length=128)
    customer_id: StrictStr = Field(min_length=1, max_length=128)
    ts: datetime
    type: EventType
    channel: EventChannel | None = None
    category: StrictStr | None = Field(None, max_length=64)
    product_id: StrictStr | None = Field(None, max_length=128)
    amount: float | None = Field(None, ge=0, allow_inf_nan=False)


class EventsRequest(_Strict):
    """A batch of events (one or more), recorded all or nothing."""

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_BODY)


class CustomerRequest(_Strict):
    customer_id: StrictStr = Field(min_length=1, max_length=128)


class ReloadRequest(_Strict):
    force: bool = False


class OutboxQuery(BaseModel):
    """`GET /outbox` query parameters (text, converted): a page of the programmes' outbox."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Only rows in this state; `any` for every state. Default: the pending sends.
    status: Literal["pending", "sent", "failed", "none", "cancelled", "deciding", "any"] = "pending"
    #: Only rows whose trigger fired at or after this time (ISO 8601; naive = UTC).
    since: datetime | None = None
    #: Rows with an id above this one (the previous page's `next_after`).
    after: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=1000)


class OutboxAckRequest(_Strict):
    """Acknowledge pending sends of the outbox as `sent` or `failed`."""

    outbox_ids: list[Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]] = Field(min_length=1, max_length=1000)  # SQLite integers
    status: Literal["sent", "failed"]


# ------------------------------------------------------------------------------ response models
# The engine's own models, so an answer is built from the decision's objects without copying or
# validating ~35 of them again (measured, docs/service.md §7).
OfferOut = ShownOffer
SuppressedOut = Suppressed


class RecommendResponse(BaseModel):
    decision_id: str
    customer_id: str
    channel: str
    offers: list[OfferOut]
    suppressed: list[SuppressedOut]
    model_version: str
    model_versions: dict[str, str]
    fallback: bool
    degraded: bool = False


class FeedbackResponse(BaseModel):
    decision_id: str
    offer_id: str
    outcome: str
    recorded: bool
    #: Set on the 404 answer, so that it is also the documented `NotFound` error body.
    error: str | None = None


class ForgetResponse(BaseModel):
    customer_id: str
    erased_shows: int


class ConsentResponse(BaseModel):
    customer_id: str
    channel: str
    granted: bool
    ts: datetime
    #: False when the same change (channel, ts, granted) was recorded before: nothing changed.
    recorded: bool


class EventsResponse(BaseModel):
    received: int
    #: Events new to the event log; the rest were recorded before with the same content (repeats).
    recorded: int
    duplicates: int


class CustomerResponse(BaseModel):
    customer_id: str
    #: `live`: recomputed with the events posted while nbo runs; `materialised`: the features file's row.
    source: Literal["live", "materialised"]
    lifecycle: str | None
    #: Every customer feature the next decision reads (docs/features.md); null for a missing value.
    features: dict[str, float | str | None]


class OutboxAckResponse(BaseModel):
    #: Each known id's state after the call (a row no longer pending keeps its state).
    statuses: dict[str, str]
    #: Ids the outbox does not hold.
    unknown: list[int]


class ReloadResponse(BaseModel):
    changed: bool
    ok: bool
    message: str
    versions: dict[str, str]


# ------------------------------------------------------------------------------ log-safe error summary
BODY_MODELS: dict[str, type[BaseModel]] = {
    "/recommend": RecommendRequest, "/feedback": FeedbackRequest, "/forget": ForgetRequest, "/consents": ConsentRequest,
    "/events": EventsRequest, "/customer": CustomerRequest, "/admin/reload": ReloadRequest,
    "/outbox/ack": OutboxAckRequest,
}
#: Field names a log line may carry; anything else in an error's location is the client's text.
FIELD_NAMES = frozenset(n for m in (*BODY_MODELS.values(), RequestContext, EventIn, OutboxQuery) for n in m.model_fields)


def field_summary(errors: list[Any]) -> str:
    """`decision_id (string_type), <unknown field> (extra_forbidden)`: field names and error types only."""
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) if isinstance(p, int) or p in FIELD_NAMES else "<unknown field>" for p in e.get("loc", ()))
        parts.append(f"{loc or 'body'} ({e.get('type', '?')})")
    return ", ".join(parts) + (", ..." if len(errors) > 5 else "")

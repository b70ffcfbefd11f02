"""Nothing at or after as_of changes a feature: appended events, contacts, consents, late outcomes."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import Context, build_candidate_features, build_customer_features
from features.session import exposure_sessions
from nbo.contract import TABLES
from nbo.data import Dataset
from nbo.validation import validate_frame
from nbo.vocab import CONTACT_CHANNELS, EVENT_CHANNELS, EVENT_TYPES, OUTCOMES
from tests.features.conftest import AS_OF, synthetic

DATA = synthetic(customers=25, events=1500, contacts=300, seed=3)
# Only rows strictly before as_of: the property appends the future itself.
PAST = Dataset(
    customers=DATA.customers,
    events=DATA.events[DATA.events["ts"] < AS_OF].reset_index(drop=True),
    contacts=DATA.contacts[DATA.contacts["ts"] < AS_OF].reset_index(drop=True),
    consents=DATA.consents[DATA.consents["ts"] < AS_OF].reset_index(drop=True),
    offers=DATA.offers,
)
IDS = list(DATA.customers["customer_id"])
OFFER_IDS = list(DATA.offers["offer_id"])
CONTEXT = Context(channel="web", page_category="travel", session_categories=["books"])

offsets = st.floats(min_value=0.0, max_value=400.0, allow_nan=False)  # days after as_of, 0 included
event_rows = st.lists(
    st.fixed_dictionaries(
        {
            "customer_id": st.sampled_from(IDS),
            "after": offsets,
            "channel": st.sampled_from(EVENT_CHANNELS),
            "type": st.sampled_from(EVENT_TYPES),
            "category": st.sampled_from(["travel", "books", "garden", None]),
            "amount": st.one_of(st.none(), st.floats(min_value=0, max_value=5000)),
        }
    ),
    max_size=20,
)
contact_rows = st.lists(
    st.fixed_dictionaries(
        {
            "customer_id": st.sampled_from(IDS),
            "offer_id": st.sampled_from(OFFER_IDS),
            "channel": st.sampled_from(CONTACT_CHANNELS),
            "after": offsets,
            "outcome": st.sampled_from(OUTCOMES),
        }
    ),
    max_size=15,
)
consent_rows = st.lists(
    st.fixed_dictionaries(
        {"customer_id": st.sampled_from(IDS), "channel": st.sampled_from(CONTACT_CHANNELS), "after": offsets,
         "granted": st.booleans()}
    ),
    max_size=10,
)


def _at(after: float) -> pd.Timestamp:
    return AS_OF + pd.Timedelta(seconds=round(after * 86_400))


def _future(events: list[dict], contacts: list[dict], consents: list[dict], late: list[int]) -> Dataset:
    ev = pd.DataFrame(
        [{**{k: v for k, v in r.items() if k != "after"}, "ts": _at(r["after"]), "product_id": None,
          "amount": r["amount"] if r["type"] == "purchase" else None} for r in events],
        columns=[c.name for c in TABLES["events"].columns],
    )
    co = pd.DataFrame(
        [{**{k: v for k, v in r.items() if k != "after"}, "decision_id": f"future{i}", "ts": _at(r["after"]),
          "propensity": 0.5, "outcome_ts": None if r["outcome"] == "pending" else _at(r["after"] + 1)}
         for i, r in enumerate(contacts)],
        columns=[c.name for c in TABLES["contacts"].columns],
    )
    cs = pd.DataFrame(
        [{**{k: v for k, v in r.items() if k != "after"}, "ts": _at(r["after"])} for r in consents],
        columns=[c.name for c in TABLES["consents"].columns],
    ).drop_duplicates(["customer_id", "channel", "ts"])
    # Pending contacts before as_of whose answer arrives at or after as_of.
    past_contacts = PAST.contacts.copy()
    pending = past_contacts.index[past_contacts["outcome"] == "pending"]
    for k, pos in enumerate(late):
        row = pending[pos % len(pending)]
        past_contacts.loc[row, "outcome"] = ("accepted", "declined", "ignored")[k % 3]
        past_contacts.loc[row, "outcome_ts"] = max(AS_OF + pd.Timedelta(hours=k), past_contacts.loc[row, "ts"])

    def cat(a: pd.DataFrame, b: pd.DataFrame, name: str) -> pd.DataFrame:
        return validate_frame(TABLES[name], pd.concat([a, b], ignore_index=True) if len(b) else a)

    return Dataset(
        customers=PAST.customers,
        events=cat(PAST.events, ev, "events"),
        contacts=cat(past_contacts, co, "contacts"),
        consents=cat(PAST.consents, cs, "consents"),
        offers=PAST.offers,
    )


BASE_CUSTOMERS = build_customer_features(PAST, AS_OF)
BASE_CANDIDATES = build_candidate_features(BASE_CUSTOMERS, PAST.offers, PAST.contacts, CONTEXT, AS_OF)
# Web and app exposures of every customer at as_of: their session context reads events before it.
EXPOSURES = pd.DataFrame({"customer_id": IDS * 2, "channel": ["web"] * len(IDS) + ["app"] * len(IDS),
                          "ts": [AS_OF] * (2 * len(IDS)), "offer_id": OFFER_IDS[0]})
BASE_SESSIONS = exposure_sessions(PAST.events, EXPOSURES)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_rows, contact_rows, consent_rows, st.lists(st.integers(0, 10_000), max_size=5, unique=True))
def test_rows_at_or_after_as_of_change_nothing(events, contacts, consents, late) -> None:
    future = _future(events, contacts, consents, late)
    customers = build_customer_features(future, AS_OF)
    pd.testing.assert_frame_equal(customers, BASE_CUSTOMERS)
    candidates = build_candidate_features(customers, future.offers, future.contacts, CONTEXT, AS_OF)
    pd.testing.assert_frame_equal(candidates, BASE_CANDIDATES)
    pd.testing.assert_frame_equal(exposure_sessions(future.events, EXPOSURES), BASE_SESSIONS)


def test_the_leakage_check_can_fail() -> None:
    """A row one second before as_of does change the features (the property is not vacuous)."""
    row = {"customer_id": IDS[0], "after": -1 / 86_400, "channel": "web", "type": "purchase",
           "category": "travel", "amount": 10.0}
    changed = build_customer_features(_future([row], [], [], []), AS_OF)
    assert not changed.equals(BASE_CUSTOMERS)
    sessions = exposure_sessions(_future([row], [], [], []).events, EXPOSURES)
    assert sessions.loc[0, "page_category"] == "travel" and not sessions.equals(BASE_SESSIONS)

"""Contact pressure and response history (features/contact_history.py), as of as_of and as of each row's moment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import build_customer_features
from tests.features.conftest import AS_OF, ago, dataset


def test_contact_history_exact_values() -> None:
    c = "a"
    data = dataset(
        customers=[{"customer_id": c, "signup_ts": ago(300)}],
        contacts=[
            {"customer_id": c, "offer_id": "o1", "channel": "email", "ts": ago(2), "outcome": "accepted", "outcome_ts": ago(1)},
            # declined, but the answer came after as_of: still pending
            {"customer_id": c, "offer_id": "o1", "channel": "sms", "ts": ago(5), "outcome": "declined", "outcome_ts": ago(-1)},
            {"customer_id": c, "offer_id": "o1", "channel": "web", "ts": ago(20), "outcome": "ignored", "outcome_ts": ago(19)},
            {"customer_id": c, "offer_id": "o1", "channel": "push", "ts": ago(40), "outcome": "clicked", "outcome_ts": ago(39)},
            {"customer_id": c, "offer_id": "o1", "channel": "mail", "ts": AS_OF, "outcome": "pending"},  # at as_of
        ],
    )
    f = build_customer_features(data, AS_OF).loc[c]
    expected = {
        "contacts_email_7d": 1, "contacts_sms_7d": 1, "contacts_web_7d": 0, "contacts_7d": 2,
        "contacts_web_30d": 1, "contacts_push_30d": 0, "contacts_mail_30d": 0, "contacts_30d": 3,
        "outbound_contacts_7d": 2, "days_since_last_contact": 2, "contacts_total": 4,
        "finalised_total": 3, "accepts_total": 1, "declines_total": 0, "ignores_total": 1,
        "pending_contacts": 1, "acceptance_rate": 1 / 3,
    }
    assert {k: f[k] for k in expected} == pytest.approx(expected)


def test_contact_pressure_decays_per_channel() -> None:
    c = "a"
    data = dataset(
        customers=[{"customer_id": c, "signup_ts": ago(300)}],
        contacts=[
            {"customer_id": c, "offer_id": "o1", "channel": "email", "ts": ago(3)},
            {"customer_id": c, "offer_id": "o1", "channel": "email", "ts": ago(6)},
            {"customer_id": c, "offer_id": "o1", "channel": "sms", "ts": ago(1.5)},
            {"customer_id": c, "offer_id": "o1", "channel": "sms", "ts": AS_OF},  # at as_of: not yet
        ],
    )
    f = build_customer_features(data, AS_OF).loc[c]
    assert f["pressure_email"] == pytest.approx(0.5 + 0.25)
    assert f["pressure_sms"] == pytest.approx(0.5**0.5)
    assert f["pressure_web"] == 0
    assert f["pressure_total"] == pytest.approx(0.75 + 0.5**0.5)


def test_contacts_at_each_rows_moment_equal_contacts_as_of_that_moment() -> None:
    from features.contact_history import contact_history, encode_contacts_at
    from tests.features.conftest import synthetic

    data = synthetic(customers=30, contacts=500, seed=5)
    ids = data.customers["customer_id"].to_numpy(dtype=object)
    rng = np.random.default_rng(0)
    rows = rng.choice(ids, 40)  # repeated customers, each row at its own moment
    moments = (AS_OF - pd.to_timedelta(rng.integers(0, 200 * 86_400, 40), unit="s")).to_numpy()
    at = contact_history(encode_contacts_at(data.contacts, rows, moments), pd.Index(rows), AS_OF)
    for i, (cid, moment) in enumerate(zip(rows, moments, strict=True)):
        one = contact_history(data.contacts, pd.Index([cid], dtype=object), pd.Timestamp(moment))
        assert {k: v[i] for k, v in at.items()} == pytest.approx({k: v[0] for k, v in one.items()})

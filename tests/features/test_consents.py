"""Consents (features/consents.py): the latest row before as_of."""

from __future__ import annotations


from features import build_customer_features
from tests.features.conftest import AS_OF, ago, dataset


def test_consents_latest_row_before_as_of() -> None:
    c = "a"
    data = dataset(
        customers=[{"customer_id": c, "signup_ts": ago(300)}],
        consents=[
            {"customer_id": c, "channel": "email", "granted": True, "ts": ago(10)},
            {"customer_id": c, "channel": "email", "granted": False, "ts": ago(5)},
            {"customer_id": c, "channel": "sms", "granted": True, "ts": ago(3)},
            {"customer_id": c, "channel": "push", "granted": True, "ts": AS_OF},
            {"customer_id": c, "channel": "mail", "granted": True, "ts": ago(20)},
            {"customer_id": c, "channel": "mail", "granted": False, "ts": ago(-1)},
        ],
    )
    f = build_customer_features(data, AS_OF).loc[c]
    assert (f["opt_in_email"], f["opt_in_sms"], f["opt_in_push"], f["opt_in_mail"], f["opt_in_web"]) == (0, 1, 0, 1, 0)

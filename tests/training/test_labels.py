"""Labels use nothing at or after the training as_of, and count acceptance only inside its window."""

from __future__ import annotations

import pandas as pd

from tests.nbo.tiny_data import tiny_dataset
from training.labels import churn_labels, churn_snapshots, propensity_labels

T = pd.Timestamp


def _contacts(rows: list[tuple[str, str, str, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(len(rows))],
            "offer_id": ["o1"] * len(rows),
            "ts": [T(r[0]) for r in rows],
            "outcome": [r[1] for r in rows],
            "outcome_ts": [T(r[2]) if r[2] else pd.NaT for r in rows],
        }
    )


def test_propensity_label_window_and_cutoff() -> None:
    contacts = _contacts(
        [
            ("2025-01-01", "accepted", "2025-01-03"),  # inside the window
            ("2025-01-01", "accepted", "2025-01-20"),  # accepted too late
            ("2025-01-02", "declined", "2025-01-02"),
            ("2025-01-09", "accepted", "2025-01-10"),  # window not closed at as_of: dropped
        ]
    )
    labels = propensity_labels(contacts, as_of=T("2025-01-12"), window_days=7)
    assert labels["decision_id"].tolist() == ["d0", "d1", "d2"]
    assert labels["label"].tolist() == [1, 0, 0]


def test_churn_labels_active_customers_only() -> None:
    data = tiny_dataset()  # c1 bought 2025-02-01, c2 bought 2025-02-10
    label = churn_labels(data, snapshot=T("2025-02-05"), horizon_days=30)
    assert label.to_dict() == {"c1": 1}  # c2 not active before the snapshot; c1 did not buy again
    label = churn_labels(data, snapshot=T("2025-01-20"), horizon_days=30)
    assert label.to_dict() == {}  # nobody had bought yet


def test_churn_snapshots_end_before_as_of() -> None:
    snaps = churn_snapshots(T("2025-12-31"), horizon_days=90, count=3, step_days=30)
    assert snaps == sorted(snaps)
    assert max(snaps) + pd.Timedelta(days=90) <= T("2025-12-31")

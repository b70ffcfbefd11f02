"""A real export's minimum: customers (id, signup) and events only. It validates, says what it
cannot be used for, and bad values in what is there still fail with one line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import build_customer_features
from features.session import exposure_sessions
from nbo.data import limitations, load_dataset, write_dataset
from nbo.errors import DataError

from tests.nbo.minimal_export import START, write_minimal_export
from tests.nbo.tiny_data import write_tiny_csv


@pytest.fixture()
def export_dir(tmp_path: Path) -> Path:
    return write_minimal_export(tmp_path / "export", customers=20, days=120, seed=1)


def test_customers_and_events_only_validate(export_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="nbo.data"):
        data = load_dataset(export_dir)
    assert data.absent_tables == ("consents", "offers", "contacts", "no_offers")
    assert list(data.customers.columns) == ["customer_id", "signup_ts"]
    assert list(data.events.columns) == ["customer_id", "ts", "type", "amount"]
    assert str(data.events["ts"].dtype) == "datetime64[ns]"
    assert data.contacts.empty and data.offers.empty and data.consents.empty
    lines = limitations(data)
    assert any(line.startswith("no contacts table: propensity training") for line in lines), lines
    assert any(line.startswith("no offers table: propensity training, recommendations") for line in lines), lines
    assert any(line.startswith("no customers.loyalty_member column: ") for line in lines), lines
    assert any(line.startswith("no events.channel column: ") for line in lines), lines
    # every command that loads the directory says the same
    assert [r.getMessage() for r in caplog.records if r.name == "nbo.data"] == lines


def test_full_directory_has_no_limitations(tmp_path: Path) -> None:
    assert limitations(load_dataset(write_tiny_csv(tmp_path / "full"))) == []


def test_absent_tables_stay_absent_when_written(export_dir: Path, tmp_path: Path) -> None:
    data = load_dataset(export_dir)
    write_dataset(data, tmp_path / "copy", "parquet")
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["customers.parquet", "events.parquet"]
    again = load_dataset(tmp_path / "copy")
    assert again.absent_tables == data.absent_tables
    pd.testing.assert_frame_equal(again.events, data.events, check_dtype=False)


def _error(directory: Path) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(directory)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_present_optional_table_is_still_checked(export_dir: Path, tmp_path: Path) -> None:
    full = write_tiny_csv(tmp_path / "full")
    offers = pd.read_csv(full / "offers.csv", dtype=str, keep_default_na=False)
    offers.assign(kind=["freebie", "loyalty"]).to_csv(export_dir / "offers.csv", index=False)
    assert "offers.kind: 1 row(s) have a value outside" in _error(export_dir)


def test_contacts_without_offers_are_refused_in_one_line(export_dir: Path, tmp_path: Path) -> None:
    contacts = pd.DataFrame({
        "decision_id": ["d1"], "customer_id": ["h00000"], "offer_id": ["o1"], "channel": ["email"],
        "ts": ["2025-02-02T09:00:00Z"], "propensity": ["1"], "outcome": ["ignored"], "outcome_ts": [""],
    })
    contacts.to_csv(export_dir / "contacts.csv", index=False)
    assert _error(export_dir) == (
        "contacts.offer_id: 1 row(s) name offers but the directory has no offers table; "
        "add offers.parquet or offers.csv"
    )


@pytest.mark.parametrize(
    ("table", "edit", "expected"),
    [
        ("customers", lambda f: f.drop(columns=["signup_ts"]), "customers: missing column(s) signup_ts"),
        ("events", lambda f: f.drop(columns=["amount"]), "purchase row(s) but no amount column"),
        ("events", lambda f: f.assign(amount=f["amount"].where(f.index != 0, "-1")), "events.amount: 1 row(s) have a value below 0"),
        ("events", lambda f: f.assign(channel="fax"), "events.channel: "),
        ("customers", lambda f: f.assign(loyalty_member="maybe"), "customers.loyalty_member: 20 row(s) have a value that is not a boolean"),
        ("events", lambda f: f.assign(type=f["type"].where(f.index != 0, "teleport")), "events.type: 1 row(s) have a value outside"),
    ],
)
def test_bad_minimal_inputs_fail_with_one_line(export_dir: Path, table: str, edit, expected: str) -> None:
    path = export_dir / f"{table}.csv"
    edit(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)
    assert expected in _error(export_dir)


def test_events_without_amount_validate_when_nothing_is_bought(export_dir: Path) -> None:
    path = export_dir / "events.csv"
    events = pd.read_csv(path, dtype=str, keep_default_na=False)
    events[events["type"] != "purchase"].drop(columns=["amount"]).to_csv(path, index=False)
    assert "amount" not in load_dataset(export_dir).events.columns


def test_features_cope_with_absent_columns(export_dir: Path) -> None:
    """Purchase-history features equal those of the same events with channel and category filled;
    loyalty is unknown (NaN), the channel columns take their never-seen values."""
    data = load_dataset(export_dir)
    as_of = START + pd.Timedelta(days=100)
    bare = build_customer_features(data, as_of)
    filled = load_dataset(export_dir)
    filled = type(data)(
        customers=filled.customers.assign(loyalty_member=True),
        consents=filled.consents, offers=filled.offers, contacts=filled.contacts,
        events=filled.events.assign(channel="store", category=pd.Series(np.nan, index=filled.events.index, dtype="str")),
    )
    full = build_customer_features(filled, as_of)
    assert len(bare) == len(full) > 0
    rfm = ["recency_days", "purchases_30d", "purchases_365d", "spend_365d", "purchases_total", "spend_total",
           "rfm_score", "page_views_30d", "active_days_365d"]
    pd.testing.assert_frame_equal(bare[rfm], full[rfm])
    assert bare["spend_total"].sum() > 0
    assert bare["loyalty_member"].isna().all() and (full["loyalty_member"] == 1).all()
    assert (bare["days_since_web_visit"] == 9999).all()
    assert (bare["online_visit_share_365d"] == 0).all()
    assert (bare["lifecycle"] != "").all()


def test_sessions_without_event_channels_are_empty(export_dir: Path) -> None:
    data = load_dataset(export_dir)
    exposures = pd.DataFrame({
        "customer_id": data.customers["customer_id"].iloc[:2].to_numpy(), "channel": ["web", "app"],
        "ts": [START + pd.Timedelta(days=90)] * 2,
    })
    sessions = exposure_sessions(data.events, exposures)
    assert sessions["page_category"].isna().all()
    assert sessions["session_categories"].map(len).eq(0).all()

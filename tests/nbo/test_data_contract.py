"""Every rule of the data contract, fed bad data: the message names table, column, count, example."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli import app
from nbo.data import load_dataset, write_dataset
from nbo.errors import DataError

from tests.nbo.tiny_data import tiny_dataset, write_tiny_csv

runner = CliRunner()


@pytest.fixture()
def csv_dir(tmp_path: Path) -> Path:
    return write_tiny_csv(tmp_path / "data")


def _edit(directory: Path, table: str, edit) -> None:
    path = directory / f"{table}.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = edit(frame)
    frame.to_csv(path, index=False)


def _error(directory: Path) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(directory)
    return str(info.value)


def test_valid_directory_loads_with_contract_types(csv_dir: Path) -> None:
    data = load_dataset(csv_dir)
    assert str(data.events["ts"].dtype) == "datetime64[ns]"
    assert data.consents["granted"].dtype == bool
    assert data.offers["channels"].iloc[0] == ("web", "app", "email")
    assert data.events["amount"].dtype == "float64"


def test_parquet_and_csv_give_the_same_tables(tmp_path: Path) -> None:
    data = tiny_dataset()
    write_dataset(data, tmp_path / "pq", "parquet")
    write_dataset(data, tmp_path / "csv", "csv")
    a, b = load_dataset(tmp_path / "pq"), load_dataset(tmp_path / "csv")
    for name in ("customers", "consents", "events", "offers", "contacts"):
        pd.testing.assert_frame_equal(a.table(name), b.table(name), check_dtype=False)


@pytest.mark.parametrize(
    ("table", "edit", "expected"),
    [
        ("customers", lambda f: f.drop(columns=["signup_ts"]), "customers: missing column(s) signup_ts"),
        ("events", lambda f: f.drop(columns=["type"]), "events: missing column(s) type"),
        ("events", lambda f: f.drop(columns=["amount"]), "events.amount: 2 purchase row(s) but no amount column"),
        ("customers", lambda f: f.assign(loyalty_member=[""] + list(f["loyalty_member"][1:])), "customers.loyalty_member: 1 row(s) have a value that is not a boolean"),
        ("events", lambda f: f.assign(channel=["fax"] + list(f["channel"][1:])), "events.channel: 1 row(s) have a value outside"),
        ("events", lambda f: f.assign(amount=["-5"] + list(f["amount"][1:])), "events.amount: 1 row(s) have a value below 0, e.g. -5.0"),
        ("events", lambda f: f.assign(amount=["ten"] + list(f["amount"][1:])), "events.amount: 1 row(s) have a value that is not a number, e.g. 'ten'"),
        ("customers", lambda f: pd.concat([f, f.iloc[[0]]]), "customers: 1 duplicate key row(s) on (customer_id), e.g. 'c1'"),
        ("events", lambda f: f.assign(ts=["yesterday"] + list(f["ts"][1:])), "events.ts: 1 row(s) have a value that is not a parseable timestamp, e.g. 'yesterday'"),
        ("events", lambda f: f.assign(ts=["2025-01-02T00:00:00"] + list(f["ts"][1:])), "events.ts: 1 row(s) mix timezone-aware and naive timestamps"),
        ("contacts", lambda f: f.assign(offer_id=["o-ghost"] + list(f["offer_id"][1:])), "contacts.offer_id: 1 row(s) for an offer not in offers, e.g. 'o-ghost'"),
        ("events", lambda f: f.assign(customer_id=["c-ghost"] + list(f["customer_id"][1:])), "events.customer_id: 1 row(s) for a customer not in customers"),
        ("consents", lambda f: f.assign(granted=["maybe"] + list(f["granted"][1:])), "consents.granted: 1 row(s) have a value that is not a boolean"),
        ("offers", lambda f: f.assign(channels=["web|fax"] + list(f["channels"][1:])), "offers.channels: 1 row(s) name a channel outside"),
        ("offers", lambda f: f.assign(kind=["freebie"] + list(f["kind"][1:])), "offers.kind: 1 row(s) have a value outside"),
        ("contacts", lambda f: f.assign(propensity=["1.5"] + list(f["propensity"][1:])), "contacts.propensity: 1 row(s) have a value above 1"),
        ("contacts", lambda f: f.assign(outcome=["loved_it"] + list(f["outcome"][1:])), "contacts.outcome: 1 row(s) have a value outside"),
        ("customers", lambda f: f.assign(customer_id=[""] + list(f["customer_id"][1:])), "customers.customer_id: 1 row(s) have an empty value"),
        ("customers", lambda f: f.assign(customer_id=["x" * 500] + list(f["customer_id"][1:])), "longer than 128 characters"),
    ],
)
def test_bad_data_is_named(csv_dir: Path, table: str, edit, expected: str) -> None:
    _edit(csv_dir, table, edit)
    assert expected in _error(csv_dir)


@pytest.mark.parametrize("table", ["customers", "events"])
def test_missing_required_file_is_named(csv_dir: Path, table: str) -> None:
    (csv_dir / f"{table}.csv").unlink()
    assert f"{table}: no {table}.parquet or {table}.csv" in _error(csv_dir)


def test_truncated_parquet_is_refused(tmp_path: Path) -> None:
    write_dataset(tiny_dataset(), tmp_path, "parquet")
    path = tmp_path / "events.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "events: events.parquet is not a readable Parquet file" in _error(tmp_path)


def test_extra_field_on_the_first_data_row_is_named(csv_dir: Path) -> None:
    # pandas would read the extra field as "the first column is the index", shifting every column
    # by one: the error was an unparseable timestamp in a column that was never wrong.
    path = csv_dir / "customers.csv"
    lines = path.read_text().splitlines()
    lines[1] += ",extra"
    path.write_text("\n".join(lines) + "\n")
    message = _error(csv_dir)
    assert "customers: customers.csv: line 2 (the first data row) has more fields than the header's" in message
    assert "timestamp" not in message
    lines[1] = lines[1].removesuffix(",extra")
    lines[2] += ",extra"  # a later row: pandas' own error, naming the line
    path.write_text("\n".join(lines) + "\n")
    assert "customers: customers.csv is not a well-formed CSV file: Error tokenizing data. C error: Expected" in _error(csv_dir)


def test_empty_and_non_utf8_files_are_refused(csv_dir: Path) -> None:
    (csv_dir / "events.csv").write_bytes(b"")
    assert "events: events.csv is empty" in _error(csv_dir)
    (csv_dir / "events.csv").write_bytes("customer_id,ts\nc\xe9,x\n".encode("latin-1"))
    assert "events: events.csv is not valid UTF-8" in _error(csv_dir)


def test_parquet_with_wrong_types_is_refused(tmp_path: Path) -> None:
    write_dataset(tiny_dataset(), tmp_path, "parquet")
    table = pq.read_table(tmp_path / "customers.parquet")
    table = table.set_column(
        table.schema.get_field_index("signup_ts"), "signup_ts", pa.array([1.5] * table.num_rows)
    )
    pq.write_table(table, tmp_path / "customers.parquet")
    assert "customers.signup_ts" in _error(tmp_path)


def test_validate_command_exit_codes(csv_dir: Path) -> None:
    ok = runner.invoke(app, ["validate", "--data", str(csv_dir)])
    assert ok.exit_code == 0, ok.output
    assert "valid" in ok.output
    _edit(csv_dir, "events", lambda f: f.assign(type=["teleport"] + list(f["type"][1:])))
    bad = runner.invoke(app, ["validate", "--data", str(csv_dir)])
    assert bad.exit_code == 2
    assert "events.type" in bad.output
    assert "Traceback" not in bad.output


def test_docs_describe_every_column() -> None:
    from nbo.contract import TABLES

    doc = (Path(__file__).parents[2] / "docs" / "data.md").read_text()
    for spec in TABLES.values():
        assert f"## `{spec.name}`" in doc
        for col in spec.columns:
            assert f"`{col.name}`" in doc, (spec.name, col.name)


def test_for_customers_keeps_only_their_rows(csv_dir: Path) -> None:
    data = load_dataset(csv_dir).for_customers(["c1"])
    assert set(data.events["customer_id"]) == {"c1"}
    assert set(data.customers["customer_id"]) == {"c1"}
    assert len(data.offers) == 2


def test_copy_unchanged_after_failed_load(csv_dir: Path, tmp_path: Path) -> None:
    """Validation reads only: a refused directory is left exactly as it was."""
    _edit(csv_dir, "events", lambda f: f.assign(channel=["fax"] + list(f["channel"][1:])))
    before = {p.name: p.read_bytes() for p in csv_dir.iterdir()}
    _error(csv_dir)
    assert before == {p.name: p.read_bytes() for p in csv_dir.iterdir()}
    shutil.rmtree(csv_dir)


def test_docs_are_generated_from_the_contract() -> None:
    from nbo.contract_doc import render_markdown

    doc = (Path(__file__).parents[2] / "docs" / "data.md").read_text()
    assert doc == render_markdown(), "docs/data.md is stale: python -m nbo.contract_doc > docs/data.md"


def test_examples_are_valid_rows() -> None:
    from nbo.contract import TABLES
    from nbo.validation import validate_frame

    for spec in TABLES.values():
        validate_frame(spec, pd.DataFrame([spec.example]))


# ----------------------------------------------------------------------------- offer attributes (issue 20.2)


def _with_price(frame: pd.DataFrame, prices: list[str]) -> pd.DataFrame:
    return frame.assign(attr_price=prices)


def test_attribute_columns_load_as_numbers(csv_dir: Path) -> None:
    _edit(csv_dir, "contacts", lambda f: f.assign(attr_price=["2.5"] * len(f), attr_display=["1"] * len(f)))
    data = load_dataset(csv_dir)
    assert data.contacts["attr_price"].dtype == "float64"
    assert data.contacts["attr_price"].tolist() == [2.5] * len(data.contacts)
    assert data.contacts["attr_display"].tolist() == [1.0] * len(data.contacts)


def test_an_attribute_absent_for_a_whole_decision_is_allowed(csv_dir: Path) -> None:
    """Empty cells for every candidate of a decision: the decision did not log it."""
    _edit(csv_dir, "contacts", lambda f: f.assign(attr_price=[""] * len(f)))
    assert load_dataset(csv_dir).contacts["attr_price"].isna().all()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1", "contacts.attr_price: 1 row(s) have a value below 0, e.g. -1.0"),
        ("cheap", "contacts.attr_price: 1 row(s) have a value that is not a number, e.g. 'cheap'"),
        ("inf", "contacts.attr_price: 1 row(s) have an infinite value"),
        ("NaN", "contacts.attr_price: 1 row(s) have a value that is not a number, e.g. 'NaN'"),
    ],
)
def test_bad_attribute_values_are_named(csv_dir: Path, value: str, expected: str) -> None:
    _edit(csv_dir, "contacts", lambda f: f.assign(attr_price=[value] + ["3"] * (len(f) - 1)))
    assert expected in _error(csv_dir)


def test_an_attribute_given_for_some_candidates_only_is_refused(csv_dir: Path) -> None:
    """An empty price beside priced candidates of the same decision: the comparison among the
    decision's candidates would be wrong, so the file is refused naming the decision."""
    def edit(f: pd.DataFrame) -> pd.DataFrame:
        f = pd.concat([f, f.iloc[[0]].assign(offer_id=f["offer_id"].iloc[1])], ignore_index=True)
        first = f["decision_id"].iloc[0]
        prices = ["" if (d == first and i == len(f) - 1) else "3" for i, d in enumerate(f["decision_id"])]
        return f.assign(attr_price=prices)

    _edit(csv_dir, "contacts", edit)
    message = _error(csv_dir)
    assert "contacts.attr_price: 1 decision(s) give it for some candidates only" in message


def test_a_bad_attribute_name_is_refused(csv_dir: Path) -> None:
    _edit(csv_dir, "contacts", lambda f: f.assign(**{"attr_Price!": ["1"] * len(f)}))
    assert "contacts.attr_Price!: an attribute column is named" in _error(csv_dir)


def test_a_decision_in_both_contacts_and_no_offers_is_named(csv_dir: Path) -> None:
    contacts = pd.read_csv(csv_dir / "contacts.csv", dtype=str, keep_default_na=False)
    first = contacts.iloc[0]
    rows = pd.DataFrame({"decision_id": [first["decision_id"], "d-none-1"], "customer_id": [first["customer_id"]] * 2,
                         "channel": ["email", "email"], "ts": ["2025-03-01T10:00:00"] * 2,
                         "reason": ["explore", "explore"], "propensity": ["0.1", "0.1"]})
    rows.to_csv(csv_dir / "no_offers.csv", index=False)
    assert f"no_offers.decision_id: 1 decision(s) both made no contact and made one (also in contacts), e.g. {first['decision_id']!r}" in _error(csv_dir)
    rows.iloc[[1]].to_csv(csv_dir / "no_offers.csv", index=False)  # only its own decision: loads
    assert list(load_dataset(csv_dir).no_offers["decision_id"]) == ["d-none-1"]

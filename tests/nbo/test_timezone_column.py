"""The customers' optional `timezone` column (issue 22 item 5): IANA names, or empty."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from nbo.contract import CUSTOMERS
from nbo.errors import DataError
from nbo.validation import validate_frame
from simulator import SimConfig, Simulator, write_simulation


def _customers(zones: list[object]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [f"c{i}" for i in range(len(zones))],
                         "signup_ts": ["2025-01-01T00:00:00Z"] * len(zones), "timezone": zones})


def test_valid_names_and_blanks_are_kept() -> None:
    out = validate_frame(CUSTOMERS, _customers(["Europe/Paris", None, "", "America/St_Johns", "UTC"]))
    assert out["timezone"].tolist()[0] == "Europe/Paris" and out["timezone"].tolist()[3] == "America/St_Johns"
    assert out["timezone"].isna().tolist() == [False, True, True, False, False]
    assert "timezone" not in validate_frame(CUSTOMERS, _customers(["UTC"]).drop(columns="timezone")).columns


@pytest.mark.parametrize("bad", ["Europe/Pariss", "CET+1", "../etc/passwd", "Mars/Olympus", "europe paris", "x" * 65])
def test_an_unknown_name_is_refused_naming_the_column(bad: str) -> None:
    with pytest.raises(DataError) as err:
        validate_frame(CUSTOMERS, _customers(["Europe/Paris", bad]))
    text = str(err.value)
    assert "customers" in text and "timezone" in text and ("IANA" in text or "longer than" in text)


def test_nbo_validate_refuses_a_bad_time_zone_in_one_line(tmp_path: Path) -> None:
    sim = Simulator(SimConfig(customers=30, days=5), seed=1)
    sim.run()
    write_simulation(sim, tmp_path, fmt="csv")
    customers = pd.read_csv(tmp_path / "customers.csv")
    customers["timezone"] = "Europe/Paris"
    customers.loc[3, "timezone"] = "Europe/Atlantis"
    customers.to_csv(tmp_path / "customers.csv", index=False)
    result = CliRunner().invoke(app, ["validate", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "timezone" in result.output and "Europe/Atlantis" in result.output
    customers.loc[3, "timezone"] = ""
    customers.to_csv(tmp_path / "customers.csv", index=False)
    assert CliRunner().invoke(app, ["validate", "--data", str(tmp_path)]).exit_code == 0

"""`nbo simulate` end to end: files that validate, and clear errors for bad arguments."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def test_simulate_then_validate(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    result = runner.invoke(app, ["simulate", "--customers", "200", "--days", "30", "--seed", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "events" in result.output
    assert (out / "truth" / "customers_truth.parquet").exists()
    assert (out / "truth" / "contacts_truth.parquet").exists()
    result = runner.invoke(app, ["validate", "--data", str(out)])
    assert result.exit_code == 0, result.output


def test_bad_arguments_exit_2_with_a_message(tmp_path: Path) -> None:
    cases = [
        (["--customers", "0", "--days", "10"], "--customers must be > 0"),
        (["--customers", "10", "--days", "-1"], "--days must be > 0"),
        (["--customers", "10", "--days", "10", "--start", "01/02/2025"], "--start"),
        (["--customers", "10", "--days", "10", "--format", "xlsx"], "unknown format"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["simulate", *args, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output


def test_unwritable_out_dir_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = runner.invoke(app, ["simulate", "--customers", "10", "--days", "5", "--out", str(blocker / "sub")])
    assert result.exit_code == 2
    assert "cannot write to output directory" in result.output


def test_help_documents_the_options() -> None:
    result = runner.invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0
    for option in ("--customers", "--days", "--seed", "--out", "--start", "--format"):
        assert option in result.output

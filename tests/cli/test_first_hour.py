"""The first hour of a new user (issue 23 item 4), each found by trying the README: one test each.

Small worlds, the real CLI through Typer's runner (or a real process where a port is involved).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from nbo.data import load_table, write_table
from simulator import SimConfig, Simulator, write_simulation

runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sim = Simulator(SimConfig(customers=60, days=30), seed=2)
    sim.run()
    out = tmp_path_factory.mktemp("first-hour") / "data"
    write_simulation(sim, out)
    return out


def test_version_is_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"nbo {version('nbo')}"


@pytest.mark.parametrize("rule", ["tenure_dayz > 30", "import os", "__import__('os')"])
def test_validate_compiles_every_eligibility_rule(data_dir: Path, tmp_path: Path, rule: str) -> None:
    """`nbo validate` used to accept rules that `nbo score` then refused."""
    bad = tmp_path / "data"
    bad.mkdir()
    for path in data_dir.iterdir():
        if path.is_file():
            (bad / path.name).write_bytes(path.read_bytes())
    offers = load_table(bad, "offers")
    offers.loc[offers.index[0], "eligibility"] = rule
    write_table(offers, next(bad.glob("offers.*")))
    result = runner.invoke(app, ["validate", "--data", str(bad)])
    assert result.exit_code == 2, result.output
    assert "offers.eligibility" in result.stderr and offers["offer_id"].iloc[0] in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_validate_reports_the_rules(data_dir: Path) -> None:
    result = runner.invoke(app, ["validate", "--data", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "eligibility rules compile" in result.stdout


def test_out_into_a_missing_folder_is_refused(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "no-such-folder" / "features.parquet"
    result = runner.invoke(app, ["features", "--data", str(data_dir), "--as-of", "2025-01-20", "--out", str(out)])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    assert not out.parent.exists()


def test_features_years_after_the_data_warn(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.parquet"
    result = runner.invoke(app, ["features", "--data", str(data_dir), "--as-of", "2027-01-20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning: --as-of 2027-01-20 is" in result.stderr and "every customer will look inactive" in result.stderr
    quiet = runner.invoke(app, ["features", "--data", str(data_dir), "--as-of", "2025-01-20", "--out", str(out)])
    assert "warning" not in quiet.stderr


def test_demo_refuses_a_busy_port_before_any_work(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["demo", "--dir", str(tmp_path / "demo"), "--port", str(port)])
    assert result.exit_code == 2
    assert f"--port {port} is in use" in result.stderr
    assert not (tmp_path / "demo").exists()  # nothing simulated, nothing trained


def test_readme_commands_parse() -> None:
    """Every `nbo ...` line of the README's command table names its required options."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    score = next(line for line in readme.splitlines() if line.startswith("| `nbo score"))
    assert "--campaign" in score or "--dry-run" in score


def test_the_contract_doc_says_what_validation_refuses() -> None:
    """docs/data.md said propensity ">= 0" while 0 is refused."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text()
    assert "| `propensity` | number; > 0; <= 1 |" in doc


def test_a_zero_propensity_is_refused(data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "data"
    bad.mkdir()
    for path in data_dir.iterdir():
        if path.is_file():
            (bad / path.name).write_bytes(path.read_bytes())
    contacts = load_table(bad, "contacts")
    contacts.loc[contacts.index[0], "propensity"] = 0.0
    write_table(contacts, next(bad.glob("contacts.*")))
    result = runner.invoke(app, ["validate", "--data", str(bad)])
    assert result.exit_code == 2 and "propensity" in result.stderr


#: The one log format of a run (cli._app.LOG_FORMAT), BentoML's shape: time [LEVEL] [who] message.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] \[[^\]]+\] ")


def test_one_log_format_in_a_run(tmp_path: Path) -> None:
    """nbo's lines and MLflow's (its own handler and format: `2026/12/07 10:09:22 INFO mlflow...`)
    used to alternate in one run; now every log line has one shape."""
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    env.pop("MLFLOW_CONFIGURE_LOGGING", None)
    result = subprocess.run(
        [sys.executable, "-m", "cli", "-v", "promote", "--model", "propensity",
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert result.returncode == 2  # no challenger yet: one error line
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: model nbo-propensity has no @challenger")
    assert any("[mlflow." in line for line in lines)  # MLflow spoke (at DEBUG/INFO with -v) ...
    odd = [line for line in lines[:-1] if not LOG_LINE.match(line) and not line.startswith((" ", "\t"))]
    assert odd == []  # ... in nbo's format, like everything else
    assert "mlflow-telemetry" not in result.stderr  # and MLflow's usage telemetry is off


def test_registering_a_model_prints_nothing_of_mlflows(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """MLflow's pickling warning and its "Successfully registered model" / "Created version" prints."""
    import mlflow

    from models.tracking import resolve_tracking
    from training.registry import log_pyfunc, register

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return model_input

    client = resolve_tracking(f"sqlite:///{tmp_path / 'mlflow.db'}").activate()
    capfd.readouterr()
    with mlflow.start_run():
        info = log_pyfunc(name="model", python_model=Echo(), pip_requirements=["pandas"])
    version = register(client, info.model_uri, "nbo-quiet-test")
    out, err = capfd.readouterr()
    assert version == "1" and str(client.get_model_version_by_alias("nbo-quiet-test", "challenger").version) == "1"
    assert "Successfully registered" not in out + err and "Created version" not in out + err
    assert "CloudPickle" not in out + err


def test_serve_warns_when_its_clock_misses_the_data(data_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`nbo serve --data DIR` on simulated data answered `offers: []` for everyone (every offer out of
    its validity at the real clock) without a word; `--clock-start` was the silent fix."""
    from cli.serve import service_settings

    features = tmp_path / "features.parquet"
    assert runner.invoke(app, ["features", "--data", str(data_dir), "--as-of", "2025-01-25", "--out", str(features)]).exit_code == 0
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    service_settings(data_dir, features, uri, None, str(tmp_path / "c.db"), tmp_path / "state")  # the real clock
    err = capsys.readouterr().err
    assert "outside every offer's validity" in err and "offers: [] for everyone" in err and "--clock-start" in err
    assert "days after the features' date (2025-01-25)" in err
    service_settings(data_dir, features, uri, None, str(tmp_path / "c.db"), tmp_path / "state",
                     clock_start=pd.Timestamp("2025-01-25 10:00").to_pydatetime())
    assert "warning" not in capsys.readouterr().err  # the world's own clock: nothing to say


def test_waiting_for_the_service_shows_progress() -> None:
    """`nbo demo` was silent for ~47 s after "== 5. serve" while the workers started."""
    from cli.serve import wait_ready
    from nbo.errors import NboError

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there
    told: list[float] = []
    with pytest.raises(NboError, match="was not ready after"):
        wait_ready(f"http://127.0.0.1:{port}", timeout_s=4.0, progress=told.append, every_s=0.3)
    # At least two lines while waiting, each at least `every_s` after the one before (a busy machine
    # may stretch a poll, so the count is a floor, not an exact figure).
    assert len(told) >= 2 and all(b - a >= 0.3 for a, b in zip([0.0, *told], told))


def test_make_install_says_what_it_is_doing() -> None:
    """`make install` ran `pip --quiet` for 2+ minutes without a line: each step is announced and
    the long one shows a line per package."""
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    recipe = makefile.split("$(STAMP): pyproject.toml constraints.txt")[1].split("\ndemo:")[0]
    assert [n for n in range(1, 5) if f"== install {n}/4" in recipe] == [1, 2, 3, 4]
    main = next(line for line in recipe.splitlines() if "-c constraints.txt" in line)
    assert "--quiet" not in main and "PYTHONUNBUFFERED=1" in main
    assert "grep --line-buffered" in recipe  # lines appear as pip writes them, not at the end

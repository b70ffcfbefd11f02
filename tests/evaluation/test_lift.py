"""`nbo lift` (issue 21 item 5): lift against the control group, on hand-made rows and on a
simulated randomised log through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from evaluation.lift import Z95, _estimate
from simulator import SimConfig, Simulator, write_simulation

runner = CliRunner()


def test_the_estimate_on_hand_made_rows() -> None:
    # Contacts: customer a converts on 2 of 2 decisions, b on 0 of 2; control: c 1 of 1, d 0 of 3.
    treated = pd.DataFrame({"customer_id": ["a", "a", "b", "b"], "conversion": [1.0, 1.0, 0.0, 0.0]})
    control = pd.DataFrame({"customer_id": ["c", "d", "d", "d"], "conversion": [1.0, 0.0, 0.0, 0.0]})
    est = _estimate(treated, control, "conversion")
    assert est["contacts_mean"] == 0.5 and est["control_mean"] == 0.25
    assert est["incremental"] == pytest.approx((0.5 - 0.25) * 4)
    # clustered variances: treated ((2 - 1)^2 + (0 - 1)^2) / 16; control ((1 - .25)^2 + (0 - .75)^2) / 16
    half = Z95 * np.sqrt(2 / 16 + (0.5625 + 0.5625) / 16) * 4
    assert est["low"] == pytest.approx(1.0 - half) and est["high"] == pytest.approx(1.0 + half)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lift") / "data"
    config = SimConfig(customers=600, days=70, cannibalisation=True, control_share=0.2, no_offer_rate=0.1)
    sim = Simulator(config, seed=4)
    sim.run()
    write_simulation(sim, out)
    return out


def test_cli_writes_the_figures_and_charts(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "lift.json"
    result = runner.invoke(app, ["lift", "--data", str(world), "--out", str(out), "--since", "2025-01-15",
                                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    s = report["summary"]
    assert s["contacts"] > 500 and s["control_decisions"] > 100 and s["first_decision"] >= "2025-01-15"
    levels = {seg["level"] for seg in report["segments"]}
    assert levels == {"total", "channel", "programme", "offer"}
    for seg in report["segments"]:
        est = seg["revenue"]
        if est["incremental"] is not None:
            assert est["low"] <= est["incremental"] <= est["high"]
    # Contacts add purchases in this world: the whole log's conversions are above the control's.
    assert s["incremental_conversions"]["incremental"] > 0
    assert report["qini"]["points"][-1]["share_of_contacts"] == pytest.approx(1.0)
    assert len(report["over_time"]) >= 5
    for name in ("lift_qini.png", "lift_over_time.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`nbo.lift` = '1'")
    assert len(runs) == 1 and runs["metrics.conversions_incremental"].iloc[0] == pytest.approx(
        s["incremental_conversions"]["incremental"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--since", "2025-03-01", "--until", "2025-02-01"), "is not before --until"),
        (("--out-name", "lift.txt"), "must end in .json"),
        (("--since", "yesterday-ish"), "not an ISO-8601"),
        (("--baseline", "everyone"), "--baseline 'everyone'"),
        (("--since", "2030-01-01"), "no control decisions without contact"),
        (("--no-no-offers",), "no no_offers table"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(world: Path, tmp_path: Path, extra: tuple[str, ...],
                                                            message: str) -> None:
    data, name = world, "lift.json"
    if extra == ("--no-no-offers",):
        import shutil

        data = tmp_path / "data"
        shutil.copytree(world, data)
        for f in data.glob("no_offers.*"):
            f.unlink()
        extra = ()
    elif extra[0] == "--out-name":
        name, extra = extra[1], ()
    before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(app, ["lift", "--data", str(data), "--out", str(tmp_path / name), *extra])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before

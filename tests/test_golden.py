"""The golden decisions: a refactor that changes any answer nbo gives fails here.

Recorded before the restructuring of issue 18 (one house, one pipeline) and kept since: on a seeded
simulated world, with two fixed models (LightGBM text + calibration knots under
`tests/golden/models/`, so no retraining and no pickle is involved), the same inputs must give the
same outputs to 10 significant digits:

- online: `DecisionEngine.decide` for 600 customers on web, email and sms at three clocks each,
  reserving, with exploration on (caps, cooldowns and the offer cap bind by the later clocks);
- batch: `nbo score` (the CLI, pandas engine) on email with k = 2, reserving under a campaign;
- OPE: IPS / SNIPS / DR of the propensity model on the world's logged decisions;
- closed loop: a short simulated run of random, oracle and oracle_fatigue_caps.

`NBO_GOLDEN_RECORD=1 pytest tests/test_golden.py` rewrites `tests/golden/decisions.json.gz` (and, when
`NBO_GOLDEN_RETRAIN=1`, the models): do that only for a change that is *meant* to change answers,
and say so in the commit.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from datetime import date
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

GOLDEN = Path(__file__).parent / "golden"
RECORD = os.environ.get("NBO_GOLDEN_RECORD") == "1"
RETRAIN = os.environ.get("NBO_GOLDEN_RETRAIN") == "1"
START = date(2025, 1, 1)
DAYS = 200
AS_OF = pd.Timestamp(START) + pd.Timedelta(days=DAYS)
CLOCKS = [AS_OF + pd.Timedelta(hours=h) for h in (10, 22, 24 * 3 + 10)]
POLICY = """
[caps]
email = { max = 1, days = 7 }
sms   = { max = 1, days = 14 }
web   = { max = 2, days = 1 }
[offer_cap]
max = 2
days = 30
[quiet_hours]
channels = ["sms", "push"]
start = "21:00"
end = "08:00"
[arbitration]
max_per_category = 1
[arbitration.exploration]
rate = 0.2
"""


def _canon(value: object) -> object:
    """JSON-ready, floats to 10 significant digits (the same on every x86 machine)."""
    if isinstance(value, dict):
        return {str(k): _canon(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return float(f"{value:.10g}")
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _simulate(root: Path) -> Path:
    from simulator import SimConfig, Simulator, write_simulation

    sim = Simulator(SimConfig(customers=1200, days=DAYS, start=START), seed=4)
    sim.run(progress=False)
    write_simulation(sim, root / "data")
    return root / "data"


def _train_models(data_dir: Path, scratch: Path) -> None:
    """Only when re-recording with NBO_GOLDEN_RETRAIN=1: fit both models, keep them as text."""
    from nbo.data import load_dataset
    from models.registry import load_model
    from models.tracking import MODEL_NAMES, resolve_tracking
    from training.train import TrainConfig, fit_and_log

    data = load_dataset(data_dir)
    tracking = resolve_tracking(f"sqlite:///{scratch / 'train-mlflow.db'}")
    client = tracking.activate()
    (GOLDEN / "models").mkdir(parents=True, exist_ok=True)
    for which in ("propensity", "churn"):
        result = fit_and_log(which, data, TrainConfig(as_of=AS_OF, num_boost_round=40), tracking, progress=False)
        model = load_model(client, MODEL_NAMES[which], version=result.version).model
        (GOLDEN / "models" / f"{which}.txt").write_text(model.booster_.model_to_string())
        (GOLDEN / "models" / f"{which}.json").write_text(json.dumps({
            "feature_names": list(model.feature_names_in_),
            "calibration_x": model.calibration_x_.tolist(),
            "calibration_y": model.calibration_y_.tolist(),
        }))


def _model(which: str):  # type: ignore[no-untyped-def]
    from models.calibrated import CalibratedBooster

    spec = json.loads((GOLDEN / "models" / f"{which}.json").read_text())
    model = CalibratedBooster(feature_names=spec["feature_names"])
    model.booster_ = lgb.Booster(model_str=(GOLDEN / "models" / f"{which}.txt").read_text())
    model.feature_names_in_ = np.array(spec["feature_names"], dtype=object)
    model.classes_ = np.array([0, 1])
    model.calibration_x_ = np.asarray(spec["calibration_x"], dtype=float)
    model.calibration_y_ = np.asarray(spec["calibration_y"], dtype=float)
    return model


def _register(tracking_uri: str) -> None:
    """Both fixed models as @champion in a fresh MLflow (logging, not training)."""
    import mlflow

    from features import FEATURE_SET
    from models.calibrated import NboPyfunc
    from models.tracking import CHAMPION, MODEL_NAMES, resolve_tracking
    from training.registry import register

    tracking = resolve_tracking(tracking_uri)
    client = tracking.activate()
    for which in ("propensity", "churn"):
        with mlflow.start_run(run_name=f"golden-{which}"):
            info = mlflow.pyfunc.log_model(name="model", python_model=NboPyfunc(_model(which), FEATURE_SET.version),
                                           pip_requirements=["lightgbm"])
        register(client, info.model_uri, MODEL_NAMES[which], CHAMPION)


def _online(root: Path, data_dir: Path, features: Path, tracking_uri: str) -> list[object]:
    from features import Context
    from serving.engine import DecisionEngine
    from serving.settings import EngineSettings

    settings = EngineSettings(data_dir=data_dir, features_path=features, tracking_uri=tracking_uri,
                              policy_path=root / "policy.toml", store=str(root / "online.db"), compile_models=False)
    engine = DecisionEngine.from_settings(settings)
    assert engine.models is not None, engine.models_error
    out: list[object] = []
    try:
        customers = list(engine.features.index[:600])
        for t, clock in enumerate(CLOCKS):
            for channel in ("web", "email", "sms"):
                for i, cid in enumerate(customers):
                    ctx = Context(channel=channel, page_category="travel" if i % 3 == 0 else None,
                                  device="mobile" if i % 2 else "desktop") if channel == "web" else None
                    d = engine.decide(cid, channel, ctx, clock.to_pydatetime(), k=3, reserve=True,
                                      decision_id=f"g-{t}-{channel}-{cid}")
                    out.append(d.model_dump(mode="json"))
    finally:
        engine.close()
    return out


def _batch(root: Path, data_dir: Path, features: Path, tracking_uri: str) -> dict[str, object]:
    """Two campaigns on one store: the second, three days later, meets the first one's caps."""
    from cli import app

    got: dict[str, object] = {}
    for n, clock in ((1, CLOCKS[0]), (2, CLOCKS[2])):
        out = root / f"batch-{n}.parquet"
        args = ["score", "--data", str(data_dir), "--features", str(features), "--tracking-uri", tracking_uri,
                "--as-of", clock.isoformat(), "--channel", "email", "--k", "2", "--out", str(out),
                "--campaign", f"golden-{n}", "--policy", str(root / "policy.toml"), "--store", str(root / "batch.db"),
                "--no-progress"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        frame = pd.read_parquet(out).sort_values(["customer_id", "rank"]).reset_index(drop=True)
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        for key in [k for k in summary if "seconds" in k or "path" in k or k in ("out", "output", "work_dir")]:
            summary.pop(key)
        got[f"campaign_{n}"] = {"rows": frame.to_dict(orient="records"), "summary": summary}
    return got


def _ope(data_dir: Path, root: Path) -> dict[str, object]:
    from nbo.data import load_dataset
    from serving.policy import load_policy
    from evaluation.evaluate import evaluate

    result = evaluate(load_dataset(data_dir), _model("propensity"), load_policy(root / "policy.toml"))
    return result.metrics()


def _closed_loop(root: Path) -> dict[str, object]:
    from simulator import SimConfig
    from serving.policy import load_policy
    from evaluation.policy_sim import compare_policies

    runs, _ = compare_policies(SimConfig(customers=300, days=40, start=START), 7, load_policy(root / "policy.toml"),
                               names=("random", "oracle", "oracle_fatigue_caps"))
    return {run.name: {**run.row(), "daily_net_value": run.daily["net_value_cum"].tolist()} for run in runs}


@pytest.mark.slow
def test_same_inputs_give_the_same_decisions(tmp_path: Path) -> None:
    from features import build_customer_features, write_materialised
    from nbo.data import load_dataset

    data_dir = _simulate(tmp_path)
    if RETRAIN:
        _train_models(data_dir, tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY)
    features = tmp_path / "features.parquet"
    write_materialised(build_customer_features(load_dataset(data_dir), AS_OF), features, AS_OF)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _register(tracking_uri)
    got = _canon({
        "online": _online(tmp_path, data_dir, features, tracking_uri),
        "batch": _batch(tmp_path, data_dir, features, tracking_uri),
        "ope": _ope(data_dir, tmp_path),
        "closed_loop": _closed_loop(tmp_path),
    })
    text = json.dumps(got, sort_keys=True, separators=(",", ":")) + "\n"
    path = GOLDEN / "decisions.json.gz"
    if RECORD:
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(text.encode())
        pytest.skip(f"recorded {path}")
    recorded = gzip.decompress(path.read_bytes()).decode()
    expected = json.loads(recorded)
    for part in ("online", "batch", "ope", "closed_loop"):
        assert got[part] == expected[part], f"{part}: answers differ from the golden file"
    assert text == recorded

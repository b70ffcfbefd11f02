"""What makes a service start quick, held as behaviour (timings live in benchmarks/bench_startup.py):
one worker loads at a time, compilation waits for the first answer, a start with prepared champions
decides as one through MLflow, and BentoML's supervisor and `nbo serve`'s checks import little."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd

from serving.engine import DecisionEngine
from serving.startup import TURN_FILE, loading_turn
from tests.serving.test_engine import NOW, World, world  # noqa: F401 - the shared world fixture

ROOT = Path(__file__).resolve().parents[2]

_HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()  # hold the turn until the test closes stdin (or kills this process)
"""


def _holder(state: Path) -> subprocess.Popen:
    state.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(state / TURN_FILE)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_worker_waits_for_the_turn_and_takes_it_when_the_holder_is_done(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    entered = threading.Event()

    def second() -> None:
        with loading_turn(tmp_path, wait_s=600) as had:
            assert had
            entered.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not entered.wait(0.5)  # the holder has the turn: the second worker waits
    holder.communicate("")  # the first worker is ready (its process ends here: the lock goes with it)
    thread.join(60)
    assert entered.is_set()


def test_the_turn_of_a_dead_worker_is_free_and_a_long_wait_gives_up(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    with loading_turn(tmp_path, wait_s=0.2, poll_s=0.01) as had:
        assert had is False  # waited in vain: loads anyway
    holder.kill()
    holder.wait()
    with loading_turn(tmp_path, wait_s=600) as had:  # a worker that died while loading blocks nobody
        assert had is True


def test_compilation_waits_until_the_worker_answers(world: World, tmp_path: Path) -> None:  # noqa: F811
    answering = threading.Event()
    engine = DecisionEngine.from_settings(world.settings(tmp_path / "a.db", compiled_cache=tmp_path / "compiled"),
                                          compile_in_background=True, compile_after=answering)
    try:
        assert engine._compiling is not None and engine._compiling.is_alive()
        engine.decide(str(engine.features.index[0]), "web", None, NOW, k=3, reserve=False)
        assert engine.models.scoring == {"propensity": "not compiled", "churn": "not compiled"}
        assert not (tmp_path / "compiled").exists()  # nothing compiled or loaded yet
        answering.set()
        engine._compiling.join(120)
        assert engine.models.scoring == {"propensity": "compiled", "churn": "compiled"}
    finally:
        answering.set()
        engine.close()


def test_a_start_with_prepared_champions_decides_as_one_through_mlflow(world: World, tmp_path: Path) -> None:  # noqa: F811
    prepared = tmp_path / "champions"
    through_mlflow = DecisionEngine.from_settings(world.settings(tmp_path / "a.db", prepared_champions=prepared))
    quick = None
    try:
        assert through_mlflow._client is not None  # nothing prepared yet: MLflow was asked ...
        assert len(list(prepared.glob("champion-*.pkl"))) == 2  # ... and both champions were prepared
        quick = DecisionEngine.from_settings(world.settings(tmp_path / "b.db", prepared_champions=prepared))
        assert quick._client is None  # versions from the registry file, models from the pickles
        assert quick.models.versions == through_mlflow.models.versions
        for cid in [*map(str, through_mlflow.features.index[:15]), "unknown-customer"]:
            a = through_mlflow.decide(cid, "web", None, NOW, k=3, reserve=False, decision_id="d")
            b = quick.decide(cid, "web", None, NOW, k=3, reserve=False, decision_id="d")
            assert a.model_dump() == b.model_dump()
    finally:
        through_mlflow.close()
        if quick is not None:
            quick.close()


def test_the_services_periodic_check_of_unchanged_champions_asks_no_mlflow(world: World, tmp_path: Path) -> None:  # noqa: F811
    """The service checks the champions every minute (`reload(prepared=True)`): with their versions
    unchanged, the answer comes from the registry's SQLite file. Asking MLflow imported it and
    opened its SQL store in a worker that had started without it: a ~70 MB heap step a minute
    after the start (issue 22 item 6). A moved alias is still seen: tests/serving/test_http.py."""
    prepared = tmp_path / "champions"
    DecisionEngine.from_settings(world.settings(tmp_path / "a.db", prepared_champions=prepared)).close()  # prepares both
    engine = DecisionEngine.from_settings(world.settings(tmp_path / "b.db", prepared_champions=prepared))
    try:
        assert engine._client is None
        for _ in range(3):
            result = engine.reload(prepared=True)
            assert result.ok and not result.changed and result.message == "champions unchanged"
        assert engine._client is None  # no MLflow client made
        assert engine.reload(force=True, prepared=True).changed  # /admin/reload: loaded again, from the pickles
        assert engine._client is None
    finally:
        engine.close()


def test_a_start_from_cached_tables_decides_as_one_from_the_files(world: World, tmp_path: Path) -> None:  # noqa: F811
    cache = tmp_path / "tables"
    engines = [DecisionEngine.from_settings(world.settings(tmp_path / f"{i}.db", **kw))
               for i, kw in enumerate([{}, {"table_cache": cache}, {"table_cache": cache}])]
    try:
        names = sorted(p.name.split("-")[0] for p in cache.glob("*.pkl"))
        assert names == ["consents", "contacts", "customers", "offers"]
        for cid in [*map(str, engines[0].features.index[:15]), "unknown-customer"]:
            a, b, c = (e.decide(cid, "web", None, NOW, k=3, reserve=False, decision_id="d").model_dump() for e in engines)
            assert a == b == c
        for engine in engines:  # the data's events, sorted by customer, for live features (the warm-up loads them)
            engine.live.prepare()
        assert len(list(cache.glob("events-by-customer-*.pkl"))) == 1
        for engine in engines[1:]:
            pd.testing.assert_frame_equal(engine.live._events.frame, engines[0].live._events.frame)
    finally:
        for engine in engines:
            engine.close()


def _imported_by(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return set(json.loads(out.stdout.splitlines()[-1]))


HEAVY = {"pandas", "sklearn", "scipy", "lightgbm", "mlflow", "redis"}


def test_bentomls_supervisor_imports_the_service_without_the_heavy_libraries() -> None:
    """The supervisor imports `nbo serve`'s target only to read its configuration."""
    assert not HEAVY & _imported_by("import console.service")


def test_nbo_serves_checks_import_neither_mlflow_nor_scikit_learn_nor_redis() -> None:
    imported = _imported_by("import cli\nimport cli.serve, cli._preflight, serving.settings, serving.engine")
    assert not {"sklearn", "scipy", "mlflow", "redis"} & imported

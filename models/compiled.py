"""LightGBM champions compiled to machine code (lleaves), used only where they match the booster.

Why: the booster walks its trees through a generic interpreter; lleaves compiles each tree into
straight-line code with LLVM. Measured on 2 cores (148 trees, 81 features): 50 rows 0.24 ms ->
0.022 ms, 100,000 rows 443 ms -> 60 ms, outputs equal to ~1e-16. That is a tenth of a request's
CPU online and most of batch scoring's model time.

Compilation takes seconds per model (15-40 s for the demo's champions on a busy 2-core machine) and
happens in memory, unless a cache directory is given (batch scoring gives its work directory, so its
worker processes load what the driver compiled; `nbo serve` gives `STATE_DIR/compiled`, so one
worker compiles while the other waits for its file, and a restart loads it). Files are named by a
hash of the model's text; a lock on the directory lets one process at a time compile. The compiled
forest is checked against the booster on the sample it is given; any difference above `TOLERANCE`,
a missing lleaves, or a failed compilation leaves the booster in use (logged with the reason),
so the answers never depend on whether compilation worked.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Largest difference in P(accept) between compiled and interpreted forest that is accepted.
TOLERANCE = 1e-9

#: P(accept) of float32 rows; a choice model's also takes each row's decision (`group`).
Predictor = Callable[..., np.ndarray]

# LLVM's JIT is not documented as safe to drive from several threads at once (reloads run in a
# background thread while a batch worker may compile too): one compilation at a time per process.
_COMPILE_LOCK = threading.Lock()


class CompiledForest:
    """The booster's transformed output (what `booster.predict` returns), from compiled code."""

    def __init__(self, booster: object, cache_dir: Path | None = None) -> None:
        import lleaves  # optional: absent, callers keep the booster

        text = booster.model_to_string()  # type: ignore[attr-defined]
        with tempfile.TemporaryDirectory(prefix="nbo-lleaves-") as tmp:
            path = Path(tmp) / "model.txt"
            path.write_text(text, encoding="utf-8")
            model = lleaves.Model(model_file=str(path))
            with _COMPILE_LOCK:
                if cache_dir is None:
                    model.compile()  # in memory: nothing is written
                else:
                    cached = Path(cache_dir) / f"forest-{hashlib.sha256(text.encode()).hexdigest()[:32]}.bin"
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    # One process compiles, the others (the service's workers) wait and load its
                    # file: a lock on the directory itself (released when its descriptor closes).
                    lock = os.open(cached.parent, os.O_RDONLY)
                    try:
                        fcntl.flock(lock, fcntl.LOCK_EX)
                        if cached.exists():
                            model.compile(cache=str(cached))
                        else:  # compiled to a private name, renamed when whole: readers never see half a file
                            partial = cached.with_name(f".{cached.name}.{os.getpid()}")
                            model.compile(cache=str(partial))
                            os.replace(partial, cached)
                    finally:
                        os.close(lock)
        self._model = model

    def predict(self, X: np.ndarray) -> np.ndarray:
        # float64 of the float32 inputs the booster sees: same thresholds, same answers.
        return self._model.predict(np.ascontiguousarray(X, dtype=np.float64), n_jobs=1)


def calibrated_predictor(
    model: object, sample: np.ndarray | None, label: str = "model", cache_dir: Path | None = None
) -> tuple[Predictor, str]:
    """P(y=1) of a `CalibratedBooster` from its compiled forest when it matches on `sample`, else
    the model's own `predict_proba_positive`. Returns (predictor, which: "compiled" or why not).
    A forest loaded from `cache_dir` is checked the same way as a freshly compiled one."""
    interpreted: Predictor = model.predict_proba_positive  # type: ignore[attr-defined]
    try:
        forest = CompiledForest(model.booster_, cache_dir)  # type: ignore[attr-defined]
    except ImportError:
        return interpreted, "lleaves not installed"
    except Exception as exc:  # noqa: BLE001 - any compiler failure: the booster still answers
        log.warning("%s: compilation failed, using the booster (%s)", label, type(exc).__name__)
        return interpreted, f"compilation failed: {type(exc).__name__}"
    calibrate = model.apply_calibration  # type: ignore[attr-defined]

    choice = bool(getattr(model, "is_choice", False))

    def compiled(X: np.ndarray, group: np.ndarray | None = None) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        return calibrate(forest.predict(X), group) if choice else calibrate(forest.predict(X))

    if sample is not None and len(sample):
        X = np.asarray(sample, dtype=np.float32)
        if choice:  # the sample as one decision: same softmax on both sides
            one = np.zeros(len(X), dtype=np.int64)
            gap = float(np.max(np.abs(compiled(X, one) - interpreted(X, one))))
        else:
            gap = float(np.max(np.abs(compiled(X) - interpreted(X))))
        if not gap <= TOLERANCE:  # NaN too
            log.warning("%s: compiled forest differs from the booster by %.3g on the sample, using the booster", label, gap)
            return interpreted, f"compiled forest differs by {gap:.3g}"
    return compiled, "compiled"

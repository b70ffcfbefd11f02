"""The uplift meta-learners on synthetic data with a known, heterogeneous effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from models.uplift import UpliftBooster, UpliftPyfunc


def _world(n: int = 30_000, seed: int = 0):
    """y ~ Bernoulli(base(x) + tau(x) t): the effect is large where x0 is high, negative where x1 is."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 3)).astype(np.float32)
    base = 0.05 + 0.25 * X[:, 2]  # buys anyway: the response model's favourite, no effect
    tau = 0.25 * X[:, 0] - 0.05 * (X[:, 1] > 0.8)
    t = rng.random(n) < 0.8  # a randomised log: 20 % without contact
    y = (rng.random(n) < base + tau * t).astype(np.int8)
    return X, t.astype(np.int8), y, tau, base


@pytest.mark.parametrize("learner", ["t", "x"])
def test_uplift_recovers_the_effect_not_the_base_rate(learner: str) -> None:
    X, t, y, tau, base = _world()
    model = UpliftBooster(["x0", "x1", "x2"], learner=learner, num_boost_round=150).fit(X, t, y)
    X_new, _, _, tau_new, base_new = _world(5_000, seed=1)
    pred = model.predict_uplift(X_new)
    assert np.corrcoef(pred, tau_new)[0, 1] > 0.75  # measured 0.79 (t), 0.81 (x)
    assert abs(np.corrcoef(pred, base_new)[0, 1]) < 0.2  # the buy-anyway rate does not drive it
    assert abs(pred.mean() - tau_new.mean()) < 0.02
    treated = model.predict_treated(X_new)
    assert np.corrcoef(treated, base_new + tau_new)[0, 1] > 0.9


def test_x_learner_beats_t_learner_with_a_small_control_group() -> None:
    X, t, y, _, _ = _world(20_000, seed=2)
    keep = (t == 1) | (np.random.default_rng(3).random(len(t)) < 0.25)  # control: ~5 % of rows
    X, t, y = X[keep], t[keep], y[keep]
    X_new, _, _, tau_new, _ = _world(5_000, seed=4)
    err = {lr: np.abs(UpliftBooster(learner=lr, num_boost_round=150).fit(X, t, y).predict_uplift(X_new) - tau_new).mean()
           for lr in ("t", "x")}
    assert err["x"] < err["t"], err


def test_bad_input_is_refused() -> None:
    X, t, y, _, _ = _world(2_000)
    with pytest.raises(NotFittedError):
        UpliftBooster().predict_uplift(X)
    with pytest.raises(ValueError, match="unknown learner 's'"):
        UpliftBooster(learner="s").fit(X, t, y)
    with pytest.raises(ValueError, match="control rows need both outcomes"):
        UpliftBooster().fit(X, t, np.where(t == 1, y, 0))
    with pytest.raises(ValueError, match="differ in length"):
        UpliftBooster().fit(X, t[:-1], y)
    with pytest.raises(ValueError, match="2 feature names for 3 columns"):
        UpliftBooster(["a", "b"]).fit(X, t, y)


def test_pyfunc_predicts_by_column_name() -> None:
    X, t, y, _, _ = _world(5_000)
    model = UpliftBooster(["x0", "x1", "x2"], num_boost_round=20).fit(X, t, y)
    wrapped = UpliftPyfunc(model, "test")
    frame = pd.DataFrame(X[:10], columns=["x0", "x1", "x2"])
    np.testing.assert_allclose(wrapped.predict(None, frame[["x2", "x1", "x0"]]), model.predict_uplift(X[:10]))
    with pytest.raises(ValueError, match="lacks feature column"):
        wrapped.predict(None, frame[["x0"]])

"""The uplift meta-learners on synthetic data with a known, heterogeneous effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from models.uplift import UpliftBooster, UpliftPyfunc, customer_category_columns, fit_beta, incremental_share


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
        UpliftBooster(learner="x").fit(X, t, np.where(t == 1, y, 0))
    with pytest.raises(ValueError, match="differ in length"):
        UpliftBooster().fit(X, t[:-1], y)
    with pytest.raises(ValueError, match="2 feature names for 3 columns"):
        UpliftBooster(["a", "b"]).fit(X, t, y)
    with pytest.raises(ValueError, match="needs the acceptance"):
        UpliftBooster().fit(X, t, y)
    with pytest.raises(ValueError, match="both acceptances and refusals"):
        UpliftBooster().fit(X, t, y, accepted=np.zeros(len(t)))


def _cannibalised(n: int = 40_000, seed: int = 0, beta: float = 6.0):
    """A randomised log where acceptance is partly cannibalised: the customer buys the row's category
    anyway with q(x2) (column `c_share`: customer x category), would accept with p(x0, incentive) if
    not, and with `beta` times the odds if buying anyway (then the purchase is not incremental)."""
    rng = np.random.default_rng(seed)
    x0, x2 = rng.random(n), rng.random(n)
    incentive = rng.integers(0, 2, n).astype(float)  # a variant: 1 = with an incentive
    q = 0.02 + 0.3 * x2
    logit = -3.5 + 2.0 * x0 + 0.8 * incentive
    p_new = 1 / (1 + np.exp(-logit))
    p_any = 1 / (1 + np.exp(-(logit + np.log(beta))))
    t = rng.random(n) < 0.85
    anyway = rng.random(n) < q
    accepted = t & (rng.random(n) < np.where(anyway, p_any, p_new))
    purchases = anyway.astype(int) + (accepted & ~anyway)
    X = np.column_stack([x0, incentive, x2]).astype(np.float32)
    tau = (1 - q) * p_new
    groups = rng.integers(0, n // 5, n).astype(str)  # five rows per customer
    return X, t.astype(np.int8), purchases, accepted.astype(np.int8), groups, tau, q * p_any + (1 - q) * p_new


def test_share_learner_recovers_the_incremental_conversion() -> None:
    names = ["offer_x0", "offer_incentive_cost", "offer_cat_x2"]  # offer columns vs a customer x category one
    X, t, y, a, g, _, _ = _cannibalised()
    model = UpliftBooster(names, num_boost_round=150).fit(X, t, y, accepted=a, groups=g)
    X_new, _, _, _, _, tau_new, p_new = _cannibalised(10_000, seed=1)
    pred = model.predict_uplift(X_new)
    assert model.organic_columns_.tolist() == [2]  # the organic model reads no offer column
    assert np.corrcoef(pred, tau_new)[0, 1] > 0.9  # measured 0.96 (P(accept): 0.88)
    assert abs(pred.mean() - tau_new.mean()) < 0.1 * tau_new.mean()  # measured -1 %: calibrated by the randomised lift
    assert 3.0 < model.beta_ < 12.0  # the odds ratio of 6 it was drawn with (measured 4.2)
    # The acceptance (what response ranking sees) over-credits the rows bought anyway; tau does not.
    assert np.corrcoef(pred, tau_new)[0, 1] > np.corrcoef(p_new, tau_new)[0, 1]
    assert model.gives_acceptance
    np.testing.assert_allclose(model.cold_start_uplift(np.array([0.1])), [0.1 * model.mean_share_])


def _with_span(n: int = 40_000, seed: int = 2, beta: float = 6.0, loss: float = 0.5):
    """`_cannibalised`'s log with time in the window: an acceptance buys at once (within the
    acceptance span), a purchase made anyway falls on any of the window's 7 days, and a contact that
    is not accepted puts the customer off a later purchase with probability `loss` (fatigue).
    Returns X, treatment, window purchases, span purchases, accepted, groups, tau."""
    rng = np.random.default_rng(seed)
    x0, x2 = rng.random(n), rng.random(n)
    incentive = rng.integers(0, 2, n).astype(float)
    q = 0.02 + 0.3 * x2
    logit = -3.5 + 2.0 * x0 + 0.8 * incentive
    p_new, p_any = 1 / (1 + np.exp(-logit)), 1 / (1 + np.exp(-(logit + np.log(beta))))
    t = rng.random(n) < 0.85
    anyway = rng.random(n) < q
    accepted = t & (rng.random(n) < np.where(anyway, p_any, p_new))
    today = rng.random(n) < 1 / 7
    lost = t & ~accepted & anyway & ~today & (rng.random(n) < loss)
    new = accepted & ~anyway
    window = (anyway & ~lost).astype(int) + new
    span = (anyway & today).astype(int) + new
    X = np.column_stack([x0, incentive, x2]).astype(np.float32)
    groups = rng.integers(0, n // 5, n).astype(str)
    return X, t.astype(np.int8), window, span, accepted.astype(np.int8), groups, (1 - q) * p_new


def test_share_learner_fits_beta_on_the_lift_outcome() -> None:
    """Counted over the window the lift also holds the later purchases contacts cost, so beta comes
    out too large; counted over the acceptance span (`lift_outcome`) it is the one the log was drawn with."""
    names = ["offer_x0", "offer_incentive_cost", "offer_cat_x2"]
    X, t, window, span, a, g, tau = _with_span()
    on_window = UpliftBooster(names, num_boost_round=100).fit(X, t, window, accepted=a, groups=g)
    on_span = UpliftBooster(names, num_boost_round=100).fit(X, t, window, accepted=a, groups=g, lift_outcome=span)
    assert 3.0 < on_span.beta_ < 12.0, on_span.beta_  # drawn with 6 (measured 3.8)
    assert on_window.beta_ > 1.5 * on_span.beta_, (on_window.beta_, on_span.beta_)  # measured 12.0 vs 3.8
    assert abs(on_span.lift_ - tau[t == 1].mean()) < 0.2 * tau[t == 1].mean()
    # Only beta's lift reads it: the acceptance and organic models are the same fits.
    np.testing.assert_allclose(on_span.predict_accept(X[:50]), on_window.predict_accept(X[:50]))
    np.testing.assert_allclose(on_span.predict_organic(X[:50]), on_window.predict_organic(X[:50]))
    with pytest.raises(ValueError, match="lift_outcome has 9 rows"):
        UpliftBooster(names).fit(X, t, window, accepted=a, lift_outcome=span[:9])
    with pytest.raises(ValueError, match="finite purchase counts"):
        UpliftBooster(names).fit(X, t, window, accepted=a, lift_outcome=np.where(t == 1, span, -1))
    with pytest.raises(ValueError, match="finite purchase counts"):
        UpliftBooster(names).fit(X, t, window, accepted=a, lift_outcome=np.full(len(t), np.nan))


def test_incremental_share_and_beta() -> None:
    q = np.array([0.0, 0.2, 0.5])
    np.testing.assert_allclose(incremental_share(4.0, q), [1.0, 1 / (1 + 4 * 0.25), 1 / 5])
    p = np.full(3, 0.1)
    assert fit_beta(0.2, p, q) == 0.0  # a lift above the acceptance: nothing cannibalised
    beta = fit_beta(float((p * incremental_share(3.0, q)).mean()), p, q)
    assert abs(beta - 3.0) < 1e-6
    assert fit_beta(-0.01, p, q) == 1e4
    assert customer_category_columns(["recency_days", "offer_value", "offer_cat_views_7d", "offer_category_code",
                                      "stage_kind_code", "ctx_hour_of_day", "offer_incentive_cost"]) == [0, 2, 3, 5]


def test_pyfunc_predicts_by_column_name() -> None:
    X, t, y, _, _ = _world(5_000)
    model = UpliftBooster(["x0", "x1", "x2"], learner="x", num_boost_round=20).fit(X, t, y)
    wrapped = UpliftPyfunc(model, "test")
    frame = pd.DataFrame(X[:10], columns=["x0", "x1", "x2"])
    np.testing.assert_allclose(wrapped.predict(None, frame[["x2", "x1", "x0"]]), model.predict_uplift(X[:10]))
    with pytest.raises(ValueError, match="lacks feature column"):
        wrapped.predict(None, frame[["x0"]])

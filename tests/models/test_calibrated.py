"""The calibrated booster on synthetic data with a known probability."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.validation import NotFittedError

from training.metrics import calibration_error
from models.calibrated import CalibratedBooster


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    p = 1 / (1 + np.exp(-(-3 + 1.5 * X[:, 0] - X[:, 1])))
    y = (rng.uniform(size=n) < p).astype(int)
    return X, y, p


def test_calibrated_probabilities_track_the_truth() -> None:
    X, y, _ = _data(40_000, 0)
    Xv, yv, pv = _data(20_000, 1)
    model = CalibratedBooster(feature_names=["a", "b", "c", "d"], num_boost_round=200).fit(X, y, Xv, yv)
    Xt, _, pt = _data(20_000, 2)
    p = model.predict_proba_positive(Xt)
    assert ((p >= 0) & (p <= 1)).all()
    assert np.corrcoef(p, pt)[0, 1] > 0.9
    assert abs(p.mean() - pt.mean()) < 0.01
    oof = model.crossfit_proba(Xv, yv)
    assert calibration_error(yv, oof) < 0.01
    assert not np.allclose(oof, model.predict_proba_positive(Xv))  # out-of-fold, not in-sample


def test_crossfit_from_the_raw_scores_equals_crossfit_from_the_rows() -> None:
    """`nbo train` scores the validation rows once and passes the scores (`raw`): the same
    out-of-fold probabilities, and the shipped ones are `apply_calibration` of the same scores."""
    X, y, _ = _data(8_000, 4)
    Xv, yv, _ = _data(4_000, 5)
    model = CalibratedBooster(num_boost_round=40).fit(X, y, Xv, yv)
    raw = model.raw_score(Xv)
    np.testing.assert_array_equal(model.crossfit_proba(None, yv, raw=raw), model.crossfit_proba(Xv, yv))
    np.testing.assert_array_equal(model.apply_calibration(raw), model.predict_proba_positive(Xv))
    with pytest.raises(ValueError, match="X_val or raw"):
        model.crossfit_proba(None, yv)
    with pytest.raises(ValueError, match="scores but"):
        model.crossfit_proba(None, yv, raw=raw[:-1])


def test_contributions_add_up_to_the_raw_score() -> None:
    X, y, _ = _data(5_000, 3)
    model = CalibratedBooster(num_boost_round=30).fit(X, y, X[:1000], y[:1000])
    contrib = model.contributions(X[:10])
    raw = model.booster_.predict(X[:10], raw_score=True)
    np.testing.assert_allclose(contrib.sum(axis=1), raw, rtol=1e-5)
    assert contrib.shape == (10, 5)


def test_unfitted_model_refuses_to_predict() -> None:
    with pytest.raises(NotFittedError):
        CalibratedBooster().predict_proba_positive(np.zeros((1, 4), dtype=np.float32))


def _split_kinds(model: CalibratedBooster) -> set[str]:
    kinds: set[str] = set()
    stack = [t["tree_structure"] for t in model.booster_.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            kinds.add(node["decision_type"])
            stack += [node["left_child"], node["right_child"]]
    return kinds


def test_categorical_columns_are_split_as_categories() -> None:
    # The label depends on whether a code is in {1, 4, 6}: no single threshold separates it.
    rng = np.random.default_rng(4)
    code = rng.integers(0, 8, 20_000).astype(np.float32)
    X = np.column_stack([code, rng.normal(size=20_000)]).astype(np.float32)
    y = (rng.uniform(size=20_000) < np.where(np.isin(code, [1, 4, 6]), 0.3, 0.05)).astype(int)
    by_category = CalibratedBooster(feature_names=["code", "x"], categorical=("code",), num_boost_round=5)
    by_order = CalibratedBooster(feature_names=["code", "x"], categorical=(), num_boost_round=5)
    assert "==" in _split_kinds(by_category.fit(X, y))
    assert "==" not in _split_kinds(by_order.fit(X, y))
    # None: the feature set's booster_categorical, here absent from the columns (as for churn)
    assert "==" not in _split_kinds(CalibratedBooster(feature_names=["code", "x"], num_boost_round=5).fit(X, y))


def test_negative_sample_keeps_every_positive_and_weights_the_negatives() -> None:
    from models.calibrated import negative_sample

    y = np.zeros(10_000, dtype=np.int8)
    y[::50] = 1  # 200 positives
    assert negative_sample(y, None, 0) == (None, None)
    assert negative_sample(y, 10_000, 0) == (None, None)  # not exceeded: every row
    keep, weight = negative_sample(y, 2_000, 0)
    assert len(keep) == 2_000 and (np.diff(keep) > 0).all()  # time order kept
    assert set(np.flatnonzero(y)) <= set(keep.tolist())
    negative = y[keep] == 0
    assert np.isclose(weight[negative].sum(), (y == 0).sum())  # the negatives' total weight
    assert (weight[~negative] == 1.0).all()
    again, _ = negative_sample(y, 2_000, 0)
    np.testing.assert_array_equal(keep, again)  # seeded
    assert not np.array_equal(keep, negative_sample(y, 2_000, 1)[0])
    tight, w = negative_sample(y, 100, 0)  # fewer rows than positives: positives and one negative
    assert len(tight) == 201 and (y[tight] == 0).sum() == 1 and w.max() == (y == 0).sum()
    with pytest.raises(ValueError, match="at least 1"):
        negative_sample(y, 0, 0)


def test_a_fit_on_sampled_negatives_stays_calibrated() -> None:
    X, y, _ = _data(60_000, 6)
    Xv, yv, pv = _data(20_000, 7)
    full = CalibratedBooster(num_boost_round=200).fit(X, y, Xv, yv)
    sampled = CalibratedBooster(num_boost_round=200, max_rows=15_000).fit(X, y, Xv, yv)
    assert full.sampled_rows_ == 60_000 and sampled.sampled_rows_ == 15_000
    p, q = full.predict_proba_positive(Xv), sampled.predict_proba_positive(Xv)
    assert abs(q.mean() - pv.mean()) < 0.01
    assert np.corrcoef(q, pv)[0, 1] > 0.9
    assert abs(np.corrcoef(p, pv)[0, 1] - np.corrcoef(q, pv)[0, 1]) < 0.02


def test_a_model_pickled_before_max_rows_still_answers_get_params() -> None:
    model = CalibratedBooster(num_boost_round=3)
    del model.__dict__["max_rows"]  # what unpickling a model saved before the parameter gives
    assert model.get_params()["max_rows"] is None

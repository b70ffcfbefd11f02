"""The incremental-value estimator (evaluation.ope.incremental_value) on hand-made randomised logs."""

import numpy as np
import pytest

from evaluation.ope import incremental_value


def _balanced_log():
    """400 decisions: 200 no contact (mu 0.5), 100 offer A, 100 offer B (mu 0.25 each).
    Contact with A earns 3, with B 0.5; without contact A's category earns 1, B's 0.5."""
    logged = np.array([-1] * 200 + [0] * 100 + [1] * 100)
    mu = np.where(logged < 0, 0.5, 0.25)
    reward = np.where(logged == 0, 3.0, np.where(logged == 1, 0.5, 0.0))
    y0 = np.tile([1.0, 0.5], (400, 1))
    return logged, mu, reward, y0


@pytest.mark.parametrize("target, truth", [([1.0, 0.0], 2.0), ([0.5, 0.5], 1.0), ([0.0, 0.0], 0.0), ([0.0, 0.6], 0.0)])
def test_exact_on_a_balanced_log(target, truth):
    logged, mu, reward, y0 = _balanced_log()
    pi = np.tile(target, (400, 1))
    est = incremental_value(pi, logged, mu, reward, y0)
    assert est.ips.value == pytest.approx(truth, abs=1e-12)
    assert est.policy.value - est.none.value == pytest.approx(truth, abs=1e-12)


def test_treated_rows_outcome_none_is_ignored_and_bad_input_refused():
    logged, mu, reward, y0 = _balanced_log()
    pi = np.tile([1.0, 0.0], (400, 1))
    y0_noisy = y0.copy()
    y0_noisy[logged >= 0] = 99.0  # a contact row's no-contact outcome is never observed: unused
    assert incremental_value(pi, logged, mu, reward, y0_noisy).ips.value == pytest.approx(2.0)
    with pytest.raises(ValueError):
        incremental_value(pi, np.where(logged == 1, 2, logged), mu, reward, y0)
    with pytest.raises(ValueError):
        incremental_value(pi, logged, np.zeros(400), reward, y0)


def test_unbiased_on_a_random_log_and_dr_tighter_with_a_good_model():
    """Bernoulli purchases: organic rate q per category, a contact with offer a adds a purchase
    with probability u_a; value 10 per purchase, contact cost 0.5. True incremental value of a
    target that makes offer a with probability pi_a: sum_a pi_a (10 u_a - 0.5)."""
    rng = np.random.default_rng(3)
    n, q, u, value, cost = 200_000, np.array([0.3, 0.1, 0.2]), np.array([0.05, 0.2, 0.0]), 10.0, 0.5
    p_log = np.array([0.3, 0.3, 0.2, 0.2])  # none, offers 0..2
    action = rng.choice(4, size=n, p=p_log) - 1
    mu = p_log[action + 1]
    organic = rng.random((n, 3)) < q
    treated = action >= 0
    a = np.maximum(action, 0)
    bought = organic[np.arange(n), a] | (rng.random(n) < u[a])
    reward = np.where(treated, value * bought - cost, 0.0)
    y0 = value * organic
    pi = np.tile([0.1, 0.7, 0.0], (n, 1))
    truth = float((pi[0] * (value * u * (1 - q) - cost)).sum())  # an added purchase counts only when not bought anyway
    est = incremental_value(pi, action, mu, reward, y0)
    assert est.ips.low < truth < est.ips.high
    wrong = incremental_value(pi, action, mu, reward, y0, baseline=np.zeros((n, 3)), delta=np.full((n, 3), 5.0))
    assert wrong.dr.low < truth < wrong.dr.high  # a wrong reward model: still unbiased
    good = incremental_value(pi, action, mu, reward, y0, baseline=np.tile(value * q, (n, 1)),
                             delta=np.tile(value * u * (1 - q) - cost, (n, 1)))
    assert good.dr.low < truth < good.dr.high
    assert good.dr.half_width < est.ips.half_width


@pytest.mark.parametrize("target, truth", [([1.0, 0.0], 2.0), ([0.5, 0.5], 1.0), ([0.0, 0.0], 0.0)])
def test_snips_and_dr_baseline_exact_on_a_balanced_log(target, truth):
    logged, mu, reward, y0 = _balanced_log()
    pi = np.tile(target, (400, 1))
    est = incremental_value(pi, logged, mu, reward, y0, baseline=np.tile([0.7, 0.2], (400, 1)))
    assert est.snips.value == pytest.approx(truth, abs=1e-12)
    assert est.dr_baseline.value == pytest.approx(truth, abs=1e-12)  # any baseline: it cancels in expectation
    assert est.dr is None  # no reward model of the offers: no DR with a direct term


def test_snips_normalises_weights_that_do_not_average_to_their_expectation():
    """The same log with every offer's reward shifted by a constant c: IPS moves by c x (sum w / n -
    coverage), SNIPS does not (its weights are normalised to the target's P(contact))."""
    logged, mu, reward, y0 = _balanced_log()
    keep = np.r_[np.arange(200), np.arange(200, 260), np.arange(300, 400)]  # fewer A contacts than their share
    logged, mu, reward, y0 = logged[keep], mu[keep], reward[keep], y0[keep]
    pi = np.tile([1.0, 0.0], (len(keep), 1))
    base = incremental_value(pi, logged, mu, reward, y0)
    shifted = incremental_value(pi, logged, mu, np.where(logged >= 0, reward + 10.0, reward), y0)
    assert shifted.snips.value == pytest.approx(base.snips.value + 10.0)
    assert shifted.ips.value != pytest.approx(base.ips.value + 10.0)


def test_snips_and_dr_baseline_cover_the_truth_on_a_random_log():
    rng = np.random.default_rng(5)
    n, q, u, value, cost = 200_000, np.array([0.3, 0.1, 0.2]), np.array([0.05, 0.2, 0.0]), 10.0, 0.5
    p_log = np.array([0.2, 0.6, 0.1, 0.1])  # none, offers 0..2: a logger close to the target (offer 0)
    action = rng.choice(4, size=n, p=p_log) - 1
    mu = p_log[action + 1]
    organic = rng.random((n, 3)) < q
    a = np.maximum(action, 0)
    bought = organic[np.arange(n), a] | (rng.random(n) < u[a])
    reward = np.where(action >= 0, value * bought - cost, 0.0)
    pi = np.tile([0.9, 0.1, 0.0], (n, 1))
    truth = float((pi[0] * (value * u * (1 - q) - cost)).sum())
    est = incremental_value(pi, action, mu, reward, value * organic, baseline=np.tile(value * q, (n, 1)))
    assert est.snips.low < truth < est.snips.high
    assert est.dr_baseline.low < truth < est.dr_baseline.high
    assert est.dr_baseline.half_width < est.ips.half_width  # the baseline is a control variate

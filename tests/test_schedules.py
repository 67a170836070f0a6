import numpy as np
import pytest

from coopseg.training.schedules import PolynomialDecayWithWarmup


def test_poly_values():
    s = PolynomialDecayWithWarmup(0.1, 100, end_learning_rate=0.001, power=2.0)
    for t in (0, 10, 50, 99, 100, 150):
        want = (0.1 - 0.001) * (1 - min(t, 100) / 100) ** 2 + 0.001
        assert float(s(t)) == pytest.approx(want, rel=1e-6)


def test_linear_power_is_linear_and_ends_at_end_value():
    s = PolynomialDecayWithWarmup(1.0, 10, end_learning_rate=0.0, power=1.0)
    np.testing.assert_allclose([float(s(t)) for t in range(11)], np.linspace(1, 0, 11), atol=1e-6)


def test_warmup_then_decay():
    s = PolynomialDecayWithWarmup(0.2, 100, power=1.0, warmup_steps=4)
    np.testing.assert_allclose([float(s(t)) for t in range(4)], [0.05, 0.1, 0.15, 0.2], rtol=1e-6)
    assert float(s(4)) == pytest.approx(0.2 * (1 - 4 / 100), rel=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="decay_steps"):
        PolynomialDecayWithWarmup(0.1, 0)
    with pytest.raises(ValueError, match="warmup_steps"):
        PolynomialDecayWithWarmup(0.1, 10, warmup_steps=10)


def test_defaults_are_teflas_poly_decay_policy():
    # TEFLA: base_lr * (1 - iter_idx / (max_epoch * n_iters_per_epoch)) ** power, power=10.
    s = PolynomialDecayWithWarmup(0.03, 1000)
    for t in (0, 1, 100, 500, 999, 1000):
        assert float(s(t)) == pytest.approx(0.03 * (1 - t / 1000) ** 10.0, rel=1e-5, abs=1e-12)
    assert float(s(1000)) == 0.0

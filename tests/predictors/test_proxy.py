import numpy as np
import pytest

from predictors.proxy import MonotoneCalibration, rank_proxies


def test_the_agreeing_device_is_chosen_and_calibrated() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(1, 10, size=12)
    agreeing = 3 * truth**0.8
    shuffled = rng.permutation(truth)
    choice = rank_proxies(np.c_[shuffled, agreeing], truth)
    assert choice.index == 1 and choice.spearman == pytest.approx(1.0)
    cal = MonotoneCalibration.fit(agreeing, truth)
    centre, low, high = cal.apply(agreeing)
    np.testing.assert_allclose(centre, truth, rtol=1e-6)
    assert (low <= centre).all() and (high >= centre).all()


def test_a_reversed_proxy_never_gets_a_decreasing_calibration() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    cal = MonotoneCalibration.fit(x, x[::-1].copy())
    assert cal.b > 0
    with pytest.raises(ValueError):
        rank_proxies(np.ones((2, 1)), np.ones(2))

import numpy as np
import pytest

from predictors.proxy import MonotoneCalibration, cluster_order, pairwise_spearman, rank_proxies


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


def test_devices_that_rank_alike_sit_together_in_the_agreement_order() -> None:
    """Two pairs of devices, each pair ranking designs alike: the matrix says so, and the
    clustering order never splits a pair."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(1, 2, 300), rng.uniform(1, 2, 300)
    latency = np.c_[a, b, 2 * a + rng.normal(0, 0.01, 300), 3 * b + rng.normal(0, 0.01, 300)]
    latency[:295, 3] = np.nan  # the fourth device shares only 5 designs with the others
    rho = pairwise_spearman(latency)
    assert rho[0, 2] > 0.99 and abs(rho[0, 1]) < 0.2
    assert np.isnan(rho[0, 3]) and rho[1, 1] == pytest.approx(1.0)  # 5 in common: too few
    order = cluster_order(pairwise_spearman(latency[:, :3]))
    assert abs(order.index(0) - order.index(2)) == 1

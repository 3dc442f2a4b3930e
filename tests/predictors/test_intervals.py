"""The interval convention: central 90%, split conformal on held-out errors."""

from statistics import NormalDist

import numpy as np
import pytest

from predictors.intervals import LEVEL, Z90, conformal_quantile


def test_a_small_held_out_set_widens_the_interval() -> None:
    """Twelve held-out errors (a model of 60 designs) cannot place a 90% quantile: the
    split-conformal rank is the largest. With thousands it is the plain quantile."""
    rng = np.random.default_rng(4)
    few = np.abs(rng.normal(size=12))
    assert conformal_quantile(few) == few.max()
    many = np.abs(rng.normal(size=5000))
    assert conformal_quantile(many) == pytest.approx(np.quantile(many, LEVEL), rel=0.01)
    assert conformal_quantile(many) >= np.quantile(many, LEVEL)
    assert np.isnan(conformal_quantile(np.array([])))


def test_the_conformal_interval_covers_new_draws_at_least_at_its_level() -> None:
    """Over many small calibration sets, a fresh error falls within the quantile at least
    LEVEL of the time (the guarantee the plain quantile misses at n = 12)."""
    rng = np.random.default_rng(5)
    sets = np.abs(rng.standard_cauchy(size=(4000, 12)))
    fresh = np.abs(rng.standard_cauchy(size=4000))
    conformal = np.mean([f <= conformal_quantile(e) for e, f in zip(sets, fresh, strict=True)])
    plain = np.mean([f <= np.quantile(e, LEVEL) for e, f in zip(sets, fresh, strict=True)])
    assert conformal >= LEVEL - 0.01
    assert plain < LEVEL - 0.01


def test_z90_is_the_central_ninety_percent_normal_quantile() -> None:
    assert pytest.approx(NormalDist().inv_cdf((1 + LEVEL) / 2), abs=1e-12) == Z90

import numpy as np
import pytest

from predictors.metrics import coverage, mean_quality, quality


def test_quality_of_a_perfect_and_an_inverted_prediction() -> None:
    measured = np.array([1.0, 2.0, 3.0, 4.0])
    perfect = quality(measured, measured)
    assert perfect["spearman"] == pytest.approx(1.0)
    assert perfect["within_10pct"] == 1.0 and perfect["mape"] == 0.0
    inverted = quality(measured[::-1].copy(), measured)
    assert inverted["spearman"] == pytest.approx(-1.0)
    assert inverted["rmse_ms"] == pytest.approx(np.sqrt(5.0))


def test_within_10pct_counts_relative_error() -> None:
    q = quality(np.array([1.05, 2.5, 3.0]), np.array([1.0, 2.0, 3.0]))
    assert q["within_10pct"] == pytest.approx(2 / 3)


def test_coverage_and_mean() -> None:
    assert coverage(np.array([0, 0]), np.array([1, 1]), np.array([0.5, 2.0])) == 0.5
    assert mean_quality([{"a": 1.0}, {"a": 3.0}]) == {"a": 2.0}
    with pytest.raises(ValueError):
        quality(np.array([1.0]), np.array([1.0]))

"""Which predictions are flagged: below half of what the device (or the basis) supports, or
with an interval spanning more than a factor of 3."""

from __future__ import annotations

import numpy as np

from search.plausibility import extrapolated, fastest_working, uncertain


def test_a_prediction_below_half_the_fastest_measured_is_an_extrapolation() -> None:
    predicted = np.array([0.03, 0.119, 0.12, 0.5, np.nan])
    assert extrapolated(predicted, 0.24).tolist() == [True, True, False, False, False]
    assert not extrapolated(predicted, None).any()  # nothing to judge against


def test_without_measurements_each_design_is_judged_against_the_basis() -> None:
    predicted = np.array([0.1, 0.1, 0.1])
    fastest_basis = np.array([0.15, 0.25, np.nan])  # per design; NaN: no basis prediction
    assert extrapolated(predicted, fastest_basis).tolist() == [False, True, False]


def test_intervals_wider_than_a_factor_of_three_are_uncertain() -> None:
    low = np.array([0.0001, 1.0, 1.0, 2.0, 0.0])
    high = np.array([7.2, 3.0, 3.01, 2.0, 1.0])
    assert uncertain(low, high).tolist() == [True, False, True, False, True]


def test_a_degenerate_cell_is_no_floor() -> None:
    """pixel3 runs disconnected cells in 0.003 ms: its floor is the fastest working design."""
    values = np.array([0.0033, 1.05, 2.0])
    assert fastest_working(values, np.array([True, False, False])) == 1.05
    assert fastest_working(values) == 0.0033
    assert fastest_working(np.array([0.1]), np.array([True])) is None

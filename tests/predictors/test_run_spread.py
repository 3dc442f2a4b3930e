"""A recorded accuracy is one training run: the next run's expectation and interval."""

from __future__ import annotations

import numpy as np

from devices.reference import DIGITS, load_digits_runs
from predictors.intervals import Z90
from predictors.run_spread import next_run, run_sigma, shipped_sigma


def test_run_sigma_makes_a_normal_interval_hold_nine_runs_in_ten() -> None:
    rng = np.random.default_rng(0)
    normal = {str(i): list(90 + 2.0 * rng.standard_normal(4)) for i in range(500)}
    assert abs(run_sigma(normal) - 2.0) < 0.15  # type: ignore[operator]
    # a training that collapsed now and then does not widen every interval
    collapsed = {k: [*v[:3], v[3] - 30 if int(k) % 20 == 0 else v[3]] for k, v in normal.items()}
    assert abs(run_sigma(collapsed) - 2.0) < 0.3  # type: ignore[operator]
    assert run_sigma({"once": [70.0]}) is None


def test_without_a_model_the_record_stands_with_two_runs_spread() -> None:
    mean, _, high = next_run(np.array([95.0, 60.0]), sigma=2.0)
    assert list(mean) == [95.0, 60.0]
    assert np.allclose(high - mean, Z90 * 2.0 * np.sqrt(2))


def test_a_lucky_record_is_drawn_towards_the_model() -> None:
    # the model says 90 +- (90% interval) 5 points; the record says 99 from one run
    model = (np.array([90.0]), np.array([85.0]), np.array([95.0]))
    mean, _, high = next_run(np.array([99.0]), sigma=2.5, model=model)
    assert 90.0 < mean[0] < 99.0
    # never narrower than one new run's own spread
    assert high[0] - mean[0] > Z90 * 2.5
    # a model far sharper than a run moves the record most of the way, never all of it
    sharp = (np.array([90.0]), np.array([89.9]), np.array([90.1]))
    assert 90.0 < next_run(np.array([99.0]), 2.5, sharp)[0][0] < 91.0


def test_digits_ships_repeat_runs_and_other_datasets_have_none() -> None:
    runs = load_digits_runs("nb201")
    assert len(runs) >= 20 and all(len(v) >= 3 for v in runs.values())
    sigma = shipped_sigma("nb201", DIGITS)
    assert sigma is not None and 0.5 < sigma < 10
    assert shipped_sigma("nb201", "cifar10") is None

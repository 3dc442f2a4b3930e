"""The accuracy ladder: record, then the dataset's model, then fp32 plus the change."""

from __future__ import annotations

from typing import Any

import numpy as np

from predictors.accuracy import accuracy_ladder
from predictors.answer import Arrays

DESIGNS = ["a", "b", "c"]


def model(designs: list[str]) -> Arrays:
    """A model predicting 90 +- 3 for everything it is asked about."""
    n = len(designs)
    return np.full(n, 90.0), np.full(n, 87.0), np.full(n, 93.0)


def quantized(designs: list[str]) -> tuple[Arrays, dict[str, Any]]:
    n = len(designs)
    return (np.full(n, 80.0), np.full(n, 75.0), np.full(n, 85.0)), {"method": "fp32+change"}


def test_a_record_answers_exactly_where_no_repeat_runs_are_known() -> None:
    (centre, low, high), info = accuracy_ladder(
        DESIGNS, {"a": 95.0}, model, None, run_sigma=None, scope="s"
    )
    assert (centre[0], low[0], high[0]) == (95.0, 95.0, 95.0)
    assert list(centre[1:]) == [90.0, 90.0]  # the model for the others
    assert info["method"] == "space-model" and info["recorded"] == 1


def test_with_a_known_spread_a_record_is_the_next_runs_expectation() -> None:
    (centre, low, high), info = accuracy_ladder(
        DESIGNS, {"a": 99.5, "b": 91.0, "c": 88.0}, model, None, run_sigma=2.0, scope="s"
    )
    assert info["method"] == "recorded" and info["run_sigma_points"] == 2.0
    assert 90.0 < centre[0] < 99.5  # a lucky record drawn towards the model
    assert np.all(low < centre) and np.all(high <= 100.0)  # kept within 0-100%


def test_a_quantized_policy_without_model_falls_back_to_fp32_plus_change() -> None:
    arrays, info = accuracy_ladder(DESIGNS, {}, None, quantized, run_sigma=None, scope="s")
    assert arrays is not None and list(arrays[0]) == [80.0] * 3
    assert info["method"] == "fp32+change"


def test_nothing_to_answer_with_says_so() -> None:
    arrays, info = accuracy_ladder(DESIGNS, {}, None, None, None, "nb201 on 'x' at fp32")
    assert (
        arrays is None and info["reason"] == "no accuracy records or model for nb201 on 'x' at fp32"
    )
    # records without a model: the recorded designs only, and a note on the rest
    arrays, info = accuracy_ladder(DESIGNS, {"b": 70.0}, None, None, None, "s")
    assert arrays is not None and np.isnan(arrays[0][0]) and arrays[0][1] == 70.0
    assert info["method"] == "recorded" and "2 designs without a record" in info["note"]

"""A recorded accuracy is one training run: what another run of the same design will give.

Training the same design again with another seed lands points away on a small dataset, so a
record is evidence about the design, not its accuracy. Given the dataset's run-to-run spread
(pooled from repeated trainings), a record and, where there is one, the dataset model's
prediction are combined by their precisions into the expected accuracy of the user's next
run, with a 90% interval that holds that run's own spread. The highest of thousands of
single-run records is mostly luck; this is what shrinks it back.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from devices.reference import DIGITS, load_digits_runs
from predictors.answer import Arrays
from predictors.intervals import Z90


@lru_cache(maxsize=8)
def shipped_sigma(space: str, dataset: str) -> float | None:
    """The run-to-run spread EdgeOpt measured for its own digits records; None for other
    datasets (a user's records carry no repeat runs) and spaces without shipped repeats."""
    return run_sigma(load_digits_runs(space)) if dataset == DIGITS else None


def run_sigma(runs: dict[str, list[float]]) -> float | None:
    """The run-to-run spread (points, one run's sigma) that makes a normal 90% interval hold
    90% of repeat runs: from the 90th percentile of |run - other run| of the same design,
    which is sigma x sqrt(2) x Z90 for normal runs. A percentile, not the SD: a few trainings
    that collapse (tens of points off) would otherwise widen every interval. None without two
    runs of any design."""
    gaps = [
        abs(a - b)
        for values in runs.values()
        for i, a in enumerate(values)
        for b in values[i + 1 :]
    ]
    if not gaps:
        return None
    return float(np.quantile(gaps, 0.9) / (Z90 * np.sqrt(2)))


def next_run(recorded: np.ndarray, sigma: float, model: Arrays | None = None) -> Arrays:
    """Expected top-1 of a new training run of designs with one recorded run each.

    Without a model: the record, ± the spread of the difference of two runs. With one: the
    model's error about a design's mean run (its interval, less the run spread it already
    holds) and the record's (one run's spread) weigh each other; the new run's spread is
    added to what is left of their uncertainty.
    """
    recorded = np.asarray(recorded, dtype=float)
    run_var = sigma**2
    if model is None:
        mean, mean_var = recorded, np.full_like(recorded, run_var)
    else:
        centre, low, high = (np.asarray(a, dtype=float) for a in model)
        model_var = ((high - low) / (2 * Z90)) ** 2
        # the model was judged against single runs: what is left once their spread is out,
        # kept at a tenth of it so a model never outweighs the record completely
        about_mean = np.maximum(model_var - run_var, 0.1 * run_var)
        w = about_mean / (about_mean + run_var)  # the record's weight
        mean = w * recorded + (1 - w) * centre
        mean_var = about_mean * run_var / (about_mean + run_var)
    half = Z90 * np.sqrt(mean_var + run_var)
    return mean, mean - half, mean + half

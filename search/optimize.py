"""Constrained choice of a design from predictions: feasibility odds, Pareto fronts, verification.

Predicted latency comes with a 90% interval; read as a log-normal, it gives each design the
probability that its true latency meets a budget. The optimizer never trusts a prediction
near the budget blindly: with a few measurements to spend on the device it verifies the most
accurate candidates in turn, refitting the predictor with every measurement, and returns
the most accurate design it *measured* within budget. (Without measurements to spend,
``/optimize`` takes the most accurate design whose probability of meeting every goal is at
least its ``confidence``: ``app/optimize_service.py``.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Z90 = 1.6448536269514722  # the predictors' intervals are central 90%
SAFE = 0.95  # a design this likely within budget is the fallback worth improving on


def probability_within(
    median: np.ndarray, low: np.ndarray, high: np.ndarray, budget: float
) -> np.ndarray:
    """P(true value <= budget) for log-normal predictions given by median and 90% interval."""
    sigma = np.maximum((np.log(high) - np.log(low)) / (2 * Z90), 1e-6)
    z = (np.log(budget) - np.log(median)) / sigma
    from scipy.special import ndtr  # scipy costs a second at import: load it on use

    return np.asarray(ndtr(z), dtype=float)


def pareto_front(objective_max: np.ndarray, cost_min: np.ndarray) -> np.ndarray:
    """Indices of designs no other design beats on both (higher objective, lower cost).

    Returned in increasing cost (and increasing objective) order.
    """
    order = np.lexsort((-objective_max, cost_min))
    front, best = [], -np.inf
    for i in order:
        if objective_max[i] > best:
            front.append(i)
            best = objective_max[i]
    return np.array(front, dtype=int)


@dataclass
class Choice:
    index: int
    feasible: bool  # measured (or, unverified, predicted with enough confidence) within budget
    verified: bool
    probability: float
    measured: dict[int, float] = field(default_factory=dict)
    note: str = ""


Predict = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def verified_search(
    accuracy: np.ndarray,
    budget: float,
    predict: Predict,
    measure: Callable[[int], float],
    shots: np.ndarray,
    shot_values: np.ndarray,
    measurements: int,
    min_probability: float = 0.2,
) -> Choice:
    """Spend ``measurements`` verifying the designs with the best expected gain.

    The gain of measuring a design is (its accuracy - the incumbent's) x P(within budget),
    where the incumbent is the best design measured within budget (before any, the most
    accurate design at least SAFE-likely within budget, which the last measurement verifies
    if none has been). Designs below ``min_probability`` are not worth a measurement. Each
    measurement joins the predictor's shots.
    """
    measured = {int(i): float(v) for i, v in zip(shots, shot_values, strict=True)}
    for step in range(measurements):
        idx = np.fromiter(measured, dtype=int)
        median, low, high = predict(idx, np.array([measured[i] for i in idx]))
        p = probability_within(median, low, high, budget)
        incumbent = max((accuracy[i] for i, v in measured.items() if v <= budget), default=None)
        if incumbent is None:  # nothing verified yet: improve on the safest good design
            safe = p >= SAFE
            safe[idx] = False
            if safe.any() and step == measurements - 1:  # last chance: secure a fallback
                pick = int(np.flatnonzero(safe)[np.argmax(accuracy[safe])])
                measured[pick] = float(measure(pick))
                break
            incumbent = float(accuracy[safe].max()) - 1e-9 if safe.any() else -np.inf
        gain = np.where(
            (accuracy > incumbent) & (p >= min_probability), (accuracy - incumbent) * p, -np.inf
        )
        if np.isinf(incumbent):
            gain = np.where(p >= min_probability, p, -np.inf)
        gain[idx] = -np.inf
        if not np.isfinite(gain).any():
            break
        pick = int(np.argmax(gain))
        measured[pick] = float(measure(pick))
    within = [i for i, v in measured.items() if v <= budget]
    if within:
        best = max(within, key=lambda i: accuracy[i])
        return Choice(best, True, True, 1.0, measured)
    idx = np.fromiter(measured, dtype=int)
    median, low, high = predict(idx, np.array([measured[i] for i in idx]))
    p = probability_within(median, low, high, budget)
    p[idx] = 0.0
    best = int(np.argmax(p))
    return Choice(
        best,
        False,
        False,
        float(p[best]),
        measured,
        note="no measured design met the budget; returning the likeliest unmeasured one",
    )

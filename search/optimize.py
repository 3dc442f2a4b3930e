"""The one optimizer: from predicted candidates and goals to a choice, with or without measuring.

``choose`` is what ``POST /optimize`` answers from predictions: every candidate (design x
policy) has a predicted accuracy, latency and energy with 90% intervals; read as a normal
(accuracy) or log-normal (latency, energy), each gives the probability that a goal holds.
The choice is the best candidate by the objective among those whose probability of meeting
every goal (treated as independent) reaches ``confidence``; when none does, there is no choice:
the answer names each goal out of reach with the best value within reach for it (among the
designs meeting the other goals, and over every design), and lists the designs that come
closest to it while meeting the other goals.

``refine`` is the same choice when the device can measure: it spends the allowed
measurements on the designs that teach the predictor most (the shots), refits, then measures
the candidates with the best expected gain in turn, refitting after each, and answers with
the best *measured* candidate that meets the goals. A measurement is not exact: a repeat of
it lands elsewhere, so a measured candidate is held to the goals with its own spread
(``Timing``) at the requested confidence, never by its median alone. The service's
measure-and-refine job and ``edgeopt eval optimize`` both call these two functions.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from predictors.intervals import Z90

SAFE = 0.95  # a candidate this likely to meet the goals is the fallback worth improving on
MIN_PROBABILITY = 0.2  # below this a candidate is not worth a measurement
PARETO_POINTS = 200
Objective = Literal["accuracy", "latency", "energy", "weighted"]


@dataclass(frozen=True)
class Estimates:
    """Median (or mean, for accuracy) and central 90% interval, one entry per candidate."""

    value: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def exact(cls, values: np.ndarray) -> Estimates:
        values = np.asarray(values, dtype=float)
        return cls(values, values, values)

    def take(self, rows: np.ndarray) -> Estimates:
        return Estimates(self.value[rows], self.low[rows], self.high[rows])

    def at(self, i: int) -> dict[str, float]:
        return {
            "value": float(self.value[i]),
            "low": float(self.low[i]),
            "high": float(self.high[i]),
        }

    @staticmethod
    def concat(parts: Sequence[Estimates]) -> Estimates:
        return Estimates(
            np.concatenate([p.value for p in parts]),
            np.concatenate([p.low for p in parts]),
            np.concatenate([p.high for p in parts]),
        )


@dataclass(frozen=True)
class Goals:
    """Constraints and what to optimise; ``weighted`` maximises w_acc * accuracy (points)
    - w_lat * latency (ms) - w_energy * energy (mJ)."""

    max_latency_ms: float | None = None
    max_energy_mj: float | None = None
    min_accuracy: float | None = None
    objective: Objective = "accuracy"
    weights: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Candidates:
    """Designs x policies, flattened: candidate i is design ``design[i]`` in ``policy[i]``."""

    design: np.ndarray  # index into the caller's list of designs
    policy: np.ndarray  # index into the caller's list of policies
    latency: Estimates
    accuracy: Estimates | None = None
    energy: Estimates | None = None

    def __len__(self) -> int:
        return len(self.design)

    def with_latency(self, latency: Estimates) -> Candidates:
        return replace(self, latency=latency)

    def take(self, rows: np.ndarray) -> Candidates:
        """The candidates at ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=int)
        return Candidates(
            self.design[rows],
            self.policy[rows],
            self.latency.take(rows),
            None if self.accuracy is None else self.accuracy.take(rows),
            None if self.energy is None else self.energy.take(rows),
        )


GOAL_ORDER = ("accuracy", "latency", "energy")
GOAL_FIELDS = {"accuracy": "min_accuracy", "latency": "max_latency_ms", "energy": "max_energy_mj"}


@dataclass(frozen=True)
class Shortfall:
    """A goal no design meets with the others at the confidence asked, and what is within
    reach for it.

    ``best_with_others`` is the best target of this goal that some design meets together with
    the other goals (None when no design meets them); ``best_alone`` the best any design
    meets ignoring them. Both are at the request's confidence: set as the goal, each is met.
    """

    goal: str  # accuracy, latency or energy
    target: float
    others: tuple[str, ...]
    best_with_others: float | None
    best_alone: float | None

    @property
    def reachable_alone(self) -> bool:
        return self.best_alone is not None and _meets(self.goal, self.best_alone, self.target)

    def describe(self, goals: Goals) -> str:
        """E.g. "min_accuracy 95% is out of reach: the best within 10 ms is 92.9%; the best
        at any latency is 94.4%"."""
        within = " and ".join(_within(g, goals) for g in self.others)
        parts = []
        if self.others and self.best_with_others is None:
            parts.append(f"no design is {within}")
        elif self.others:
            best = _value(self.goal, self.best_with_others or 0.0)
            parts.append(f"the {_best(self.goal)} {within} is {best}")
        anywhere = (
            f"at any {self.others[0]}" if len(self.others) == 1 else "ignoring the other goals"
        )
        if self.best_alone is not None:
            alone = _value(self.goal, self.best_alone)
            parts.append(
                f"the {_best(self.goal)} {anywhere if self.others else 'of all'} is {alone}"
            )
        verdict = (
            "cannot be met with the other goals" if self.reachable_alone else "is out of reach"
        )
        return f"{GOAL_FIELDS[self.goal]} {_value(self.goal, self.target)} {verdict}: " + "; ".join(
            parts
        )


def _meets(goal: str, value: float, target: float) -> bool:
    return value >= target if goal == "accuracy" else value <= target


def _best(goal: str) -> str:
    return {"accuracy": "best", "latency": "fastest", "energy": "most frugal"}[goal]


def _value(goal: str, value: float) -> str:
    return {"accuracy": f"{value:.1f}%", "latency": f"{value:.3g} ms"}.get(goal, f"{value:.3g} mJ")


def _within(goal: str, goals: Goals) -> str:
    if goal == "accuracy":
        return f"at {_value(goal, goals.min_accuracy or 0.0)} accuracy or more"
    target = goals.max_latency_ms if goal == "latency" else goals.max_energy_mj
    return f"within {_value(goal, target or 0.0)}"


@dataclass(frozen=True)
class Choice:
    """What the optimizer chose (``index`` is None when nothing met the goals) and why."""

    index: int | None
    probabilities: dict[str, np.ndarray]  # per goal, and "all"
    score: np.ndarray  # the objective, -inf where a candidate has no prediction
    n_feasible: int
    valid: int  # candidates with a prediction
    alternatives: list[int]
    closest: list[int]  # when infeasible: nearest the goal out of reach, meeting the others
    pareto: list[int]  # accuracy (or speed) against latency, increasing latency
    confidence: float
    measured: dict[int, float] = field(default_factory=dict)  # candidate -> measured latency
    spread: dict[int, float] = field(default_factory=dict)  # candidate -> its repeat spread
    verified: bool = False  # the chosen candidate's latency was measured
    shortfalls: tuple[Shortfall, ...] = ()  # when infeasible: the goals out of reach
    goals: Goals | None = None

    @property
    def feasible(self) -> bool:
        return self.index is not None

    @property
    def message(self) -> str:
        if self.index is not None and self.verified:
            return (
                f"best of {sum(1 for _ in self.measured)} measured designs, "
                f"measured within the goals with probability >= {self.confidence:.2f} "
                "(its measurement's spread included)"
            )
        if self.index is not None:
            return (
                f"best of {self.n_feasible} designs meeting every goal with probability >= "
                f"{self.confidence:.2f}"
            )
        head = f"no design meets the goals with probability >= {self.confidence:.2f}"
        if self.shortfalls and self.goals is not None:
            named = ". ".join(s.describe(self.goals) for s in self.shortfalls)
            nearest = [
                f"nearest to {GOAL_FIELDS[s.goal]}"
                + (" meeting the other goals" if s.best_with_others is not None else "")
                for i, s in enumerate(self.shortfalls)
                if i == 0 or s.best_with_others is not None
            ]
            return (
                f"{head}. {named} (each at probability >= {self.confidence:.2f}). The closest "
                f"designs are listed: {', then '.join(nearest)}"
            )
        if self.valid == 0:
            return f"{head}: no design has a prediction"
        top = float(self.probabilities["all"][self.closest[0]]) if self.closest else 0.0
        return (
            f"{head}: each goal is within reach alone, not all together; the closest "
            f"(highest probability {top:.2f}) are listed"
        )


def probability_within(
    median: np.ndarray, low: np.ndarray, high: np.ndarray, budget: float
) -> np.ndarray:
    """P(true value <= budget) for log-normal predictions given by median and 90% interval.

    An exact value (zero-width interval, a measurement) gives 1 or 0.
    """
    from scipy.special import ndtr  # scipy costs a second at import: load it on use

    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.maximum((np.log(high) - np.log(low)) / (2 * Z90), 1e-9)
        z = (np.log(budget) - np.log(median)) / sigma
    exact = low == high  # a measurement: a budget it equals is met
    return np.where(exact, (median <= budget).astype(float), np.asarray(ndtr(z), dtype=float))


def probability_at_least(estimates: Estimates, floor: float) -> np.ndarray:
    """P(true value >= floor) for normal predictions given by mean and 90% interval."""
    from scipy.special import ndtr

    sigma = np.maximum((estimates.high - estimates.low) / (2 * Z90), 1e-9)
    p = np.asarray(ndtr((estimates.value - floor) / sigma), dtype=float)
    exact = estimates.high == estimates.low  # a recorded value: a floor it equals is met
    return np.where(exact, (estimates.value >= floor).astype(float), p)


def pareto_front(objective_max: np.ndarray, cost_min: np.ndarray) -> np.ndarray:
    """Indices of candidates no other beats on both (higher objective, lower cost).

    Returned in increasing cost (and increasing objective) order.
    """
    order = np.lexsort((-objective_max, cost_min))
    front, best = [], -np.inf
    for i in order:
        if objective_max[i] > best:
            front.append(i)
            best = objective_max[i]
    return np.array(front, dtype=int)


TIE_BREAK = 1e-6  # points per ms: orders equal accuracies by latency, nothing more


def objective_score(candidates: Candidates, goals: Goals) -> np.ndarray:
    """Higher is better; -inf where the objective needs a prediction the candidate lacks."""
    acc, lat, energy = candidates.accuracy, candidates.latency, candidates.energy
    if goals.objective == "latency":
        score = -lat.value
    elif goals.objective == "energy":
        if energy is None:
            raise ValueError("the energy objective needs energy predictions")
        score = -energy.value
    elif goals.objective == "accuracy":
        if acc is None:
            raise ValueError("the accuracy objective needs accuracy for the candidates")
        # The low end of the interval, not the mean: the highest of thousands of predicted
        # means is mostly the model's error (a winner's curse), while a recorded accuracy
        # has no spread. Among equal accuracies the faster design wins.
        score = acc.low - TIE_BREAK * lat.value
    else:
        w = {"accuracy": 1.0, "latency": 0.1, "energy": 0.0, **dict(goals.weights)}
        score = (w["accuracy"] * acc.value if acc is not None else 0.0) - w["latency"] * lat.value
        if energy is not None:
            score = score - w["energy"] * energy.value
    score = np.asarray(score, dtype=float)
    return np.where(np.isfinite(score), score, -np.inf)


def goal_probabilities(candidates: Candidates, goals: Goals) -> dict[str, np.ndarray]:
    """The probability that each goal holds, and that all do ("all")."""
    lat = candidates.latency
    valid = np.isfinite(lat.value)
    if candidates.accuracy is not None:
        valid &= np.isfinite(candidates.accuracy.value)
    out: dict[str, np.ndarray] = {}
    if goals.max_latency_ms is not None:
        out["latency"] = probability_within(lat.value, lat.low, lat.high, goals.max_latency_ms)
    if goals.max_energy_mj is not None:
        e = candidates.energy
        if e is None:
            raise ValueError("the energy goal needs energy predictions")
        out["energy"] = probability_within(e.value, e.low, e.high, goals.max_energy_mj)
    if goals.min_accuracy is not None:
        if candidates.accuracy is None:
            raise ValueError("the accuracy goal needs accuracy for the candidates")
        out["accuracy"] = probability_at_least(candidates.accuracy, goals.min_accuracy)
    p_all = np.where(valid, 1.0, 0.0)
    for p in out.values():
        p_all = p_all * np.nan_to_num(p)
    out["all"] = p_all
    return out


def _quantile(candidates: Candidates, goal: str, level: np.ndarray) -> np.ndarray:
    """Per candidate, the tightest target of ``goal`` it meets with probability ``level``:
    the inverse of ``probability_at_least`` (accuracy) or ``probability_within``."""
    from scipy.special import ndtri

    z = np.asarray(ndtri(np.clip(level, 0.5, 1 - 1e-12)), dtype=float)
    if goal == "accuracy":
        acc = candidates.accuracy
        assert acc is not None
        sigma = np.maximum((acc.high - acc.low) / (2 * Z90), 1e-9)
        return np.where(acc.high == acc.low, acc.value, acc.value - z * sigma)
    est = candidates.latency if goal == "latency" else candidates.energy
    assert est is not None
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.maximum((np.log(est.high) - np.log(est.low)) / (2 * Z90), 1e-9)
        reach = est.value * np.exp(z * sigma)
    return np.where(est.high == est.low, est.value, reach)


def _goal_target(goals: Goals, goal: str) -> float | None:
    return {
        "accuracy": goals.min_accuracy,
        "latency": goals.max_latency_ms,
        "energy": goals.max_energy_mj,
    }[goal]


def shortfalls(
    candidates: Candidates,
    goals: Goals,
    probabilities: dict[str, np.ndarray],
    valid: np.ndarray,
    score: np.ndarray,
    confidence: float,
    count: int,
) -> tuple[list[Shortfall], list[int]]:
    """The goals out of reach (one out of reach even alone first), and the closest designs,
    at most ``count``: those nearest to each goal in turn among the designs meeting the
    others (to the first goal among all designs, where none meets its others). Nothing when
    every goal is within reach and only their conjunction fails.

    A candidate meeting the other goals with probability p is held to the goal at
    ``confidence / p``, so a reported best, taken as the new target, is met jointly.
    """
    names = [g for g in GOAL_ORDER if _goal_target(goals, g) is not None]
    found: list[tuple[Shortfall, np.ndarray]] = []
    for goal in names:
        target = _goal_target(goals, goal)
        assert target is not None
        others = tuple(g for g in names if g != goal)
        p_others = np.where(valid, 1.0, 0.0)
        for g in others:
            p_others = p_others * np.nan_to_num(probabilities[g])
        with_others = valid & (p_others >= confidence)
        level = np.where(with_others, confidence / np.maximum(p_others, 1e-12), confidence)
        # higher is better for accuracy, lower for latency and energy: rank on the gain
        sign = 1.0 if goal == "accuracy" else -1.0
        gain = sign * _quantile(candidates, goal, level)
        gain_alone = sign * _quantile(candidates, goal, np.full(len(candidates), confidence))
        known = valid & np.isfinite(gain) & np.isfinite(gain_alone)
        with_others &= known
        best_with = float(sign * gain[with_others].max()) if others and with_others.any() else None
        best_alone = float(sign * gain_alone[known].max()) if known.any() else None
        within = best_with if others else best_alone
        if within is not None and _meets(goal, within, target):
            continue
        # nearest first among those meeting the other goals, then the rest; the objective
        # orders equals (the faster of two recorded accuracies)
        rank = np.lexsort(
            (
                -np.where(known, score, -np.inf),
                -np.where(known, gain_alone, -np.inf),
                -np.where(with_others, gain, -np.inf),
            )
        )
        rank = rank[known[rank]]
        if best_with is not None:  # the designs meeting the other goals only
            rank = rank[with_others[rank]]
        found.append((Shortfall(goal, target, others, best_with, best_alone), rank))
    if not found:
        return [], []
    first = next((i for i, (s, _) in enumerate(found) if not s.reachable_alone), 0)
    found.insert(0, found.pop(first))
    # A goal's list where nothing meets its others would offer the fastest network (often
    # a degenerate one) as closest to an accuracy goal: only the first goal's list may.
    lists = [list(r) for i, (s, r) in enumerate(found) if i == 0 or s.best_with_others is not None]
    closest: list[int] = []
    for i in itertools.chain.from_iterable(itertools.zip_longest(*lists)):
        if i is not None and int(i) not in closest and len(closest) < count:
            closest.append(int(i))
    return [s for s, _ in found], closest


def choose(
    candidates: Candidates,
    goals: Goals,
    confidence: float = 0.9,
    alternatives: int = 3,
    pareto_points: int = PARETO_POINTS,
) -> Choice:
    """The best candidate meeting every goal with probability >= ``confidence``, from predictions.

    Raises:
        ValueError: a goal or objective needs a metric the candidates have no prediction for.
    """
    probabilities = goal_probabilities(candidates, goals)
    p_all = probabilities["all"]
    raw = objective_score(candidates, goals)
    score = np.where(p_all > 0, raw, -np.inf)
    valid = np.isfinite(candidates.latency.value)
    if candidates.accuracy is not None:
        valid &= np.isfinite(candidates.accuracy.value)
    feasible = (p_all >= confidence) & np.isfinite(score)
    n_feasible = int(feasible.sum())
    short: list[Shortfall] = []
    if n_feasible:
        order = np.argsort(-np.where(feasible, score, -np.inf), kind="stable")
        index: int | None = int(order[0])
        alts = [int(i) for i in order[1 : 1 + min(alternatives, n_feasible - 1)]]
        closest: list[int] = []
    else:
        index, alts = None, []
        count = max(3, alternatives)
        short, closest = shortfalls(candidates, goals, probabilities, valid, raw, confidence, count)
        if not short:  # the goals fail together only: the likeliest to meet them all
            ranked = np.lexsort((-np.where(valid, score, -np.inf), -np.where(valid, p_all, -1)))
            closest = [int(i) for i in ranked[valid[ranked]][:count]]
    return Choice(
        index,
        probabilities,
        score,
        n_feasible,
        int(valid.sum()),
        alts,
        closest,
        _front(candidates, valid, pareto_points),
        confidence,
        shortfalls=tuple(short),
        goals=goals,
    )


def _front(candidates: Candidates, valid: np.ndarray, points: int) -> list[int]:
    lat = candidates.latency.value
    metric = candidates.accuracy.value if candidates.accuracy is not None else -lat
    front = pareto_front(np.where(valid, metric, -np.inf), np.where(valid, lat, np.inf))
    front = front[valid[front]] if len(front) else front
    if len(front) > points:
        front = front[np.linspace(0, len(front) - 1, points).astype(int)]
    return [int(i) for i in front]


Refit = Callable[[dict[int, float]], Estimates]


def shot_count(max_measurements: int, min_shots: int = 3) -> int:
    """How many of the allowed measurements go to shots: half, at least enough to adapt."""
    return min(max_measurements, max(min_shots, max_measurements // 2))


# The spread a repeat of a host measurement sees at least: the protocol calls a median stable
# when its last rounds agree within 3% (devices.measure.Protocol.target_cv), and the machine's
# level moves between runs by as much (docs/benchmarks.md, test-retest), which the
# measurement's own dispersion across its sessions does not see.
MIN_SPREAD = 0.03


@dataclass(frozen=True)
class Timing:
    """A measured latency as a repeat would see it: the median and its relative spread (the
    coefficient of variation a repeat measurement would show). A bare float is exact."""

    median_ms: float
    spread: float = 0.0


def repeat_spread(dispersion: float | None, tolerance: float | None = None) -> float:
    """The spread of a stored measurement: its dispersion across sessions, at least the
    protocol's stability tolerance (``MIN_SPREAD`` where unknown)."""
    floor = MIN_SPREAD if tolerance is None else float(tolerance)
    own = 0.0 if dispersion is None or not np.isfinite(dispersion) else float(dispersion)
    return max(own, floor)


def measured_bound(median_ms: float, spread: float, confidence: float) -> float:
    """The latency a measurement stays under with probability ``confidence``: the median
    times exp(z * log(1 + spread)), the log-normal quantile the optimizer holds it to."""
    from scipy.special import ndtri

    z = float(ndtri(min(max(confidence, 0.5), 1 - 1e-12)))
    return float(median_ms * np.exp(z * np.log1p(max(spread, 0.0))))


Measure = Callable[[int], float | Timing]


def refine(
    candidates: Candidates,
    goals: Goals,
    refit: Refit,
    measure: Measure,
    shots: Sequence[int],
    max_measurements: int,
    confidence: float = 0.9,
    alternatives: int = 3,
    measured: dict[int, float | Timing] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Choice:
    """Measure-and-refine: spend up to ``max_measurements`` on the device, answer measured.

    First the ``shots`` (the designs that teach the predictor most; ``shot_count`` of the
    allowance), then verification: the gain of measuring a candidate is (its score - the
    incumbent's) x P(it meets every goal), the incumbent being the best candidate measured
    within the goals (before any, the best at least SAFE-likely to meet them, which the last
    measurement verifies if nothing has been). Candidates below MIN_PROBABILITY are not worth
    a measurement. ``refit(measured)`` gives latency estimates over every candidate from the
    measurements so far (``measured`` maps candidate -> measured median latency, in ms).

    A measurement is a ``Timing`` (median and spread) or an exact float: from then on the
    candidate's latency is its median with the spread as a log-normal interval, so it meets a
    budget only when the median times exp(z(confidence) * log(1 + spread)) does
    (``measured_bound``); a median just under the budget is not enough.

    The answer is the best measured candidate that meets the goals (``verified``); when none
    does, the choice from the refitted predictions at ``confidence``, as ``choose`` would give.
    """
    timings = {int(i): _timing(t) for i, t in (measured or {}).items()}
    medians: dict[int, float] = {i: t.median_ms for i, t in timings.items()}
    spread = {i: t.spread for i, t in timings.items()}
    total = max(0, max_measurements)
    spent = 0

    def take(i: int) -> None:
        nonlocal spent
        timing = _timing(measure(int(i)))
        medians[int(i)], spread[int(i)] = timing.median_ms, timing.spread
        spent += 1
        if progress:
            progress(spent, total)

    for i in list(shots)[:total]:
        if int(i) not in medians:
            take(int(i))
    while spent < total:
        current = _with_measured(candidates, refit, medians, spread)
        score = objective_score(current, goals)
        # a candidate without a score (no accuracy) is never the answer: nor worth measuring
        p = np.where(np.isfinite(score), goal_probabilities(current, goals)["all"], 0.0)
        idx = np.fromiter(medians, dtype=int, count=len(medians))
        meets = [i for i in idx if p[i] >= confidence]
        incumbent = max((score[i] for i in meets), default=None)
        if incumbent is None:  # nothing verified yet: improve on the safest good candidate
            safe = p >= SAFE
            safe[idx] = False
            if safe.any() and spent == total - 1:  # last chance: secure a fallback
                take(int(np.flatnonzero(safe)[np.argmax(score[safe])]))
                break
            incumbent = float(score[safe].max()) - 1e-9 if safe.any() else -np.inf
        worth = p >= MIN_PROBABILITY
        gain = np.full(len(p), -np.inf)
        if np.isinf(incumbent):
            gain[worth] = p[worth]
        else:
            better = worth & (score > incumbent)
            gain[better] = (score[better] - incumbent) * p[better]
        gain[idx] = -np.inf
        if not np.isfinite(gain).any():
            break
        take(int(np.argmax(gain)))
    current = _with_measured(candidates, refit, medians, spread)
    choice = choose(current, goals, confidence, alternatives)
    p = choice.probabilities["all"]
    verified = [i for i in medians if p[i] >= confidence and np.isfinite(choice.score[i])]
    if verified:
        best = max(verified, key=lambda i: choice.score[i])
        others = [i for i in np.argsort(-choice.score, kind="stable") if i != best]
        alts = [int(i) for i in others if p[i] >= confidence and np.isfinite(choice.score[i])]
        return replace(
            choice,
            index=int(best),
            alternatives=alts[:alternatives],
            closest=[],
            measured=medians,
            spread=spread,
            verified=True,
            shortfalls=(),
        )
    return replace(choice, measured=medians, spread=spread, verified=False)


def _timing(value: float | Timing) -> Timing:
    if isinstance(value, Timing):
        return Timing(float(value.median_ms), max(0.0, float(value.spread)))
    return Timing(float(value))


def _with_measured(
    candidates: Candidates,
    refit: Refit,
    measured: dict[int, float],
    spread: dict[int, float] | None = None,
) -> Candidates:
    """Candidates with refitted latency; the measured ones at their median, with their
    spread as a central 90% log-normal interval (exact where it is 0)."""
    estimates = refit(measured)
    value, low, high = estimates.value.copy(), estimates.low.copy(), estimates.high.copy()
    for i, v in measured.items():
        width = np.exp(Z90 * np.log1p((spread or {}).get(i, 0.0)))
        value[i], low[i], high[i] = v, v / width, v * width
    return candidates.with_latency(Estimates(value, low, high))
